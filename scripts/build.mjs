// npm run build: compiles src/ into dist/ (ESM JavaScript, .d.ts, source maps) and copies
// the files tsc does not emit: the replica entry (plain .mjs) and the gRPC .proto.
import { spawnSync } from "node:child_process";
import { cpSync, rmSync } from "node:fs";
import { createRequire } from "node:module";

const root = new URL("..", import.meta.url);
rmSync(new URL("dist", root), { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
const result = spawnSync(process.execPath, [tsc, "-p", "tsconfig.build.json"], {
  cwd: root,
  stdio: "inherit",
});
if (result.status !== 0) process.exit(result.status ?? 1);
for (const file of [
  "runtime/replica-entry.mjs",
  "zod-esm.mjs",
  "ingress/proto/grpc_predict_v2.proto",
]) {
  cpSync(new URL(`src/${file}`, root), new URL(`dist/${file}`, root));
}
