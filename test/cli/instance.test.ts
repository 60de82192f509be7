import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";

import { BIN, cli, ROOT } from "./run-cli.js";

const moduleSource = (version: string) => `import { build, deployment, InputNode } from "tributary";
export class Answer {
  prefix = "?";
  reconfigure(config: { prefix: string }): void {
    this.prefix = config.prefix;
  }
  answer(x: number): string {
    return \`${version}:\${this.prefix}:\${x}\`;
  }
}
const answer = deployment(Answer).bind();
export const app = build(answer.answer.bind(new InputNode<number>()), { name: "versioned", routePrefix: "/v", names: { answer } });
`;

const config = (prefix: string, extra = "") => `http: { port: 0 }
applications:
  - name: versioned
    importPath: ./app.ts:app
    deployments:
      - name: answer
        userConfig: { prefix: ${prefix} }
${extra}`;

async function startInstance(
  stateDir: string,
  extra: string[] = [],
): Promise<{
  child: ChildProcess;
  address: string;
  output: () => string;
  exited: Promise<unknown>;
}> {
  const child = spawn(
    process.execPath,
    [BIN, "start", "--admin-port", "0", "--state-dir", stateDir, ...extra],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  const exited = new Promise((resolve) => child.once("exit", resolve));
  let output = "";
  child.stdout.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr.on("data", (d: Buffer) => (output += d.toString()));
  const deadline = Date.now() + 30_000;
  while (!/Admin API at (\S+)\./.test(output)) {
    if (Date.now() > deadline || child.exitCode !== null)
      assert.fail(`tributary start did not come up:\n${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, address: /Admin API at (\S+)\./.exec(output)![1]!, output: () => output, exited };
}

describe("tributary start / deploy", { timeout: 180_000 }, () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(ROOT, ".tmp-instance-"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test("deploy - code and userConfig change under load lose no request; bad configs change nothing; state survives a restart", async () => {
    const file = join(dir, "serve.yaml");
    const state = join(dir, "state");
    await writeFile(join(dir, "app.ts"), moduleSource("v1"));
    await writeFile(file, config("a"));
    const instance = await startInstance(state);
    try {
      const deployed = await cli(["deploy", file, "--address", instance.address, "--wait"]);
      assert.equal(deployed.code, 0, deployed.stderr);
      assert.match(deployed.stdout, /versioned: started/);
      const status = JSON.parse(
        (await cli(["status", "--json", "--address", instance.address])).stdout,
      ) as {
        url: string;
      };
      const url = `${status.url}/v`;

      let running = true;
      /** Each answer with the time its call started: only calls started after a change must see it. */
      const answers: { answer: string; started: number }[] = [];
      const failures: string[] = [];
      const deadline = Date.now() + 120_000;
      const callers = Array.from({ length: 3 }, async () => {
        while (running && Date.now() < deadline) {
          const started = Date.now();
          const response = await fetch(url, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: "1",
          }).catch((e: Error) => e);
          if (response instanceof Error || !response.ok)
            failures.push(
              response instanceof Error
                ? response.message
                : `${response.status} ${await response.text()}`,
            );
          else answers.push({ answer: (await response.json()) as string, started });
        }
      });
      /** The answers (at least `count`, waited for) to calls started after `since`. */
      const startedAfter = async (since: number, count = 10): Promise<string[]> => {
        const until = Date.now() + 20_000;
        while (answers.filter((a) => a.started > since).length < count) {
          if (Date.now() > until || failures.length > 0)
            assert.fail(
              `fewer than ${count} answers after the change; failures: ${failures.join()}`,
            );
          await new Promise((r) => setTimeout(r, 20));
        }
        return answers.filter((a) => a.started > since).map((a) => a.answer);
      };
      const others = (list: string[], expected: string) => list.filter((a) => a !== expected);
      assert.deepEqual(others(await startedAfter(0), "v1:a:1"), []);

      // userConfig only: reconfigure() on the live replica.
      await writeFile(file, config("b"));
      assert.match(
        (await cli(["deploy", file, "--address", instance.address])).stdout,
        /versioned: updated \(answer: reconfigure\)/,
      );
      let changed = Date.now();
      assert.deepEqual(others(await startedAfter(changed), "v1:b:1"), []);

      // A code change rolls the whole application: the new version serves once healthy.
      await writeFile(join(dir, "app.ts"), moduleSource("v2"));
      assert.match(
        (await cli(["deploy", file, "--address", instance.address])).stdout,
        /versioned: code/,
      );
      changed = Date.now();
      assert.deepEqual(others(await startedAfter(changed), "v2:b:1"), []);

      // Invalid configs are rejected whole, with positions, and serving goes on.
      await writeFile(file, config("c", "        numReplicaz: 2\n"));
      const bad = await cli(["deploy", file, "--address", instance.address]);
      assert.equal(bad.code, 1);
      assert.match(
        bad.stderr,
        /serve\.yaml:8:9: applications\[0\]\.deployments\[0\]\.numReplicaz: unknown field "numReplicaz"\. Did you mean "numReplicas"\?/,
      );
      await writeFile(file, config("c").replace("name: answer", "name: answr"));
      assert.match(
        (await cli(["deploy", file, "--address", instance.address])).stderr,
        /has no such deployment\. Did you mean "answer"\?/,
      );
      await writeFile(join(dir, "broken.ts"), 'throw new Error("cannot load weights");\n');
      await writeFile(file, config("c").replace("./app.ts:app", "./broken.ts:app"));
      assert.match(
        (await cli(["deploy", file, "--address", instance.address])).stderr,
        /importing \.\/broken\.ts failed: cannot load weights/,
      );

      // A new version whose constructor throws is rolled back: the old one keeps serving.
      await writeFile(
        join(dir, "ctor.ts"),
        moduleSource("v3").replace(
          'prefix = "?";',
          'prefix = "?";\n  constructor() {\n    throw new Error("CUDA out of memory");\n  }',
        ),
      );
      await writeFile(file, config("c").replace("./app.ts:app", "./ctor.ts:app"));
      const ctor = await cli(["deploy", file, "--address", instance.address]);
      assert.equal(ctor.code, 1);
      assert.match(ctor.stderr, /Deployment "answer" failed to deploy: .*CUDA out of memory/);

      changed = Date.now();
      assert.deepEqual(
        others(await startedAfter(changed), "v2:b:1"),
        [],
        "the last good config still serves",
      );
      running = false;
      await Promise.all(callers);
      assert.deepEqual(failures, [], "no request failed");
      assert.match((await cli(["config", "--address", instance.address])).stdout, /prefix: b/);

      assert.equal((await cli(["shutdown", "--address", instance.address])).code, 0);
      await instance.exited;
    } finally {
      instance.child.kill("SIGKILL");
    }

    // Restarted with the same state directory, the instance restores the last applied config.
    const again = await startInstance(state);
    try {
      const deadline = Date.now() + 30_000;
      while (!/Restored "versioned"/.test(again.output())) {
        if (Date.now() > deadline) assert.fail(again.output());
        await new Promise((r) => setTimeout(r, 50));
      }
      const status = JSON.parse(
        (await cli(["status", "--json", "--address", again.address])).stdout,
      ) as {
        url: string;
      };
      const response = await fetch(`${status.url}/v`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "2",
      });
      assert.equal(await response.json(), "v2:b:2");
    } finally {
      again.child.kill("SIGINT");
      await again.exited;
    }
  });

  test("start - a token guards the admin API, and a public address needs one", async () => {
    const instance = await startInstance(join(dir, "state-token"), ["--admin-token", "s3cret"]);
    try {
      const denied = await fetch(`${instance.address}/api/status`);
      assert.equal(denied.status, 401);
      const allowed = await fetch(`${instance.address}/api/status`, {
        headers: { authorization: "Bearer s3cret" },
      });
      assert.equal(allowed.status, 200);
      assert.equal(
        (await cli(["status", "--address", instance.address, "--token", "s3cret"])).code,
        0,
      );
    } finally {
      instance.child.kill("SIGINT");
      await instance.exited;
    }
    const open = await promisify(execFile)(
      process.execPath,
      [BIN, "start", "--admin-host", "0.0.0.0", "--admin-port", "0", "--state-dir", join(dir, "x")],
      {
        cwd: ROOT,
        env: { ...process.env, TRIBUTARY_ADMIN_TOKEN: "" },
      },
    ).catch((e: { code: number; stderr: string }) => e);
    assert.equal((open as { code: number }).code, 1);
    assert.match((open as { stderr: string }).stderr, /not a loopback address: give a token/);
  });

  test("start - applies the config file it is given once started; one that does not apply stops it", async () => {
    const project = join(dir, "given");
    await mkdir(project);
    await writeFile(join(project, "app.ts"), moduleSource("v1"));
    await writeFile(join(project, "serve.yaml"), config("given"));
    const instance = await startInstance(join(dir, "state-given"), [join(project, "serve.yaml")]);
    try {
      const deadline = Date.now() + 30_000;
      while (!/Applied .*serve\.yaml: "versioned" started\./.test(instance.output())) {
        if (Date.now() > deadline) assert.fail(`the file was not applied:\n${instance.output()}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const { url } = JSON.parse(
        (await cli(["status", "--json", "--address", instance.address])).stdout,
      ) as { url: string };
      const response = await fetch(`${url}/v`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "7",
      });
      assert.equal(await response.json(), "v1:given:7");
    } finally {
      instance.child.kill("SIGINT");
      await instance.exited;
    }
    await writeFile(join(project, "bad.yaml"), config("x", "    bogus: 1\n"));
    const bad = await promisify(execFile)(
      process.execPath,
      [
        BIN,
        "start",
        "--admin-port",
        "0",
        "--state-dir",
        join(dir, "state-bad"),
        join(project, "bad.yaml"),
      ],
      { cwd: ROOT, timeout: 60_000 },
    ).catch((e: { code: number; stderr: string }) => e);
    assert.equal((bad as { code: number }).code, 1);
    assert.match((bad as { stderr: string }).stderr, /bad\.yaml/);
  });
});
