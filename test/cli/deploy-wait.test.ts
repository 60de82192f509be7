import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";

import { BIN, cli, ROOT } from "./run-cli.js";

// Its constructor fails while a `fail-start` file lies beside it; close() takes a while.
const moduleSource = `import { existsSync } from "node:fs";
import { build, deployment, InputNode } from "tributary";
export class Gate {
  constructor() {
    if (existsSync(new URL("./fail-start", import.meta.url))) throw new Error("no GPU left");
  }
  answer(x: number): number {
    return x;
  }
  async close(): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, 1_500));
  }
}
const gate = deployment(Gate).bind();
export const app = build(gate.answer.bind(new InputNode<number>()), { name: "gated", names: { gate } });
`;

const config = (replicas: number) => `http: { port: 0 }
applications:
  - name: gated
    importPath: ./app.ts:app
    deployments:
      - name: gate
        numReplicas: ${replicas}
`;

test(
  "deploy --wait - waits until a scale-down has ended, and ends with DEPLOY_FAILED saying why when replicas cannot start",
  { timeout: 120_000 },
  async () => {
    const dir = await mkdtemp(join(ROOT, ".tmp-deploy-wait-"));
    const child = spawn(
      process.execPath,
      [BIN, "start", "--admin-port", "0", "--state-dir", join(dir, "state")],
      { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
    );
    const exited = new Promise((resolve) => child.once("exit", resolve));
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    try {
      const deadline = Date.now() + 30_000;
      while (!/Admin API at (\S+)\./.test(output)) {
        if (Date.now() > deadline || child.exitCode !== null) assert.fail(output);
        await new Promise((r) => setTimeout(r, 50));
      }
      const address = /Admin API at (\S+)\./.exec(output)![1]!;
      const file = join(dir, "serve.yaml");
      await writeFile(join(dir, "app.ts"), moduleSource);
      const deploy = async (replicas: number) => {
        await writeFile(file, config(replicas));
        return cli(["deploy", file, "--address", address, "--wait"]);
      };
      const replicas = async () => {
        const status = JSON.parse(
          (await cli(["status", "--json", "--address", address])).stdout,
        ) as {
          applications: Record<
            string,
            { deployments: Record<string, { replicas: { state: string }[] }> }
          >;
        };
        return status.applications.gated!.deployments.gate!.replicas.map((r) => r.state);
      };

      const up = await deploy(2);
      assert.equal(up.code, 0, up.stderr);
      assert.deepEqual(await replicas(), ["RUNNING", "RUNNING"]);

      // Scaling down: --wait returns once the stopped replica is gone (its close() takes 1.5 s).
      const down = await deploy(1);
      assert.equal(down.code, 0, down.stderr);
      assert.deepEqual(await replicas(), ["RUNNING"]);

      // New replicas cannot start: --wait ends after the retries, with DEPLOY_FAILED and why.
      await writeFile(join(dir, "fail-start"), "");
      const started = Date.now();
      const failed = await deploy(3);
      assert.equal(failed.code, 1, failed.stdout);
      assert.match(failed.stderr, /gated is DEPLOY_FAILED: gate: .*no GPU left/);
      assert.ok(Date.now() - started < 30_000, "it did not wait forever");
      assert.deepEqual(await replicas(), ["RUNNING"], "the old replica keeps serving");
    } finally {
      // SIGTERM lets the server stop its replicas (and remove their sockets); SIGKILL if not.
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
      await rm(dir, { recursive: true, force: true });
    }
  },
);
