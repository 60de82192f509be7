import assert from "node:assert/strict";
import { spawn, execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { type AddressInfo, createServer } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const BIN = join(ROOT, "bin/tributary.mjs");
const cli = (args: string[]) =>
  promisify(execFile)(process.execPath, [BIN, ...args], { cwd: ROOT }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => e,
  );

/** Starts `tributary run …`, waits for its URL, and returns it with a way to stop it. */
async function start(
  args: string[],
): Promise<{ url: string; output: () => string; stop: () => Promise<number | null> }> {
  const child = spawn(process.execPath, [BIN, "run", ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr.on("data", (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => resolve(code)),
  );
  const deadline = Date.now() + 40_000;
  while (!/Serving .* at (\S+)\./.test(output)) {
    if (Date.now() > deadline || child.exitCode !== null) {
      child.kill("SIGKILL");
      assert.fail(`tributary run did not start:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    url: /Serving .* at (\S+?)\.?( \(|\. )/.exec(output)![1]!,
    output: () => output,
    stop: async () => {
      child.kill("SIGINT");
      const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

const post = async (url: string, body: unknown): Promise<unknown> =>
  (
    await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    })
  ).json();

describe("the tributary command", { timeout: 120_000 }, () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(ROOT, ".tmp-cli-"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test("cli - every command's --help shows an example", async () => {
    for (const command of ["run", "build"]) {
      const { stdout } = await promisify(execFile)(process.execPath, [BIN, command, "--help"], {
        cwd: ROOT,
      });
      assert.match(stdout, new RegExp(`Example[s]?:\\n\\s+tributary ${command} `));
    }
  });

  test("cli - run ./app.ts:export serves it until Ctrl-C, which drains and exits 0", async () => {
    const server = await start(["./test/fixtures/config-app.ts:app", "--port", "0"]);
    assert.deepEqual(await post(server.url, 0.7), {
      pass: true,
      threshold: 0.5,
      replica: "thresholder#1",
    });
    assert.equal(await server.stop(), 0);
    assert.match(
      server.output(),
      /Draining \(up to 20 s; Ctrl-C again stops at once.*\)…\nStopped\./,
    );
  });

  test("cli - build writes YAML, and run serve.yaml serves with the file's overrides", async () => {
    const file = join(dir, "serve.yaml");
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [BIN, "build", "./test/fixtures/config-app.ts:app", "-o", file],
      { cwd: ROOT },
    );
    // The graph's one deployment, not counting the generated ingress as another.
    assert.match(stdout, /\(1 deployment and the ingress\)/);
    const built = await readFile(file, "utf8");
    assert.match(built, /importPath: \.\.\/test\/fixtures\/config-app\.ts:app/);
    const edited = built
      .replace("port: 8000", "port: 0")
      .replace(/threshold: 0\.5/, "threshold: 0.9");
    await writeFile(file, edited);
    const server = await start([file]);
    assert.deepEqual(await post(server.url, 0.7), {
      pass: false,
      threshold: 0.9,
      replica: "thresholder#1",
    });
    assert.equal(await server.stop(), 0);
  });

  test("cli - a port flag that is not a port is refused naming the flag, before anything starts", async () => {
    for (const [flag, value] of [
      ["--port", "abc"],
      ["--grpc-port", "xyz"],
      ["--port", "70000"],
    ]) {
      const result = await cli(["run", "./test/fixtures/config-app.ts:app", flag!, value!]);
      assert.equal(result.code, 1);
      assert.match(
        result.stderr,
        new RegExp(`${flag} expects a port from 0 to 65535 \\(it is "${value}"\\)`),
      );
    }
  });

  test("cli - an admin command says no instance answers only when none listens; one that hangs up is named as such", async () => {
    // A port no one listens on: refused.
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
    const free = (probe.address() as AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    const none = await cli(["status", "--address", `http://127.0.0.1:${free}`]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no instance answers at http:\/\/127\.0\.0\.1:\d+ .*start one/);
    // A listener that closes the connection: it is there, and did not answer.
    const rude = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => rude.listen(0, "127.0.0.1", resolve));
    try {
      const address = `http://127.0.0.1:${(rude.address() as AddressInfo).port}`;
      const hung = await cli(["status", "--address", address]);
      assert.equal(hung.code, 1);
      assert.match(hung.stderr, /the instance at http:\/\/127\.0\.0\.1:\d+ did not answer/);
      assert.doesNotMatch(hung.stderr, /no instance answers/);
    } finally {
      rude.close();
    }
    const bad = await cli(["status", "--address", "not a url"]);
    assert.match(bad.stderr, /--address not a url is not the URL of an admin API/);
    const schemeless = await cli(["status", "--address", "localhost:8265"]);
    assert.match(schemeless.stderr, /--address localhost:8265 is not the URL of an admin API/);
  });

  test("cli - a --cluster URL that is not NATS's is refused at once, naming it", async () => {
    const started = Date.now();
    const result = await cli(["node", "--cluster", "http://127.0.0.1:1", "--name", "n"]);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /--cluster expects a NATS server's URL.*\(it is "http:\/\/127\.0\.0\.1:1"\)/,
    );
    assert.ok(Date.now() - started < 20_000, "refused without trying to connect");
    // A cluster flag without --cluster is refused, not silently unused.
    const lone = await cli(["start", "--node-timeout", "5s", "--admin-port", "0"]);
    assert.equal(lone.code, 1);
    assert.match(lone.stderr, /--node-timeout goes with --cluster/);
  });

  test("cli - a bad config is refused with file:line:column and exit code 1", async () => {
    const file = join(dir, "bad.yaml");
    await writeFile(
      file,
      "applications:\n  - name: gate\n    importPath: ../test/fixtures/config-app.ts:app\n    deployments:\n      - name: thresholder\n        numReplicas: 0\n",
    );
    const result = await promisify(execFile)(process.execPath, [BIN, "run", file], {
      cwd: ROOT,
    }).catch((e: { code: number; stderr: string }) => e);
    assert.equal((result as { code: number }).code, 1);
    assert.match(
      (result as { stderr: string }).stderr,
      /bad\.yaml:6:22: applications\[0\]\.deployments\[0\]\.numReplicas: found number 0; Too small/,
    );
  });
});
