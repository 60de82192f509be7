// Every front-door worker process starts here, as replicas start at replica-entry.mjs: the
// compiled worker in the built package, or the TypeScript one (through tsx) in a checkout.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const compiled = new URL("./front-door-worker.js", import.meta.url);
if (existsSync(fileURLToPath(compiled))) {
  await import(compiled.href);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  globalThis[Symbol.for("tributary.tsx-registered")] = true;
  await import("./front-door-worker.ts");
}
