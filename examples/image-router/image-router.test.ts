import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, describe, test } from "node:test";
import { BIN, cli } from "../../test/cli/run-cli.js";
import { pipeline, solid, type PaletteResult, type ToneResult } from "./app.js";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const GREY = solid([120, 120, 120]);
const RED = solid([220, 30, 20]);
const ORANGE = solid([230, 170, 20]);

after(() => pipeline.dispose());

describe("image router, in-process", () => {
  test("image-router - a grey image goes to the tone model, a colour one to a palette version", async () => {
    const grey = (await pipeline.execute({ rgb: GREY })) as ToneResult;
    assert.deepEqual(grey, { kind: "grey", tone: "mid", model: "tone" });
    const colours = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const result = (await pipeline.execute({ rgb: ORANGE })) as PaletteResult;
      assert.equal(result.kind, "colour");
      colours.add(`${result.model}:${result.colour}`);
    }
    // v1 names the strongest channel, the canary v2 the hue: both ran, 90/10.
    assert.deepEqual([...colours].sort(), ["palette-v1:red", "palette-v2:yellow"]);
  });
});

/** `tributary start` on free ports in a temporary state directory. */
async function startInstance(stateDir: string): Promise<{ child: ChildProcess; address: string }> {
  const child = spawn(
    process.execPath,
    [BIN, "start", "--admin-port", "0", "--state-dir", stateDir],
    {
      cwd: HERE,
      stdio: ["ignore", "pipe", "pipe"],
      env: {
        ...process.env,
        NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --conditions=tributary-source`,
      },
    },
  );
  let output = "";
  child.stdout.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr.on("data", (d: Buffer) => (output += d.toString()));
  const deadline = Date.now() + 30_000;
  while (!/Admin API at (\S+)\./.test(output)) {
    if (Date.now() > deadline || child.exitCode !== null)
      assert.fail(`tributary start did not come up:\n${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, address: /Admin API at (\S+)\./.exec(output)![1]! };
}

describe("image router, served by tributary start", { timeout: 170_000 }, () => {
  test("image-router - 90/10 over 1,000 requests, then 0/100 by tributary deploy under load: no failure, no restart", async () => {
    const dir = await mkdtemp(join(tmpdir(), "image-router-"));
    // The config sits beside app.ts (an instance imports modules under its config's directory).
    const file = join(HERE, `.serve-test-${process.pid}.yaml`);
    const yaml = (await readFile(join(HERE, "serve.yaml"), "utf8")).replace(
      "port: 8000",
      "port: 0",
    );
    await writeFile(file, yaml);
    const instance = await startInstance(join(dir, "state"));
    try {
      const deployed = await cli(["deploy", file, "--address", instance.address, "--wait"]);
      assert.equal(deployed.code, 0, deployed.stderr);
      const status = async () =>
        JSON.parse((await cli(["status", "--json", "--address", instance.address])).stdout) as {
          url: string;
          applications: Record<
            string,
            { deployments: Record<string, { replicas: { id: string }[] }> }
          >;
        };
      const url = `${(await status()).url}/classify`;
      const post = async (rgb: Uint8Array, user?: string): Promise<ToneResult | PaletteResult> => {
        const response = await fetch(url, {
          method: "POST",
          headers: {
            "content-type": "application/octet-stream",
            ...(user && { "x-user-id": user }),
          },
          body: rgb,
        });
        if (!response.ok) throw new Error(`${response.status} ${await response.text()}`);
        return (await response.json()) as ToneResult | PaletteResult;
      };
      const replicas = async () =>
        Object.values((await status()).applications["image-router"]!.deployments).flatMap((d) =>
          d.replicas.map((r) => r.id),
        );

      // 1,000 colour images, 20 at a time: the canary's share within 5 standard deviations.
      const models: Record<string, number> = {};
      for (let i = 0; i < 50; i++) {
        for (const r of await Promise.all(Array.from({ length: 20 }, () => post(RED))))
          models[r.model] = (models[r.model] ?? 0) + 1;
      }
      assert.equal((models["palette-v1"] ?? 0) + (models["palette-v2"] ?? 0), 1000);
      const canary = models["palette-v2"] ?? 0;
      // Binomial(1000, 0.1): standard deviation 9.5.
      assert.ok(Math.abs(canary - 100) <= 47, `the canary took ${canary} of 1000`);
      assert.equal((await post(GREY)).model, "tone");

      // 0/100 while four users send images.
      const before = await replicas();
      assert.equal(before.length, 4, `one replica per model deployment: ${before.join(", ")}`);
      let running = true;
      const answers: { model: string; started: number }[] = [];
      const failures: string[] = [];
      const deadline = Date.now() + 90_000;
      const callers = Array.from({ length: 4 }, async (_, u) => {
        while (running && Date.now() < deadline) {
          const started = Date.now();
          try {
            answers.push({ model: (await post(RED, `user-${u}`)).model, started });
          } catch (error) {
            failures.push((error as Error).message);
          }
        }
      });
      await writeFile(
        file,
        yaml.replace("stable: 90", "stable: 0").replace("canary: 10", "canary: 100"),
      );
      const redeployed = await cli(["deploy", file, "--address", instance.address]);
      assert.equal(redeployed.code, 0, redeployed.stderr);
      assert.match(redeployed.stdout, /image-router: updated \(splits: palette\)/);
      const changed = Date.now();
      const until = Date.now() + 30_000;
      while (answers.filter((a) => a.started > changed).length < 100 && Date.now() < until)
        await new Promise((r) => setTimeout(r, 20));
      running = false;
      await Promise.all(callers);
      assert.deepEqual(failures, []);
      const after = answers.filter((a) => a.started > changed).map((a) => a.model);
      assert.ok(after.length >= 100, `${after.length} answers after the deploy`);
      assert.deepEqual([...new Set(after)], ["palette-v2"]);
      assert.deepEqual(await replicas(), before, "no replica was restarted");
    } finally {
      await cli(["shutdown", "--address", instance.address]);
      if (instance.child.exitCode === null)
        await new Promise((r) => instance.child.once("exit", r));
      await rm(file, { force: true });
      await rm(dir, { recursive: true, force: true });
    }
  });
});
