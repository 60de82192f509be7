import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const BIN = join(ROOT, "bin/tributary.mjs");

interface Running {
  child: ChildProcess;
  url: string;
  output: () => string;
  exited: Promise<{ code: number | null; at: number }>;
}

/** `tributary run FILE` in its own process group, as a terminal runs a foreground job. */
async function runDetached(file: string): Promise<Running> {
  const child = spawn(process.execPath, [BIN, "run", file], {
    cwd: ROOT,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr.on("data", (d: Buffer) => (output += d.toString()));
  const exited = new Promise<{ code: number | null; at: number }>((resolve) =>
    child.once("exit", (code) => resolve({ code, at: Date.now() })),
  );
  const deadline = Date.now() + 40_000;
  while (!/Serving .* at (\S+)\./.test(output)) {
    if (Date.now() > deadline || child.exitCode !== null) {
      process.kill(-child.pid!, "SIGKILL");
      assert.fail(`tributary run did not start:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const url = /Serving .* at (\S+?)\/nap\./.exec(output)![1]!;
  return { child, url, output: () => output, exited };
}

const nap = (url: string, ms: number) =>
  fetch(`${url}/nap`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ms }),
  }).then(
    async (r) => ({ status: r.status, body: (await r.json()) as { error?: { code: string } } }),
    (e: Error) => ({ status: 0, body: { error: { code: e.message } } }),
  );

const config = (isolation: string, grace: string) => `http: { port: 0 }
applications:
  - name: sleepy
    importPath: ../test/fixtures/sleepy-app.ts:app
    deployments:
      - name: sleeper
        isolation: ${isolation}
        maxOngoingRequests: 10
        gracefulShutdownTimeout: ${grace}
`;

describe("signals", { timeout: 120_000 }, () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(ROOT, ".tmp-signals-"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test("signals - Ctrl-C (SIGINT to the whole process group) drains process replicas: no request in flight fails", async () => {
    const file = join(dir, "process.yaml");
    await writeFile(file, config("process", "20s"));
    const running = await runDetached(file);
    try {
      const inFlight = Array.from({ length: 10 }, () => nap(running.url, 1_500));
      await new Promise((resolve) => setTimeout(resolve, 500));
      process.kill(-running.child.pid!, "SIGINT"); // what a terminal does on Ctrl-C
      const answers = await Promise.all(inFlight);
      assert.deepEqual(
        answers.map((a) => a.status),
        Array(10).fill(200),
        JSON.stringify(answers.filter((a) => a.status !== 200)),
      );
      const { code } = await running.exited;
      assert.equal(code, 0, running.output());
    } finally {
      try {
        process.kill(-running.child.pid!, "SIGKILL");
      } catch {
        // already gone
      }
    }
  });

  test("signals - shutdown is bounded by gracefulShutdownTimeout; a second signal stops at once after saying so", async () => {
    const file = join(dir, "thread.yaml");
    await writeFile(file, config("thread", "2s"));
    const bounded = await runDetached(file);
    try {
      const stuck = nap(bounded.url, 60_000);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const signalled = Date.now();
      bounded.child.kill("SIGTERM");
      const answer = await stuck;
      assert.deepEqual([answer.status, answer.body.error?.code], [503, "REPLICA_DIED"]);
      const { code, at } = await bounded.exited;
      assert.equal(code, 0);
      assert.ok(at - signalled < 2_000 + 2_500, `exited ${at - signalled} ms after the signal`);
    } finally {
      bounded.child.kill("SIGKILL");
    }

    await writeFile(file, config("thread", "30s"));
    const twice = await runDetached(file);
    try {
      const stuck = nap(twice.url, 60_000);
      await new Promise((resolve) => setTimeout(resolve, 300));
      twice.child.kill("SIGTERM");
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.doesNotMatch(twice.output(), /stopping now/);
      const again = Date.now();
      twice.child.kill("SIGTERM");
      const { code, at } = await twice.exited;
      assert.ok(at - again < 2_000, `exited ${at - again} ms after the second signal`);
      assert.equal(code, 143);
      assert.match(twice.output(), /Received SIGTERM again: stopping now/);
      assert.equal((await stuck).status, 0, "the connection was cut");
    } finally {
      twice.child.kill("SIGKILL");
    }
  });

  test("signals - tributary start shuts down within gracefulShutdownTimeout, answering what still runs", async () => {
    const file = join(dir, "instance.yaml");
    await writeFile(join(dir, "app.ts"), 'export { app } from "../test/fixtures/sleepy-app.js";\n');
    await writeFile(
      file,
      config("thread", "2s").replace("../test/fixtures/sleepy-app.ts", "./app.ts"),
    );
    const child = spawn(
      process.execPath,
      [BIN, "start", "--admin-port", "0", "--state-dir", join(dir, "state")],
      { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
    );
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    const exited = new Promise<{ code: number | null; at: number }>((resolve) =>
      child.once("exit", (code) => resolve({ code, at: Date.now() })),
    );
    try {
      const deadline = Date.now() + 30_000;
      while (!/Admin API at (\S+)\./.test(output)) {
        if (Date.now() > deadline || child.exitCode !== null) assert.fail(output);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const address = /Admin API at (\S+)\./.exec(output)![1]!;
      const deployed = await fetch(`${address}/api/deploy`, {
        method: "PUT",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ file, text: await readFile(file, "utf8") }),
      });
      assert.equal(deployed.status, 200, await deployed.clone().text());
      const status = (await (await fetch(`${address}/api/status`)).json()) as { url: string };
      const stuck = nap(status.url, 60_000);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const signalled = Date.now();
      child.kill("SIGTERM");
      const answer = await stuck;
      assert.deepEqual([answer.status, answer.body.error?.code], [503, "REPLICA_DIED"]);
      const { code, at } = await exited;
      assert.equal(code, 0, output);
      assert.ok(at - signalled < 2_000 + 2_500, `exited ${at - signalled} ms after the signal`);
    } finally {
      child.kill("SIGKILL");
    }
  });
});
