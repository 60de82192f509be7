/**
 * A cluster's NATS access: a server that wants a user and password, a TLS-only one, and a
 * node whose copy of the application's code differs from the head's. Apart from
 * cluster.test.ts, so that each file stays well within the runner's per-file limit.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { ROOT, cli } from "../cli/run-cli.js";
import { spawnCli, until, type Answer, type Proc, type Status } from "./cli-procs.js";
import { natsServerOrSkip, startNatsServer, type NatsServer } from "./nats-server.js";

/**
 * A node and a head started with `flags`: the node joins, the head applies cluster-app, and
 * a call through the head's front door crosses Front → backend, both on the node (every
 * replica connects to NATS itself, with the node's flags).
 */
async function serveThrough(url: string, flags: string[], procs: Proc[]): Promise<void> {
  const dir = await mkdtemp(join(ROOT, ".tmp-cluster-auth-"));
  try {
    const node = spawnCli([
      "node",
      "--cluster",
      url,
      "--name",
      "authorized",
      "--resources",
      JSON.stringify({ cpus: 2, custom: { front: 1, back: 2 } }),
      ...flags,
    ]);
    procs.push(node);
    await until("the node joins", 30_000, () => {
      if (node.child.exitCode !== null) assert.fail(node.output());
      return node.output().includes('Node "authorized" joined');
    });
    await writeFile(
      join(dir, "serve.yaml"),
      `http:\n  port: 0\napplications:\n  - name: cluster\n    routePrefix: /cluster\n    importPath: ${join(ROOT, "test/fixtures/cluster-app.ts")}:app\n`,
    );
    const head = spawnCli([
      "start",
      join(dir, "serve.yaml"),
      "--cluster",
      url,
      "--admin-port",
      "0",
      "--state-dir",
      join(dir, "state"),
      ...flags,
      "--allow-imports",
      join(ROOT, "test/fixtures"),
    ]);
    procs.push(head);
    const admin = await until(
      "the head's admin API listens",
      30_000,
      () => /Admin API at (\S+)\./.exec(head.output())?.[1],
    );
    await until("the head has applied serve.yaml", 60_000, () => head.output().includes("Applied"));
    const shown = await cli(["status", "--json", "--address", admin]);
    assert.equal(shown.code, 0, shown.stderr);
    const door = (JSON.parse(shown.stdout) as Status).url;
    const answer = await until("a call crosses Front → backend", 30_000, async () => {
      const response = await fetch(`${door}/cluster`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ op: "where" }),
        signal: AbortSignal.timeout(10_000),
      });
      return response.status === 200 && ((await response.json()) as Answer);
    });
    assert.equal(answer.front.node, "authorized", node.output());
    assert.equal(answer.back.node, "authorized", node.output());
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** `openssl`, for a test CA and a server certificate for 127.0.0.1. */
const openssl = spawnSync("openssl", ["version"]).status === 0;

