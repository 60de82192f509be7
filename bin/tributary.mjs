#!/usr/bin/env node
// The tributary command. A copy of tributary installed in the project being served (found
// from the working directory up) runs instead of this one, as eslint and tsc do: the
// user's modules import that copy, and only one copy can recognise their applications.
// The package's "./cli" entry is compiled JavaScript; only in a source checkout run with
// `--conditions=tributary-source` is it the TypeScript source, and then tsx is registered first.
import { existsSync, realpathSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const ownRoot = realpathSync(fileURLToPath(new URL("..", import.meta.url)));

function projectCopy() {
  for (let dir = process.cwd(); ; dir = dirname(dir)) {
    const bin = join(dir, "node_modules", "tributary", "bin", "tributary.mjs");
    if (existsSync(bin)) return realpathSync(join(bin, "..", "..")) === ownRoot ? undefined : bin;
    if (dirname(dir) === dir) return undefined;
  }
}

const local = process.env.TRIBUTARY_NO_HANDOFF ? undefined : projectCopy();
if (local) {
  process.env.TRIBUTARY_NO_HANDOFF = "1";
  await import(pathToFileURL(local).href);
} else {
  const url = import.meta.resolve("tributary/cli");
  // Under the source condition the entry is src/cli/main.js, which exists only as main.ts:
  // tsx (registered here) maps the one to the other.
  if (!existsSync(fileURLToPath(url))) {
    const { register } = await import("tsx/esm/api");
    register();
    globalThis[Symbol.for("tributary.tsx-registered")] = true;
  }
  const { main } = await import(url);
  process.exitCode = await main(process.argv);
}
