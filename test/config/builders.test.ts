import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { run } from "tributary";
import {
  ConfigError,
  importApplication,
  parseConfig,
  resolveApplication,
} from "tributary/internal";
import { cli, ROOT } from "../cli/run-cli.js";

const FIXTURES = fileURLToPath(new URL("../fixtures/", import.meta.url));
const FILE = join(FIXTURES, "serve.yaml");

test(
  "builders - arguments build the graph, and every replica rebuilds the same one",
  { timeout: 60_000 },
  async () => {
    const { app } = await importApplication("./builder-app.ts:builder", FIXTURES, {
      args: { factor: 3, replicas: 2 },
    });
    assert.equal(app.name, "scaled");
    assert.equal(app.deployments.scaler?.numReplicas, 2);
    await using server = await run(app, { port: 0 });
    // Each replica imported the module and called the builder with the same arguments.
    const answers = await Promise.all([1, 2, 3, 4, 5, 6].map((x) => server.handle.call(x)));
    assert.deepEqual(answers, [3, 6, 9, 12, 15, 18]);
    const status = await server.status();
    assert.equal(status.applications.scaled?.deployments.scaler?.replicas.length, 2);
    const posted = await fetch(`${server.url}/scaled`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "7",
    });
    assert.equal(await posted.json(), 21);
  },
);

test(
  "builders - a builder without a schema gets its arguments as given",
  { timeout: 60_000 },
  async () => {
    const { app } = await importApplication("./builder-app.ts:greeter", FIXTURES, {
      args: { greeting: "hi" },
    });
    await using server = await run(app, { port: 0 });
    assert.equal(await server.handle.call("ada"), "hi, ada");
  },
);

test("builders - a bad argument is rejected with its name, before anything is built", async () => {
  await assert.rejects(
    importApplication("./builder-app.ts:builder", FIXTURES, { args: { factor: "three" } }),
    (error: Error & { issues?: { path: string }[] }) => {
      assert.deepEqual(
        error.issues?.map((i) => i.path),
        ["factor"],
      );
      assert.match(error.message, /builder-app\.ts:builder/);
      return true;
    },
  );
  await assert.rejects(
    importApplication("./basic-app.ts:app", FIXTURES, { args: { x: 1 } }),
    /is an application, not a builder/,
  );
});

test(
  "builders - args: in serve.yaml, a name other than the code's, and a bad argument at its line",
  { timeout: 60_000 },
  async () => {
    const text = `applications:
  - name: tripled
    routePrefix: /triple
    importPath: ./builder-app.ts:builder
    args:
      factor: 3
    deployments:
      - name: scaler
        numReplicas: 2
`;
    const { config, document } = parseConfig(text, FILE);
    const app = await resolveApplication(config.applications[0]!, 0, document, FILE);
    assert.equal(app.name, "tripled");
    assert.equal(app.routePrefix, "/triple");
    assert.equal(app.deployments.scaler?.numReplicas, 2);
    assert.deepEqual(app.toConfig().args, { factor: 3 });
    assert.match(app.toConfig().importPath, /builder-app\.ts:builder$/);
    await using server = await run(app, { port: 0 });
    assert.equal(await server.handle.call(5), 15);
    const oip = await fetch(`${server.url}/v2/models/tripled`);
    assert.equal(oip.status, 200, "OIP addresses the application by its served name");

    const bad = text.replace("factor: 3", "factor: three");
    const parsed = parseConfig(bad, FILE);
    await assert.rejects(
      resolveApplication(parsed.config.applications[0]!, 0, parsed.document, FILE),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.problems.length, 1);
        assert.equal(error.problems[0]!.path, "applications[0].args.factor");
        assert.equal(error.problems[0]!.line, 6);
        return true;
      },
    );
  },
);

test(
  "builders - a renamed application (no builder) is served and found by replicas under its new name",
  { timeout: 60_000 },
  async () => {
    const text = `applications:
  - name: renamed
    importPath: ./basic-app.ts:app
`;
    const { config, document } = parseConfig(text, FILE);
    const app = await resolveApplication(config.applications[0]!, 0, document, FILE);
    assert.equal(app.name, "renamed");
    await using server = await run(app, { port: 0 });
    const status = await server.status();
    assert.equal(status.applications.renamed?.status, "RUNNING");
  },
);

test(
  "builders - tributary run ./app.ts:builder --arg, and a bad --arg named in the error",
  { timeout: 90_000 },
  async () => {
    const bad = await cli([
      "run",
      "./test/fixtures/builder-app.ts:builder",
      "--arg",
      "factor=three",
      "--port",
      "0",
    ]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--arg factor: /);

    const child = spawn(
      process.execPath,
      [
        join(ROOT, "bin/tributary.mjs"),
        "run",
        "./test/fixtures/builder-app.ts:builder",
        "--arg",
        "factor=4",
        "--arg",
        "replicas=2",
        "--arg",
        "name=quad",
        "--port",
        "0",
      ],
      { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
    );
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    const exited = new Promise((resolve) => child.once("exit", resolve));
    try {
      const deadline = Date.now() + 60_000;
      while (!/Serving "quad" at (\S+)\./.test(output)) {
        if (Date.now() > deadline || child.exitCode !== null) assert.fail(output);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const url = /Serving "quad" at (\S+)\./.exec(output)![1]!;
      const answer = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "5",
      });
      assert.equal(await answer.json(), 20);
    } finally {
      child.kill("SIGINT");
      await exited;
    }
  },
);

test(
  "builders - tributary build with an application and a builder gives --arg to the builder (as its help shows); with two builders it says to write args: in the YAML",
  { timeout: 60_000 },
  async () => {
    const both = await cli([
      "build",
      "./test/fixtures/config-app.ts:app",
      "./test/fixtures/builder-app.ts:builder",
      "--arg",
      "factor=3",
    ]);
    assert.equal(both.code, 0, both.stderr);
    assert.match(
      both.stdout,
      /importPath: \.\/test\/fixtures\/builder-app\.ts:builder\n\s+args:\n\s+factor: 3/,
    );
    const two = await cli([
      "build",
      "./test/fixtures/builder-app.ts:builder",
      "./test/fixtures/builder-app.ts:greeter",
      "--arg",
      "factor=3",
    ]);
    assert.equal(two.code, 1);
    assert.match(
      two.stderr,
      /--arg goes with one builder, and .* are builders: for several, write args: in the YAML/,
    );
  },
);
