#!/usr/bin/env node
// The tributary command. The package's own "./cli" entry is the compiled JavaScript; only
// in a source checkout run with `--conditions=tributary-source` is it TypeScript, and then
// tsx is registered first. User modules get a TypeScript loader only if they need one.
const url = import.meta.resolve("tributary/cli");
if (url.endsWith(".ts")) {
  const { register } = await import("tsx/esm/api");
  register();
  globalThis[Symbol.for("tributary.tsx-registered")] = true;
}
const { main } = await import(url);
process.exitCode = await main(process.argv);
