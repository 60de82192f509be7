/**
 * The request plane across nodes (issue 14, item 3): a head in this process
 * (`ClusterHead` and `run(app, { cluster })`) and two `tributary node` processes on a real
 * nats-server. The caller replica runs on n1 and the leaf on n2, so every call below
 * crosses NATS, from the head and from replica to replica: streaming, a timeout and a
 * cancel that reach the leaf's `requestContext().signal`, a strict `maxOngoingRequests`
 * with two routers sending to one replica (nothing lost, nothing run twice), and
 * autoscaling that places its new replica on the other node.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test, type TestContext } from "node:test";
import type { NatsConnection } from "@nats-io/transport-node";
import { run, type Server } from "tributary";
import { Kvm } from "@nats-io/kv";
import {
  ClusterHead,
  connectNats,
  NatsMailbox,
  NODE_LEAVING,
  subjects,
  type FromNode,
  type NodeRecord,
  type ToNode,
} from "tributary/internal";
import { BIN, ROOT } from "../cli/run-cli.js";
import {
  app,
  exitsApp,
  rolledApp,
  scaled,
  standApp,
  type Busy,
  type Caller,
  type Leaf,
} from "../fixtures/plane-app.js";
import {
  natsServerBinary,
  natsServerOrSkip,
  startNatsServer,
  type NatsServer,
} from "./nats-server.js";

const CLUSTER = "plane";

interface NodeProcess {
  readonly child: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

async function startNode(url: string, name: string, resources: object): Promise<NodeProcess> {
  const child = spawn(
    process.execPath,
    [
      BIN,
      "node",
      "--cluster",
      url,
      "--cluster-name",
      CLUSTER,
      "--name",
      name,
      "--resources",
      JSON.stringify(resources),
    ],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  const read = (d: Buffer): void => void (output = (output + d.toString()).slice(-20_000));
  child.stdout.on("data", read);
  child.stderr.on("data", read);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const node: NodeProcess = {
    child,
    output: () => output,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
  const deadline = Date.now() + 30_000;
  while (!output.includes(`Node "${name}" joined`)) {
    if (child.exitCode !== null) assert.fail(`node ${name} exited:\n${output}`);
    if (Date.now() > deadline) {
      await node.stop();
      assert.fail(`node ${name} did not join within 30 s:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return node;
}

async function until<T>(what: string, ms: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Closes the server that `run()` returns, if it does within 10 s (a test that failed). */
async function closeLate(starting: Promise<Server>): Promise<void> {
  await within(10_000, starting, () => "run() did not return")
    .then((server) => server.close())
    .catch(() => undefined);
}

/** `promise`, or a failure saying what did not happen within `ms`. */
async function within<T>(ms: number, promise: Promise<T>, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what()} within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

