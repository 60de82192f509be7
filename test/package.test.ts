/**
 * The package as a user gets it: `npm pack`, then `npm install <tarball>` into a fresh
 * project in the system's temporary directory (outside this repository, so nothing here
 * can be resolved by accident), with no .npmrc and no TypeScript loader until the
 * TypeScript steps install one. It needs only the npm registry, as `npm install` does.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, stat, writeFile, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { ROOT } from "./start-main.js";

const exec = promisify(execFile);

/**
 * The user's environment: none of npm's variables from `npm test`, no source condition,
 * and no NODE_TEST_CONTEXT (with it, a `node --test` inside a test reports to this runner).
 */
const USER_ENV = Object.fromEntries(
  Object.entries(process.env).filter(
    ([key]) => !/^npm_/i.test(key) && !["NODE_OPTIONS", "NODE_TEST_CONTEXT"].includes(key),
  ),
);

async function sh(
  cwd: string,
  command: string,
  args: string[],
  timeout = 120_000,
): Promise<{ stdout: string; stderr: string }> {
  try {
    return await exec(command, args, { cwd, env: USER_ENV, timeout, maxBuffer: 16 << 20 });
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(
      `${command} ${args.join(" ")} failed in ${cwd}: ${(error as Error).message}\n${stdout}\n${stderr}`,
    );
  }
}

const npm = (cwd: string, ...args: string[]) =>
  sh(cwd, "npm", [...args, "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"]);

/**
 * Starts a `tributary` bin (by default the project's, what `npx tributary` runs) with
 * `args`, waits for the URL it serves, runs `use(url)`, then sends Ctrl-C and expects a
 * clean exit.
 */