describe("cluster - NATS credentials and TLS reach every client", { timeout: 120_000 }, () => {
  test("cluster - a node with the server's user and password joins and its replicas serve (they connect with them too); without them it exits saying the server refused it", async (t) => {
    if (!natsServerOrSkip(t)) return;
    const nats = await startNatsServer({ args: ["--user", "trib", "--pass", "s3cret"] });
    const procs: Proc[] = [];
    try {
      const refused = await cli(["node", "--cluster", nats.url, "--name", "nobody"]);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /refused the connection/);
      await serveThrough(nats.url, ["--nats-user", "trib", "--nats-password", "s3cret"], procs);
    } finally {
      await Promise.all(procs.map((p) => p.stop()));
      await nats.stop();
    }
  });

  test("cluster - with a TLS-only server, a tls:// URL and --nats-ca connect the head, the node and its replicas; without the CA the node exits saying why", async (t) => {
    if (!natsServerOrSkip(t)) return;
    if (!openssl) {
      if (process.env.CI === "true") assert.fail("openssl is missing (.ci/run installs it)");
      t.skip("openssl is not installed: no certificates for a TLS nats-server");
      return;
    }
    const dir = await mkdtemp(join(ROOT, ".tmp-cluster-tls-"));
    const procs: Proc[] = [];
    let nats: NatsServer | undefined;
    try {
      const ssl = (...args: string[]): void => {
        const made = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" });
        assert.equal(made.status, 0, made.stderr);
      };
      // A test CA, and a certificate it signs for 127.0.0.1. It names localhost too: nats.js
      // gives Node no server name for an IP address, and Node then checks "localhost".
      ssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
      );
      ssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
      );
      await writeFile(join(dir, "san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
      ssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
      );
      nats = await startNatsServer({
        args: ["--tls", "--tlscert", join(dir, "server.pem"), "--tlskey", join(dir, "server.key")],
      });
      const url = `tls://127.0.0.1:${nats.port}`;
      const untrusted = await cli(["node", "--cluster", url, "--name", "nobody"]);
      assert.equal(untrusted.code, 1);
      assert.match(untrusted.stderr, /certificate/i);
      await serveThrough(url, ["--nats-ca", join(dir, "ca.pem")], procs);
    } finally {
      await Promise.all(procs.map((p) => p.stop()));
      await nats?.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("cluster - a node's copy of the code must be the head's", { timeout: 120_000 }, () => {
  test("cluster - a node whose copy of the application's module differs from the head's refuses its replicas and says why; the same code then starts them", async (t) => {
    if (!natsServerOrSkip(t)) return;
    const nats = await startNatsServer();
    const dir = await mkdtemp(join(ROOT, ".tmp-cluster-code-"));
    const procs: Proc[] = [];
    try {
      const fixture = await readFile(join(ROOT, "test/fixtures/cluster-app.ts"), "utf8");
      const module = join(dir, "app.ts");
      // Head and node share this machine's files: the module changes between the head's
      // apply (no node yet: the replicas wait) and the node's start of them.
      await writeFile(module, `${fixture}\n// the head's copy\n`);
      await writeFile(
        join(dir, "serve.yaml"),
        `http:\n  port: 0\napplications:\n  - name: cluster\n    routePrefix: /cluster\n    importPath: ${module}:app\n`,
      );
      const head = spawnCli([
        "start",
        join(dir, "serve.yaml"),
        "--cluster",
        nats.url,
        "--admin-port",
        "0",
        "--state-dir",
        join(dir, "state"),
        "--allow-imports",
        dir,
      ]);
      procs.push(head);
      const admin = await until(
        "the head's admin API listens",
        30_000,
        () => /Admin API at (\S+)\./.exec(head.output())?.[1],
      );
      await until("the head has applied serve.yaml", 60_000, () =>
        head.output().includes("Applied"),
      );
      const deployments = async () => {
        const shown = await cli(["status", "--json", "--address", admin]);
        assert.equal(shown.code, 0, shown.stderr);
        return (JSON.parse(shown.stdout) as Status).applications.cluster!.deployments;
      };
      await writeFile(module, `${fixture}\n// the node's copy, edited after the head read it\n`);
      const node = spawnCli([
        "node",
        "--cluster",
        nats.url,
        "--name",
        "stale",
        "--resources",
        JSON.stringify({ cpus: 2, custom: { front: 1, back: 2 } }),
      ]);
      procs.push(node);
      const refused = await until("the node refuses the replicas", 60_000, async () =>
        Object.values(await deployments()).find((d) => /other code than the head/.test(d.message)),
      );
      assert.match(refused.message, /deploy the same code to every node/);
      assert.equal(refused.replicas.filter((r) => r.state === "RUNNING").length, 0);
      // The same code on the node: the head's next try starts them.
      await writeFile(module, `${fixture}\n// the head's copy\n`);
      const shown = await until("the application runs", 90_000, async () => {
        const shown = await cli(["status", "--json", "--address", admin]);
        const s = JSON.parse(shown.stdout) as Status;
        return s.applications.cluster?.status === "RUNNING" && s;
      });
      const response = await fetch(`${shown.url}/cluster`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ op: "where" }),
        signal: AbortSignal.timeout(30_000),
      });
      const answer = (await response.json()) as Answer;
      assert.equal(response.status, 200, JSON.stringify(answer));
      assert.equal(answer.back.node, "stale");
    } finally {
      await Promise.all(procs.map((p) => p.stop()));
      await nats.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
