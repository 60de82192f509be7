// Every replica thread or process starts here. In the built package the host is
// JavaScript (dist/data/replica-host.js) and no TypeScript loader is registered: the
// host registers tsx itself, and only when the user's module is TypeScript. In a source
// checkout (src/data/, no .js beside this file) the host is TypeScript, so tsx comes
// first. Workers do not inherit the parent's loaders, hence this plain .mjs file.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const compiled = new URL("./replica-host.js", import.meta.url);
if (existsSync(fileURLToPath(compiled))) {
  await import(compiled.href);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  globalThis[Symbol.for("tributary.tsx-registered")] = true;
  await import("./replica-host.ts");
}