describe("cluster - the request plane across nodes", { timeout: 120_000 }, () => {
  let nats: NatsServer | undefined;
  let storeDir: string | undefined;
  let nc: NatsConnection | undefined;
  let head: ClusterHead | undefined;
  const nodes: NodeProcess[] = [];
  const servers: Server[] = [];

  before(async () => {
    if (!natsServerBinary) return;
    // Its own store, kept across the restart of the last test.
    storeDir = await mkdtemp(join(tmpdir(), "tributary-plane-nats-"));
    nats = await startNatsServer({ storeDir });
    // n1 takes the caller, n2 the leaf; each can take one replica of Busy.
    nodes.push(await startNode(nats.url, "n1", { cpus: 2, custom: { caller: 1, busy: 1 } }));
    nodes.push(await startNode(nats.url, "n2", { cpus: 2, custom: { leaf: 1, busy: 1 } }));
    nc = await connectNats(nats.url, { name: "request-plane-test-head" });
    // The default nodeTimeout: the NATS restart below must not make the nodes end their
    // replicas (a heartbeat lost in it once waited out JetStream's 5 s, past half of it).
    head = await ClusterHead.open(nc, { name: CLUSTER, nodeTimeoutMs: 10_000 });
    servers.push(await run(app, { cluster: head, port: 0, logLevel: "fatal" }));
  });

  after(async () => {
    for (const server of servers) await server.close().catch(() => undefined);
    await head?.close();
    await nc?.drain().catch(() => undefined);
    await Promise.all(nodes.map((n) => n.stop()));
    await nats?.stop();
    if (storeDir) await rm(storeDir, { recursive: true, force: true });
  });

  const logs = (): string => nodes.map((n) => n.output().slice(-3_000)).join("\n---\n");

  /**
   * A stand-in node on NATS that has begun to leave, as the head sees it before its
   * heartbeat says so: it heartbeats as ALIVE, and refuses every start as a node that leaves
   * does. `starts`: the replicas the head asked it to start.
   */
  const standIn = async (
    t: TestContext,
    name: string,
    resources: { cpus: number; custom: Record<string, number> },
  ): Promise<{ starts: string[]; state: () => string | undefined }> => {
    const nc2 = await connectNats(nats!.url, { name: `request-plane-test-${name}` });
    const address = subjects.node(CLUSTER, name);
    const mailbox = NatsMailbox.open<ToNode, FromNode>(nc2, address);
    const starts: string[] = [];
    mailbox.onMessage((message, from) => {
      if (message.t === "start") starts.push(message.replica);
      mailbox.send(from, { t: "node-exit", replica: message.replica, reason: NODE_LEAVING });
    });
    const nodesKv = await new Kvm(nc2).open(subjects.nodesBucket(CLUSTER));
    const record: NodeRecord = {
      name,
      resources: { gpus: 0, memory: 2 ** 30, ...resources },
      address,
      startedAt: Date.now(),
      heartbeat: Date.now(),
      pid: process.pid,
      replicas: [],
    };
    const beat = () =>
      nodesKv.put(record.name, JSON.stringify({ ...record, heartbeat: Date.now() }));
    await beat();
    const beating = setInterval(() => void beat().catch(() => undefined), 500);
    t.after(async () => {
      clearInterval(beating);
      await nodesKv.delete(record.name).catch(() => undefined);
      mailbox.close();
      await nc2.drain().catch(() => undefined);
    });
    const state = () => head!.nodes().find((n) => n.name === name)?.state;
    await until(`the head sees node ${name}`, 10_000, async () =>
      state() === "ALIVE" ? true : undefined,
    );
    return { starts, state };
  };

  test("cluster - the caller and the leaf run on different nodes", async (t) => {
    if (!natsServerOrSkip(t)) return;
    const server = servers[0]!;
    assert.equal(await server.getHandle<Caller>("caller").where(), "n1", logs());
    assert.equal(await server.getHandle<Leaf>("leaf").where(), "n2", logs());
  });

  test("cluster - a stream crosses nodes item by item: from the head, and from replica to replica", async (t) => {
    if (!natsServerOrSkip(t)) return;
    const server = servers[0]!;
    const items: number[] = [];
    const stream = server.getHandle<Leaf>("leaf").count(5, 20) as unknown as AsyncIterable<number>;
    for await (const value of stream) items.push(value);
    assert.deepEqual(items, [0, 1, 2, 3, 4]);
    // Past the first window of 64 items the head's credit must reach the stream (it went to
    // the replica's control channel, and the stream stalled at 64 for good).
    const long = server.getHandle<Leaf>("leaf").count(200) as unknown as AsyncIterable<number>;
    let read = 0;
    const stalled = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`the stream stalled after ${read} items`)), 20_000).unref(),
    );
    const all = (async () => {
      for await (const value of long) assert.equal(value, read++);
    })();
    await Promise.race([all, stalled]);
    assert.equal(read, 200);
    // Caller (n1) reads 200 items from the leaf (n2) over NATS.
    assert.deepEqual(await server.getHandle<Caller>("caller").sum(200), {
      sum: (199 * 200) / 2,
      items: 200,
    });
  });

  test("cluster - a timeout and a cancel reach the leaf's signal across nodes, and free its slot", async (t) => {
    if (!natsServerOrSkip(t)) return;
    const server = servers[0]!;
    const leaf = server.getHandle<Leaf>("leaf");
    await leaf.seen();
    // The head's timeout cancels the caller's call on n1, which cancels its call to n2.
    await assert.rejects(
      server.getHandle<Caller>("caller", { timeout: 300 }).hold(20_000),
      (error: Error & { code?: string }) => error.code === "TIMEOUT",
    );
    // An aborted signal straight to the leaf.
    const controller = new AbortController();
    const held = server.getHandle<Leaf>("leaf", { signal: controller.signal }).hold(20_000);
    setTimeout(() => controller.abort(), 300);
    await assert.rejects(held, (error: Error & { code?: string }) => error.code === "CANCELLED");
    const seen = await until("the leaf has seen both cancels", 10_000, async () => {
      const s = await leaf.seen();
      return s.aborted >= 2 ? s : undefined;
    });
    assert.equal(seen.aborted, 2, JSON.stringify(seen));
    // Its one slot is free again: a call runs at once, not after 20 s.
    assert.equal(await leaf.hold(1), "n2");
  });

  test("cluster - two routers on two machines never run more than maxOngoingRequests at once on one replica, and lose nothing", async (t) => {
    if (!natsServerOrSkip(t)) return;
    const server = servers[0]!;
    const leaf = server.getHandle<Leaf>("leaf");
    await leaf.seen();
    // The head's router and the caller's router (on n1) send at once to the leaf on n2,
    // whose maxOngoingRequests is 1: what exceeds it is answered busy and waits.
    const calls = [
      ...Array.from({ length: 6 }, () => leaf.hold(50)),
      ...Array.from({ length: 6 }, () => server.getHandle<Caller>("caller").hold(50)),
    ];
    const answers = await Promise.all(calls);
    assert.deepEqual(new Set(answers), new Set(["n2"]));
    const seen = await leaf.seen();
    assert.equal(seen.ran, 12, "each call ran exactly once");
    assert.equal(seen.mostAtOnce, 1, "never two at once on a replica capped at 1");
  });

  test("cluster - autoscaling places the replica it adds on the other node", async (t) => {
    if (!natsServerOrSkip(t)) return;
    const server = await run(scaled, { cluster: head!, port: 0, logLevel: "fatal" });
    servers.push(server);
    const busy = server.getHandle<Busy>("busy");
    const first = await busy.hold(1);
    // Four calls in flight for a target of one per replica: it scales to its maximum, 2.
    let stop = false;
    const load = Array.from({ length: 4 }, async () => {
      const nodesSeen = new Set<string>();
      while (!stop) nodesSeen.add(await busy.hold(200));
      return nodesSeen;
    });
    try {
      await until("busy runs 2 replicas", 30_000, async () => {
        const status = await server.status();
        const replicas = status.applications.scaled!.deployments.busy!.replicas;
        return replicas.filter((r) => r.state === "RUNNING").length === 2 ? true : undefined;
      });
    } finally {
      stop = true;
    }
    const seen = new Set((await Promise.all(load)).flatMap((s) => [...s]));
    // The first replica went to one node; with one `busy` each, the second is on the other.
    const other = first === "n1" ? "n2" : "n1";
    await until(`a call is answered on ${other}`, 10_000, async () => {
      if (seen.has(other)) return true;
      seen.add(await busy.hold(1));
      return seen.has(other) ? true : undefined;
    });
    assert.deepEqual([...seen].sort(), ["n1", "n2"]);
  });

  test("cluster - a replica that ends its own host as it starts fails the deploy after its attempts, as on one machine", async (t) => {
    if (!natsServerOrSkip(t)) return;
    // Before, the exit of each failed replica freed its node's resources, and that change of
    // capacity scheduled the next try before the failure was counted: run() never returned.
    const starting = run(exitsApp, { cluster: head!, port: 0, logLevel: "fatal" });
    t.after(() => closeLate(starting));
    await assert.rejects(
      within(30_000, starting, () => "run() did not fail"),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, "DEPLOY_FAILED", error.message);
        assert.match(
          error.message,
          /failure 3 of at most 3\): thread \d+ on node n\d exited with code 3/,
        );
        return true;
      },
    );
  });

  test("cluster - a node that refuses a start because it is leaving is LEAVING at once: the replica is replaced, not counted as a failed start, and nothing more is placed there", async (t) => {
    if (!natsServerOrSkip(t)) return;
    // The only node with "stand".
    const { starts, state } = await standIn(t, "stand-in", { cpus: 1, custom: { stand: 1 } });
    // Before, the refusal counted as a failed start: the head tried the same node again
    // and again, and run() did not return.
    const starting = run(standApp, { cluster: head!, port: 0, logLevel: "fatal" });
    t.after(() => closeLate(starting));
    const server = await within(
      15_000,
      starting,
      () => `run() did not return (starts sent: ${starts.join(", ")})`,
    );
    assert.equal(state(), "LEAVING");
    const stranded = (await server.status()).applications.stand!.deployments.stranded!;
    assert.equal(stranded.status, "PENDING", JSON.stringify(stranded));
    assert.match(stranded.message, /custom resource "stand"/);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    assert.equal(starts.length, 1, `starts sent to the stand-in node: ${starts.join(", ")}`);
  });

  test("cluster - a rolling update whose new replica is refused by a node that is leaving starts it on another node, and completes; one with room nowhere is rolled back saying so", async (t) => {
    if (!natsServerOrSkip(t)) return;
    const server = await run(rolledApp, { cluster: head!, port: 0, logLevel: "fatal" });
    t.after(() => server.close());
    const before = (await server.status()).applications.rolled!.deployments.rolled!.replicas;
    // The node the new replica is placed on: none of the deployment's, and the most CPUs.
    const { starts, state } = await standIn(t, "stand-in-2", { cpus: 64, custom: {} });
    // Before, the refused start failed the update, which was rolled back.
    const changes = await within(
      30_000,
      server.update(rolledApp.withOptions({ rolled: { resources: { cpus: 0.2 } } })),
      () => "update() did not return",
    );
    assert.deepEqual(changes, { rolled: ["restart"] });
    assert.equal(state(), "LEAVING");
    assert.equal(starts.length, 1, `starts sent to the stand-in node: ${starts.join(", ")}`);
    const rolled = (await server.status()).applications.rolled!.deployments.rolled!;
    assert.equal(rolled.status, "HEALTHY", JSON.stringify(rolled));
    assert.equal(rolled.replicas.length, 1);
    assert.notEqual(rolled.replicas[0]!.id, before[0]!.id);
    assert.match(await server.getHandle<Busy>("rolled").hold(1), /^n[12]$/);
    // With room nowhere, the update is rolled back saying why (before: "rolled back: ;").
    await assert.rejects(
      server.update(rolledApp.withOptions({ rolled: { resources: { custom: { nowhere: 1 } } } })),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, "DEPLOY_FAILED", error.message);
        assert.match(
          error.message,
          /Update rolled back: a new replica could not be started: .*custom resource "nowhere" 1 \(free: 0\).*; the old replicas keep serving/,
        );
        return true;
      },
    );
    assert.match(await server.getHandle<Busy>("rolled").hold(1), /^n[12]$/);
  });

  test("cluster - a NATS restart fails the calls in flight at once with REPLICA_DIED (none hangs), and calls flow again", async (t) => {
    if (!natsServerOrSkip(t)) return;
    const server = servers[0]!;
    const leaf = server.getHandle<Leaf>("leaf");
    // head → n2, and head → n1 → n2, each holding the leaf for 8 s (its maxOngoingRequests
    // is 1: the first holds the slot, the second waits for it).
    const replicas = async () =>
      Object.entries((await server.status()).applications.plane!.deployments)
        .flatMap(([name, d]) => d.replicas.map((r) => `${name}:${r.id}`))
        .sort();
    const before = await replicas();
    const direct = leaf.hold(8_000);
    const nested = server.getHandle<Caller>("caller").hold(8_000);
    void direct.catch(() => undefined);
    void nested.catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const port = nats!.port;
    nats!.kill();
    await nats!.stop();
    const killedAt = Date.now();
    for (const call of [direct, nested])
      await assert.rejects(call, (error: Error & { code?: string }) => {
        assert.equal(error.code, "REPLICA_DIED", error.message);
        assert.match(error.message, /was lost \(.*connection to NATS was lost/);
        return true;
      });
    assert.ok(Date.now() - killedAt < 6_000, "failed at once, not after the 8 s hold");
    // Away for 4 s, under half of nodeTimeout: a heartbeat lost while it was away must not
    // make a node end its replicas once it is back (one did, seconds after).
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, killedAt + 4_000 - Date.now())));
    nats = await startNatsServer({ port, storeDir: storeDir! });
    // Calls flow again once every connection is back; none of them hangs meanwhile (a call
    // that finds its replica still away fails, and is tried again here).
    // Each replica's own connection comes back on its own time: the caller's may still be
    // away when the leaf answers (a CI run once asked it too soon).
    for (const [name, node] of [
      ["leaf", "n2"],
      ["caller", "n1"],
    ] as const) {
      const attempts: string[] = [];
      await until(`the ${name} answers again`, 30_000, async () => {
        const answer = await server
          .getHandle<Leaf | Caller>(name, { timeout: 15_000 })
          .where()
          .catch((error: Error & { code?: string }) => `${error.code}: ${error.message}`);
        attempts.push(answer);
        return answer === node ? true : undefined;
      });
      assert.ok(
        attempts.every((a) => a === node || a.startsWith("REPLICA_DIED")),
        attempts.join("\n"),
      );
    }
    // A blip is not a node loss: past half of nodeTimeout the same replicas still serve.
    await new Promise((resolve) =>
      setTimeout(resolve, Math.max(0, killedAt + 10_000 - Date.now())),
    );
    assert.doesNotMatch(logs(), /cut off from the cluster/);
    assert.deepEqual(await replicas(), before);
  });
});