async function serving(
  cwd: string,
  args: string[],
  ready: RegExp,
  use: (url: string) => Promise<void>,
  bin = join(cwd, "node_modules", ".bin", "tributary"),
): Promise<void> {
  const child = spawn(bin, args, { cwd, env: USER_ENV, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  try {
    const deadline = Date.now() + 60_000;
    let match: RegExpExecArray | null;
    while (!(match = ready.exec(output))) {
      if (Date.now() > deadline || child.exitCode !== null)
        assert.fail(`tributary ${args.join(" ")} did not come up:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await use(match[1]!);
    child.kill("SIGINT");
    assert.equal(await exited, 0, `exit code after Ctrl-C; output:\n${output}`);
  } finally {
    if (child.exitCode === null) child.kill("SIGKILL");
  }
}

async function post(url: string, body: unknown): Promise<unknown> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  assert.equal(response.status, 200, await response.clone().text());
  return response.json();
}

async function directorySize(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name))).size;
  }
  return total;
}

const APP_JS = `import { z } from "zod";
import { build, deployment, image, InputNode, run } from "tributary";

// A thread replica and a process replica, both loading this file as it is.
const double = deployment(async function double(x) {
  return 2 * x;
});
class Describe {
  async describe(y) {
    // This module imports zod, so its replicas do: the same probe as plain-app.mjs's.
    return { y, pid: process.pid, ppid: process.ppid, zod: globalThis.__zod_globalRegistry !== undefined };
  }
}
const describer = deployment(Describe, { isolation: "process" }).bind();
const input = new InputNode(z.object({ x: z.number() }));
export const app = build(describer.describe.bind(double.bind(input.x)), { name: "double" });

if (process.argv[2] === "serve") {
  const server = await run(app, { port: 0 });
  const response = await fetch(server.url + "/double", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ x: 21 }),
  });
  const result = await response.json();
  let imageError;
  try {
    image();
  } catch (error) {
    imageError = { code: error.code, message: error.message };
  }
  console.log(JSON.stringify({ status: response.status, result, main: process.pid, imageError }));
  await server.close();
}
`;

const APP_TS = `import { z } from "zod";
import { build, deployment, InputNode, run, type DeploymentHandle } from "tributary";

class Scale {
  constructor(private factor: number) {}
  async apply(x: number): Promise<number> {
    return this.factor * x;
  }
}
class Offset {
  constructor(private scale: DeploymentHandle<Scale>) {}
  async apply(x: number): Promise<{ value: number; from: string; tsx: boolean }> {
    // Whether tributary registered tsx in this replica's thread: only for app.ts.
    const tsx = (globalThis as Record<symbol, unknown>)[Symbol.for("tributary.tsx-registered")] === true;
    return { value: (await this.scale.apply(x)) + 1, from: import.meta.url.slice(-6), tsx };
  }
}
const scale = deployment(Scale).bind(3);
const offset = deployment(Offset).bind(scale);
const input = new InputNode(z.object({ x: z.number() }));
export const graph = offset.apply.bind(input.x);
export const app = build(graph, { name: "affine", routePrefix: "/affine" });

if (process.argv[2] === "serve") {
  await using server = await run(app, { port: 0 });
  const value: { value: number; from: string; tsx: boolean } = await server.handle.call({ x: 2 });
  console.log(JSON.stringify(value));
}
`;

describe("the packed package in a fresh project", { timeout: 600_000 }, () => {
  let work = "";
  let tarball = "";
  let project = "";

  before(async () => {
    work = await mkdtemp(join(tmpdir(), "tributary-package-"));
    project = join(work, "project");
    const manifest = await readFile(join(ROOT, "package.json"), "utf8");
    const { stdout } = await sh(ROOT, "npm", ["pack", "--json", "--pack-destination", work]);
    assert.equal(
      await readFile(join(ROOT, "package.json"), "utf8"),
      manifest,
      "the checkout's package.json is as it was after the pack",
    );
    const [packed] = JSON.parse(stdout.slice(stdout.indexOf("["))) as [
      { filename: string; files: { path: string }[] },
    ];
    tarball = join(work, packed.filename);
    const paths = packed.files.map((f) => f.path);
    const outside = paths.filter(
      (p) => !/^(dist\/|bin\/|docs\/[^/]+\.md$|README\.md$|LICENSE$|package\.json$)/.test(p),
    );
    assert.deepEqual(outside, [], "the tarball ships only dist/, bin/, docs, README, LICENSE");
    assert.ok(paths.includes("dist/index.js") && paths.includes("dist/index.d.ts"));
    assert.ok(!paths.some((p) => p.includes(".test.")), "no tests in the tarball");
    await sh(work, "mkdir", ["project"]);
    await writeFile(
      join(project, "package.json"),
      JSON.stringify({ name: "fresh", private: true, type: "module" }),
    );
    await npm(project, "install", tarball);
  });

  after(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  test("installs without model runtimes, gRPC, sharp or a TypeScript loader, in under 30 MB", async () => {
    const modules = join(project, "node_modules");
    // The repository's scripts stay in it: npm 11 warned of the `prepare` of an installed
    // tarball as an install script to approve.
    const shipped = JSON.parse(
      await readFile(join(modules, "tributary", "package.json"), "utf8"),
    ) as Record<string, unknown>;
    assert.equal(shipped.scripts, undefined);
    assert.equal(shipped.workspaces, undefined);
    assert.equal(shipped.name, "tributary");
    assert.ok(shipped.exports && shipped.bin, "exports and bin are kept");
    const installed = await readdir(modules);
    for (const absent of ["onnxruntime-node", "sharp", "tsx", "@napi-rs", "@gutenye", "@grpc"])
      assert.ok(!installed.includes(absent), `${absent} is not installed`);
    const megabytes = (await directorySize(modules)) / 2 ** 20;
    console.log(`# install size with dependencies: ${megabytes.toFixed(1)} MB`);
    assert.ok(megabytes < 30, `install size ${megabytes.toFixed(1)} MB`);
  });

  test("a plain-JavaScript app runs with node: thread and process replicas, no loader", async () => {
    await writeFile(join(project, "app.mjs"), APP_JS);
    const { stdout } = await sh(project, process.execPath, ["app.mjs", "serve"], 60_000);
    const out = JSON.parse(stdout.trim().split("\n").at(-1)!) as {
      status: number;
      result: { y: number; pid: number; ppid: number; zod: boolean };
      main: number;
      imageError: { code: string; message: string };
    };
    assert.equal(out.status, 200);
    assert.equal(out.result.y, 42);
    assert.notEqual(out.result.pid, out.main, "the process replica is its own process");
    assert.equal(out.result.ppid, out.main);
    assert.equal(out.result.zod, true, "the zod probe sees an app's own zod");
    // image() without sharp names the package to install.
    assert.equal(out.imageError.code, "MISSING_PACKAGE");
    assert.match(out.imageError.message, /npm install sharp/);
  });

  test("a JavaScript app's replicas load neither zod nor tsx (threads and processes)", async () => {
    // A copy inside the project, so that "tributary" is the installed package.
    await writeFile(
      join(project, "plain-app.mjs"),
      await readFile(join(ROOT, "test", "fixtures", "plain-app.mjs"), "utf8"),
    );
    const { stdout } = await sh(project, process.execPath, ["plain-app.mjs", "serve"], 60_000);
    assert.deepEqual(JSON.parse(stdout.trim().split("\n").at(-1)!), {
      fromThread: { x: 7, zod: false, tsx: false },
      fromProcess: { zod: false, tsx: false },
    });
  });

  test("the README's JavaScript getting-started runs as written: node --test, then the CLI", async () => {
    const readme = await readFile(join(ROOT, "README.md"), "utf8");
    const block = (name: string) => {
      const code = new RegExp("```js\\n(// " + name.replace(".", "\\.") + "[\\s\\S]*?)```").exec(
        readme,
      )?.[1];
      assert.ok(code, `README.md has a js block for ${name}`);
      return code;
    };
    const dir = join(work, "readme");
    await sh(work, "mkdir", ["readme"]);
    await writeFile(join(dir, "package.json"), JSON.stringify({ type: "module" }));
    await writeFile(join(dir, "app.mjs"), block("app.mjs"));
    await writeFile(join(dir, "app.test.mjs"), block("app.test.mjs"));
    // The project's node_modules, as `npm install tributary zod` would have made it.
    await sh(dir, "ln", ["-s", join(project, "node_modules"), "node_modules"]);
    const { stdout } = await sh(dir, process.execPath, [
      "--test",
      "--test-reporter=tap",
      "app.test.mjs",
    ]);
    assert.match(stdout, /# pass 1/);
    await serving(
      dir,
      ["run", "./app.mjs:app", "--port", "0"],
      /at (http:\/\/\S+\/words)/,
      async (url) =>
        assert.deepEqual(await post(url, { text: "the cat and the hat" }), {
          words: 5,
          distinct: 4,
        }),
    );
  });

  test("the CLI serves a JavaScript module: npx tributary run ./app.mjs:app", async () => {
    await serving(
      project,
      ["run", "./app.mjs:app", "--port", "0"],
      /at (http:\/\/\S+\/double)/,
      async (url) => assert.equal(((await post(url, { x: 4 })) as { y: number }).y, 8),
    );
  });

  test("another copy's CLI (a global or cached npx one) hands over to the project's copy", async () => {
    // The repository's own bin, run in the project: the app imports the project's copy.
    await serving(
      project,
      ["run", "./app.mjs:app", "--port", "0"],
      /at (http:\/\/\S+\/double)/,
      async (url) => assert.equal(((await post(url, { x: 1 })) as { y: number }).y, 2),
      join(ROOT, "bin", "tributary.mjs"),
    );
  });

  test("with source maps on, the built library's frames are not taken for the user's", async () => {
    // In the repository (as in a monorepo's linked workspace) dist/ is not under
    // node_modules, and source maps show its frames at their src/ paths: run() must still
    // see plain-app.mjs's top-level build(). npm pack has just built dist/.
    const { stdout } = await sh(
      ROOT,
      process.execPath,
      ["--enable-source-maps", join("test", "fixtures", "plain-app.mjs"), "serve"],
      60_000,
    );
    assert.equal(
      (JSON.parse(stdout.trim().split("\n").at(-1)!) as { fromThread: { x: number } }).fromThread.x,
      7,
    );
  });

  test("a TypeScript module needs tsx, and says so", async () => {
    await writeFile(join(project, "app.ts"), APP_TS);
    const child = await sh(project, "npx", [
      "--no-install",
      "tributary",
      "run",
      "./app.ts:app",
    ]).then(
      () => undefined,
      (error: Error) => error.message,
    );
    assert.match(
      child ?? "",
      /app\.ts is TypeScript, and no TypeScript loader was found for it: install tsx/,
    );
  });

  describe("with TypeScript tooling installed", () => {
    before(async () => {
      await npm(project, "install", "--save-dev", "tsx", "typescript", "@types/node@20");
    });

    test("the CLI serves a TypeScript module through tsx: npx tributary run ./app.ts:app", async () => {
      await serving(
        project,
        ["run", "./app.ts:app", "--port", "0"],
        /at (http:\/\/\S+\/affine)/,
        async (url) =>
          assert.deepEqual(await post(url, { x: 2 }), { value: 7, from: "app.ts", tsx: true }),
      );
    });

    test("a TypeScript app compiled by tsc (nodenext, strict) runs with node and with the CLI", async () => {
      await writeFile(
        join(project, "tsconfig.json"),
        JSON.stringify({
          compilerOptions: {
            target: "ES2022",
            lib: ["ES2022", "ESNext.Disposable"],
            module: "nodenext",
            moduleResolution: "nodenext",
            strict: true,
            skipLibCheck: true,
            types: ["node"],
            outDir: "dist",
          },
          files: ["app.ts"],
        }),
      );
      await sh(project, "npx", ["--no-install", "tsc", "-p", "."]);
      const { stdout } = await sh(project, process.execPath, ["dist/app.js", "serve"], 60_000);
      // Compiled: no TypeScript loader in the replicas, although tsx is installed now.
      assert.deepEqual(JSON.parse(stdout.trim()), { value: 7, from: "app.js", tsx: false });
      await serving(
        project,
        ["run", "./dist/app.js:app", "--port", "0"],
        /at (http:\/\/\S+\/affine)/,
        async (url) =>
          assert.deepEqual(await post(url, { x: 5 }), { value: 16, from: "app.js", tsx: false }),
      );
    });

    test("a type error in the user's code is reported against Tributary's types", async () => {
      await writeFile(
        join(project, "wrong.ts"),
        `import { deployment } from "tributary";\n` +
          `const f = deployment(async function f(x: number) { return x; });\n` +
          `f.bind("not a number");\n`,
      );
      await writeFile(
        join(project, "tsconfig.wrong.json"),
        JSON.stringify({
          extends: "./tsconfig.json",
          compilerOptions: { noEmit: true },
          files: ["wrong.ts"],
        }),
      );
      const result = await sh(project, "npx", [
        "--no-install",
        "tsc",
        "-p",
        "tsconfig.wrong.json",
      ]).then(
        () => "compiled",
        (error: Error) => error.message,
      );
      assert.match(result, /wrong\.ts\(3,\d+\): error TS2345/);
    });
  });

  test("tributary init writes a project that type-checks, whose npm test passes, and that npx tributary run serves", async () => {
    const { stdout } = await sh(project, "npx", ["--no-install", "tributary", "init", "my-app"]);
    assert.match(stdout, /Wrote .*app\.ts.*serve\.yaml/);
    const app = join(project, "my-app");
    const manifest = JSON.parse(await readFile(join(app, "package.json"), "utf8")) as {
      type: string;
      dependencies: Record<string, string>;
    };
    assert.equal(manifest.type, "module");
    // Not "^0.1.0" (the registry's tributary is another package): the tarball this project
    // installed, so the printed `npm install` works as it is.
    assert.equal(manifest.dependencies.tributary, `file:${tarball}`);
    assert.match(stdout, /npm install +# Tributary from /);
    await npm(app, "install");
    await sh(app, "npm", ["run", "typecheck"]);
    const { stdout: tests } = await sh(app, "npm", ["test"]);
    // TAP ("# pass 2") on Node 20 without a terminal, the spec reporter ("ℹ pass 2") on Node 24.
    assert.match(tests, /(?:#|ℹ) pass 2\b/);
    assert.match(tests, /(?:#|ℹ) fail 0\b/);
    await serving(app, ["run", "--port", "0"], /at (http:\/\/\S+\/sentiment)/, async (url) =>
      // serve.yaml's userConfig adds "fine" to the positive words.
      assert.deepEqual(await post(url, { text: "fine, just fine" }), { words: 3, score: 2 }),
    );
    // Running init again never overwrites.
    await assert.rejects(
      sh(project, "npx", ["--no-install", "tributary", "init", "my-app"]),
      /already has .*package\.json/,
    );
  });

  test("a cluster command without the cluster's packages names every one to install at once", async () => {
    await assert.rejects(
      sh(project, "npx", ["--no-install", "tributary", "node", "--cluster", "nats://127.0.0.1:9"]),
      /The cluster needs @nats-io\/transport-node and @nats-io\/kv and @nats-io\/jetstream, which are not installed: run npm install @nats-io\/transport-node @nats-io\/kv @nats-io\/jetstream/,
    );
  });

  test("CommonJS can require() the package (Node's require of ES modules)", async () => {
    const { stdout } = await sh(project, process.execPath, [
      "-e",
      'const t = require("tributary"); console.log(typeof t.deployment, typeof t.run)',
    ]);
    assert.equal(stdout.trim(), "function function");
    // A graph built at a CommonJS module's top level serves (its code runs in a wrapper
    // function, which is not "built inside a function").
    await writeFile(
      join(project, "doubler.cjs"),
      `const { z } = require("zod");
const { build, deployment, InputNode } = require("tributary");
const double = deployment(async function double(x) { return x * 2; });
exports.app = build(double.bind(new InputNode(z.number())), { name: "dbl" });
if (!require("node:worker_threads").isMainThread) console.log("a replica loaded this module");
`,
    );
    const served = await sh(project, process.execPath, [
      "-e",
      `const { run } = require("tributary");
run(require("./doubler.cjs").app, { port: 0, logLevel: "fatal" }).then(async (server) => {
  console.log(await server.handle.call(21));
  await server.close();
});`,
    ]);
    assert.equal(served.stdout.trim().split("\n").at(-1), "42");
    assert.match(served.stdout, /a replica loaded this module/);
    // The gRPC front door without its packages: said before any replica starts.
    const noGrpc = await sh(project, process.execPath, [
      "-e",
      `const { run } = require("tributary");
run(require("./doubler.cjs").app, { port: 0, logLevel: "fatal", grpc: { port: 0 } }).then(
  (server) => server.close(),
  (error) => console.log(error.code + ": " + error.message),
);`,
    ]);
    assert.equal(
      noGrpc.stdout.trim(),
      "MISSING_PACKAGE: gRPC (the grpc option) needs @grpc/grpc-js and @grpc/proto-loader, which are not installed: run npm install @grpc/grpc-js @grpc/proto-loader",
    );
  });
});
