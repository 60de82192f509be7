// How a replica thread or process, or a front-door worker, loads the module that runs it.
// In the built package that module is JavaScript (dist/…/<name>.js) and no TypeScript
// loader is registered: the module registers tsx itself, and only when the user's module
// is TypeScript. In a source checkout (no .js beside the entry) the module is TypeScript,
// so tsx comes first. Workers do not inherit the parent's loaders, hence plain .mjs files.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** Imports `<name>.js` beside `base`, or `<name>.ts` through tsx when there is none. */
export async function loadHost(base, name) {
  const compiled = new URL(`./${name}.js`, base);
  if (existsSync(fileURLToPath(compiled))) {
    await import(compiled.href);
    return;
  }
  const { register } = await import("tsx/esm/api");
  register();
  globalThis[Symbol.for("tributary.tsx-registered")] = true;
  await import(new URL(`./${name}.ts`, base).href);
}
