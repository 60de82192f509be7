/**
 * The sharded recommender across the nodes of a cluster, as README.md ("Across machines")
 * runs it: a real nats-server, a head (`tributary start --cluster`), four shard nodes that
 * each offer one custom resource (`shard_0` … `shard_3`) and one node with CPUs for Lookup
 * and Scorer, then cluster.serve.yaml deployed. Each shard must run on its own node, and
 * what the cluster recommends must equal the unsharded `referenceRecommend`.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { parse, stringify } from "yaml";
import { BIN, cli, ROOT } from "../../test/cli/run-cli.js";
import {
  natsServerBinary,
  natsServerOrSkip,
  startNatsServer,
  type NatsServer,
} from "../../test/cluster/nats-server.js";
import { DEFAULT_CONFIG, referenceRecommend, type Recommendation } from "./app.js";
import { assertSameRecommendation, requests, withK } from "./cases.js";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const N = DEFAULT_CONFIG.numShards;
const shardNodes = Array.from({ length: N }, (_, i) => `shard-node-${i}`);
/** The node for Lookup and Scorer: more CPUs free than a shard node has, at every step. */
const mainNode = "main-node";

interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  output(): string;
}

function spawnCli(name: string, args: string[]): Proc {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const keep = (d: Buffer): void => void (output = (output + d.toString()).slice(-20_000));
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  return { name, child, output: () => output };
}

/** SIGTERM, then SIGKILL if it has not exited within `ms`. */
async function stop(proc: Proc, ms = 8_000): Promise<void> {
  const { child } = proc;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), ms);
  await exited;
  clearTimeout(timer);
}

async function until<T>(what: string, ms: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

interface ClusterStatus {
  url: string;
  nodes: { name: string; state: string; replicas: string[] }[];
  applications: Record<
    string,
    { deployments: Record<string, { replicas: { id: string; state: string; node?: string }[] }> }
  >;
}

describe("sharded-embedding - across the nodes of a cluster", { timeout: 90_000 }, () => {
  let nats: NatsServer | undefined;
  let dir: string | undefined;
  const procs: Proc[] = [];
  let address = "";
  let status: ClusterStatus | undefined;
  /** What every process printed, for a failing assertion's message. */
  const logs = (): string =>
    procs.map((p) => `--- ${p.name}\n${p.output().slice(-3_000)}`).join("\n");

  before(async () => {
    if (!natsServerBinary) return;
    const server = await startNatsServer();
    nats = server;
    dir = await mkdtemp(join(tmpdir(), "tributary-sharded-"));
    const head = spawnCli("head", [
      "start",
      "--cluster",
      server.url,
      "--admin-port",
      "0",
      "--node-timeout",
      "3s",
      "--state-dir",
      join(dir, "state"),
      "--allow-imports",
      HERE,
    ]);
    procs.push(head);
    const node = (name: string, resources: object): void =>
      void procs.push(
        spawnCli(name, [
          "node",
          "--cluster",
          server.url,
          "--name",
          name,
          "--resources",
          JSON.stringify(resources),
        ]),
      );
    node(mainNode, { cpus: 3 });
    shardNodes.forEach((name, i) => node(name, { cpus: 1, custom: { [`shard_${i}`]: 1 } }));

    address = await until("the head serves its admin API", 30_000, async () =>
      Promise.resolve(/Admin API at (\S+)\./.exec(head.output())?.[1]),
    );
    // Placement is decided when the config is applied: every node must have joined by then.
    await until("all five nodes are ALIVE", 30_000, async () => {
      const s = (await (await fetch(`${address}/api/status`)).json()) as ClusterStatus;
      return s.nodes.filter((n) => n.state === "ALIVE").length === N + 1 ? true : undefined;
    }).catch((error: unknown) => assert.fail(`${String(error)}\n${logs()}`));

    // cluster.serve.yaml as the README deploys it, with the front door on a free port.
    const config = parse(await readFile(join(HERE, "cluster.serve.yaml"), "utf8")) as {
      http: { port: number };
      applications: { importPath: string }[];
    };
    config.http.port = 0;
    config.applications[0]!.importPath = `${join(HERE, "app.ts")}:app`;
    const file = join(dir, "cluster.serve.yaml");
    await writeFile(file, stringify(config));
    const deployed = await cli(["deploy", file, "--address", address, "--wait"]);
    assert.equal(deployed.code, 0, `${deployed.stdout}\n${deployed.stderr}\n${logs()}`);
    const read = await cli(["status", "--json", "--address", address]);
    assert.equal(read.code, 0, read.stderr);
    status = JSON.parse(read.stdout) as ClusterStatus;
  });

  after(async () => {
    // The head first (so that it does not replace replicas of the nodes stopping), then the
    // nodes, then NATS; each bounded.
    const [head, ...nodes] = procs;
    if (head) await stop(head);
    await Promise.all(nodes.map((p) => stop(p)));
    await nats?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("sharded-embedding - on a cluster, each shard's replica runs on the node that offers its custom resource", (t) => {
    if (!natsServerOrSkip(t)) return;
    assert.ok(status, "the cluster did not start");
    const { deployments } = status.applications.recommend!;
    const placed = (name: string): string[] =>
      deployments[name]!.replicas.map((r) => {
        assert.equal(r.state, "RUNNING", `${r.id} is ${r.state}`);
        return r.node ?? "(no node)";
      });
    for (let s = 0; s < N; s++) assert.deepEqual(placed(`shard_${s}`), [`shard-node-${s}`]);
    assert.deepEqual(placed("Lookup"), [mainNode]);
    assert.deepEqual(placed("Scorer"), [mainNode]);
    // The nodes list agrees: a shard node hosts its shard and nothing else.
    for (let s = 0; s < N; s++) {
      const listed: ClusterStatus["nodes"][number] | undefined = status.nodes.find(
        (n) => n.name === `shard-node-${s}`,
      );
      assert.equal(listed?.state, "ALIVE");
      assert.deepEqual(listed.replicas, [`shard_${s}#1`]);
    }
  });

  test("sharded-embedding - on a cluster, served over HTTP, the pipeline recommends what the full table does", async (t) => {
    if (!natsServerOrSkip(t)) return;
    assert.ok(status, "the cluster did not start");
    assert.ok(requests.length >= 4);
    for (const request of requests) {
      const response = await fetch(`${status.url}/recommend`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(request),
        signal: AbortSignal.timeout(10_000),
      });
      assert.equal(response.status, 200, await response.clone().text());
      const body = (await response.json()) as Recommendation;
      assert.ok(body.items.length > 0);
      assertSameRecommendation(body, referenceRecommend(withK(request), DEFAULT_CONFIG));
    }
  });
});
