import assert from "node:assert/strict";
import { request } from "node:http";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Instance } from "tributary/internal";

/** One raw HTTP request to the admin API, with any headers (Host included). */
function adminRequest(
  address: string,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<{
  status: number;
  requestId: string | undefined;
  body: { error?: { code: string; message: string; requestId?: string } };
}> {
  const url = new URL(address);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, method, path, headers, timeout: 10_000 },
      (res) => {
        let text = "";
        res.on("data", (chunk: Buffer) => (text += chunk.toString()));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            requestId: res.headers["x-request-id"] as string | undefined,
            body: JSON.parse(text || "{}") as never,
          }),
        );
      },
    );
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.end(body);
  });
}

describe("admin API - safe by default", { timeout: 60_000 }, () => {
  let root: string;
  let project: string;
  let outside: string;
  let instance: Instance;
  let address: string;
  const marker = () => join(outside, "ran");

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "tributary-admin-"));
    project = join(root, "project");
    outside = join(root, "outside");
    await mkdir(project);
    await mkdir(outside);
    // A module whose top-level code leaves a trace: importing it is running it.
    const leaves = `import { writeFileSync } from "node:fs";\nwriteFileSync(${JSON.stringify(join(outside, "ran"))}, "ran");\nexport const app = 1;\n`;
    await writeFile(join(outside, "evil.ts"), leaves);
    await writeFile(join(project, "evil.ts"), leaves);
    await writeFile(join(project, "secrets.txt"), "root:x:0:0 secret-token-ABC\n");
    await writeFile(join(project, "secrets.ts"), "root:x:0:0 secret-token-ABC\n");
    instance = new Instance({
      adminHost: "127.0.0.1",
      adminPort: 0,
      adminToken: undefined,
      stateDir: join(root, "state"),
      imports: { projectDir: project },
    });
    address = await instance.listen();
  });
  after(async () => {
    await instance.close();
    await rm(root, { recursive: true, force: true });
  });

  const host = () => new URL(address).host;
  const deploy = (file: string, text: string, headers: Record<string, string> = {}) =>
    adminRequest(
      address,
      "PUT",
      "/api/deploy",
      { host: host(), "content-type": "application/json", ...headers },
      JSON.stringify({ file, text }),
    );
  const config = (importPath: string, extra = "") =>
    `applications:\n  - name: x\n    importPath: ${importPath}\n${extra}`;

  test("admin - a module outside the config file's directory or the project is not imported", async () => {
    for (const [file, importPath] of [
      [join(project, "serve.yaml"), "../outside/evil.ts:app"],
      [join(project, "serve.yaml"), `${join(outside, "evil.ts")}:app`],
      // The caller names the config file: claiming it lies outside the project does not help.
      [join(outside, "serve.yaml"), "./evil.ts:app"],
    ] as const) {
      const answer = await deploy(file, config(importPath));
      assert.equal(answer.status, 400, JSON.stringify(answer.body));
      assert.match(
        answer.body.error!.message,
        /outside the directories this instance imports from/,
      );
      assert.match(answer.body.error!.message, /Nothing was imported/);
      assert.equal(existsSync(marker()), false, `${importPath} was imported`);
    }
  });

  test("admin - a config that fails any other check imports nothing", async () => {
    const answer = await deploy(
      join(project, "serve.yaml"),
      config("./evil.ts:app", "    deployments:\n      - name: a\n        numReplicaz: 2\n"),
    );
    assert.equal(answer.status, 400);
    assert.match(answer.body.error!.message, /unknown field "numReplicaz"/);
    assert.equal(existsSync(marker()), false, "the module ran although the config was invalid");
  });

  test("admin - a non-JavaScript file is not imported and errors never quote a file's contents", async () => {
    const text = await deploy(join(project, "serve.yaml"), config("./secrets.txt"));
    assert.equal(text.status, 400);
    assert.match(text.body.error!.message, /not a JavaScript or TypeScript file/);
    const ts = await deploy(join(project, "serve.yaml"), config("./secrets.ts:app"));
    assert.equal(ts.status, 400);
    assert.match(ts.body.error!.message, /not valid JavaScript or TypeScript \(a syntax error/);
    for (const answer of [text, ts])
      assert.doesNotMatch(JSON.stringify(answer.body), /secret-token|root:x/);
  });

  test("admin - a Host other than the bound address or localhost is refused (DNS rebinding)", async () => {
    const port = new URL(address).port;
    const rebound = await adminRequest(address, "GET", "/api/status", {
      host: `attacker.example:${port}`,
    });
    assert.equal(rebound.status, 403);
    assert.equal(rebound.body.error!.code, "FORBIDDEN");
    for (const name of [`127.0.0.1:${port}`, `localhost:${port}`]) {
      const ok = await adminRequest(address, "GET", "/api/status", { host: name });
      assert.equal(ok.status, 200, name);
    }
  });

  test("admin - cross-origin and non-JSON requests are refused, so a web page cannot shut it down", async () => {
    const shutdown = (headers: Record<string, string>, body?: string) =>
      adminRequest(address, "POST", "/api/shutdown", { host: host(), ...headers }, body);
    const csrf = await shutdown(
      { origin: "http://attacker.example", "content-type": "text/plain" },
      "{}",
    );
    assert.equal(csrf.status, 403);
    const fetched = await shutdown(
      { "sec-fetch-site": "cross-site", "content-type": "application/json" },
      "{}",
    );
    assert.equal(fetched.status, 403);
    const plain = await shutdown({ "content-type": "text/plain" }, "{}");
    assert.equal(plain.status, 415);
    assert.equal(plain.body.error!.code, "UNSUPPORTED_MEDIA_TYPE");
    const form = await shutdown({ "content-type": "application/x-www-form-urlencoded" }, "a=1");
    assert.equal(form.status, 415);
    const none = await shutdown({});
    assert.equal(none.status, 415);
    // Still up: the status answers.
    const status = await adminRequest(address, "GET", "/api/status", { host: host() });
    assert.equal(status.status, 200);
    // A same-origin JSON request (the CLI, or the instance's own page) is answered.
    const sameOrigin = await adminRequest(address, "GET", "/api/status", {
      host: host(),
      origin: `http://${host()}`,
    });
    assert.equal(sameOrigin.status, 200);
  });

  test("admin - a malformed, incomplete, too large or misrouted request gets its 4xx and the error envelope", async () => {
    const json = { host: host(), "content-type": "application/json" };
    const checks = [
      [await adminRequest(address, "PUT", "/api/deploy", json, "{not json"), 400, "BAD_REQUEST"],
      [await adminRequest(address, "PUT", "/api/deploy", json, "{}"), 400, "BAD_REQUEST"],
      [
        await adminRequest(
          address,
          "PUT",
          "/api/deploy",
          json,
          JSON.stringify({ text: "x".repeat(5 * 2 ** 20) }),
        ),
        413,
        "PAYLOAD_TOO_LARGE",
      ],
      [await adminRequest(address, "GET", "/api/nope", { host: host() }), 404, "NOT_FOUND"],
      [await deploy("serve.yaml", "applications: [}"), 400, "INVALID_CONFIG"],
    ] as const;
    for (const [answer, status, code] of checks) {
      assert.equal(answer.status, status, JSON.stringify(answer.body));
      assert.equal(answer.body.error?.code, code);
      assert.ok(answer.requestId, "x-request-id is set");
      assert.equal(answer.body.error?.requestId, answer.requestId);
    }
  });
});
