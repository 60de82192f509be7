// npm run build: compiles src/ into dist/ (ESM JavaScript, .d.ts, source maps) and copies
// the files tsc does not emit: the replica and front-door entries (plain .mjs) and the gRPC .proto.
import { spawnSync } from "node:child_process";
import { cpSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";

const root = new URL("..", import.meta.url);
// `npm pack` runs both prepare and prepack; `--if-stale` (prepare's) skips a dist/ that is
// newer than every file under src/.
if (process.argv.includes("--if-stale") && !stale()) process.exit(0);
rmSync(new URL("dist", root), { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
const result = spawnSync(process.execPath, [tsc, "-p", "tsconfig.build.json"], {
  cwd: root,
  stdio: "inherit",
});
if (result.status !== 0) process.exit(result.status ?? 1);
for (const file of [
  "data/replica-entry.mjs",
  "data/load-host.mjs",
  "runtime/front-door-entry.mjs",
  "zod-esm.mjs",
  "ingress/proto/grpc_predict_v2.proto",
]) {
  cpSync(new URL(`src/${file}`, root), new URL(`dist/${file}`, root));
}
writeFileSync(new URL("dist/.built", root), new Date().toISOString() + "\n");

function stale() {
  let built;
  try {
    built = statSync(new URL("dist/.built", root)).mtimeMs;
  } catch {
    return true;
  }
  const files = readdirSync(new URL("src", root), { recursive: true, encoding: "utf8" });
  return files.some((file) => statSync(new URL(`src/${file}`, root)).mtimeMs > built);
}
