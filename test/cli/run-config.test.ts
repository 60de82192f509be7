import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { parseBuilderArgs } from "tributary/internal";
import { BIN, cli, ROOT } from "./run-cli.js";

test("cli - --arg values read as YAML scalars, as under args:", () => {
  assert.deepEqual(
    parseBuilderArgs([
      "replicas=2",
      "path=./m.onnx",
      "on=true",
      'id="2"',
      "expr=a=b",
      "list=[1, 2]",
    ]),
    { replicas: 2, path: "./m.onnx", on: true, id: "2", expr: "a=b", list: "[1, 2]" },
  );
  assert.throws(() => parseBuilderArgs(["replicas"]), /--arg replicas: expected key=value/);
  assert.throws(() => parseBuilderArgs(["a=1", "a=2"]), /--arg a is given twice/);
});

test(
  "cli - tributary run serve.yaml serves every application of the file, a builder's from its args:",
  { timeout: 90_000 },
  async () => {
    const dir = await mkdtemp(join(ROOT, ".tmp-run-config-"));
    const file = join(dir, "serve.yaml");
    await writeFile(
      join(dir, "apps.ts"),
      'export { app } from "../test/fixtures/basic-app.js";\nexport { builder } from "../test/fixtures/builder-app.js";\n',
    );
    await writeFile(
      file,
      `http: { port: 0 }
applications:
  - name: basic
    importPath: ./apps.ts:app
  - name: doubled
    routePrefix: /double
    importPath: ./apps.ts:builder
    args: { factor: 2 }
`,
    );
    const child = spawn(process.execPath, [BIN, "run", file], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
    try {
      const deadline = Date.now() + 60_000;
      while (!/Serving .*"doubled" at (\S+)\./.test(output)) {
        if (Date.now() > deadline || child.exitCode !== null) assert.fail(output);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.match(output, /"basic" at http:\/\/127\.0\.0\.1:\d+\/basic/);
      const url = /"doubled" at (\S+)\./.exec(output)![1]!;
      const answer = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "21",
      });
      assert.equal(await answer.json(), 42);
      const models = await fetch(new URL("/v2/models/basic", url));
      assert.equal(models.status, 200);

      // A bad argument in the YAML is named with its file and line, and nothing is served.
      const badFile = join(dir, "bad.yaml");
      await writeFile(badFile, (await readFile(file, "utf8")).replace("factor: 2", "factor: two"));
      const bad = await cli(["run", badFile]);
      assert.equal(bad.code, 1);
      assert.match(
        bad.stderr,
        /bad\.yaml:8:\d+: applications\[1\]\.args\.factor: .*expected number/,
      );
    } finally {
      child.kill("SIGINT");
      assert.equal(await exited, 0, output);
      await rm(dir, { recursive: true, force: true });
    }
  },
);
