/**
 * A cluster on loopback: a real nats-server, a head (`tributary start --cluster`) and node
 * processes (`tributary node`), as an operator runs them. Placement by resources, a
 * deployment that fits nowhere (PENDING, then placed when a node that fits joins), a 16 MiB
 * tensor between nodes, a node killed with SIGKILL under load, and the head killed while a
 * node's front door keeps answering, then restarted and adopting every replica.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ROOT, cli } from "../cli/run-cli.js";
import { spawnCli, until, type Answer, type Proc, type Status } from "./cli-procs.js";
import {
  natsServerBinary,
  natsServerOrSkip,
  startNatsServer,
  type NatsServer,
} from "./nats-server.js";

const NODE_TIMEOUT = "2s";

const config = (fixture: string, backend = "") => `# written by test/cluster/cluster.test.ts
http:
  port: 0
applications:
  - name: cluster
    routePrefix: /cluster
    importPath: ${fixture}:app
${backend}  # Its backend needs a resource no node has, until the test starts one that does.
  - name: waiting
    routePrefix: /waiting
    importPath: ${fixture}:app
    deployments:
      # A process replica: its calls to the backend on another node cross a socket bridge.
      - name: Front
        isolation: process
        resources: { cpus: 0.1 }
      - name: backend
        numReplicas: 1
        resources: { cpus: 0.1, custom: { big: 1 } }
`;

describe("cluster - a head and nodes on NATS", { timeout: 480_000 }, () => {
  let nats: NatsServer | undefined;
  let dir: string;
  let head: Proc | undefined;
  let admin = "";
  const nodes = new Map<string, Proc>();
  let headArgs: string[] = [];

  const status = async (): Promise<Status> => {
    const answer = await cli(["status", "--json", "--address", admin]);
    assert.equal(answer.code, 0, answer.stderr);
    return JSON.parse(answer.stdout) as Status;
  };
  const startHead = async (): Promise<void> => {
    head = spawnCli(headArgs);
    admin = await until(
      "the head's admin API listens",
      30_000,
      () => /Admin API at (\S+)\./.exec(head!.output())?.[1],
    );
  };
  const nodeArgs = (name: string, resources: object): string[] => [
    "node",
    "--cluster",
    nats!.url,
    "--name",
    name,
    "--resources",
    JSON.stringify(resources),
  ];
  const startNode = async (name: string, resources: object, http = false): Promise<Proc> => {
    const node = spawnCli([...nodeArgs(name, resources), ...(http ? ["--http-port", "0"] : [])]);
    nodes.set(name, node);
    await until(`node ${name} joins`, 30_000, () =>
      node.output().includes(`Node "${name}" joined`),
    );
    return node;
  };
  const post = async (
    url: string,
    body: object,
  ): Promise<{ status: number; body: Answer & { error?: { code: string; message: string } } }> => {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    return {
      status: response.status,
      body: (await response.json()) as Answer & { error?: { code: string; message: string } },
    };
  };
  /** The backend deployment once it is HEALTHY with its 2 replicas running (waited for). */
  const backendWhole = () =>
    until("backend is whole again", 20_000, async () => {
      const d = (await status()).applications.cluster!.deployments.backend!;
      return (
        d.status === "HEALTHY" &&
        d.replicas.length === 2 &&
        d.replicas.every((r) => r.state === "RUNNING") &&
        d
      );
    });
  const logs = (): string =>
    [
      `head:\n${head?.output() ?? ""}`,
      ...[...nodes].map(([n, p]) => `${n}:\n${p.output().slice(-3000)}`),
    ].join("\n\n");

  before(async (t) => {
    if (!natsServerBinary) return;
    nats = await startNatsServer();
    dir = await mkdtemp(join(ROOT, ".tmp-cluster-"));
    await writeFile(join(dir, "serve.yaml"), config(join(ROOT, "test/fixtures/cluster-app.ts")));
    // n1 can host the ingress (front) and a backend; n2 and n3 a backend each.
    await startNode("n1", { cpus: 2, custom: { front: 1, back: 1 } }, true);
    await startNode("n2", { cpus: 2, custom: { back: 1 } });
    await startNode("n3", { cpus: 2, custom: { back: 1 } });
    headArgs = [
      "start",
      join(dir, "serve.yaml"),
      "--cluster",
      nats.url,
      "--admin-port",
      "0",
      "--node-timeout",
      NODE_TIMEOUT,
      "--state-dir",
      join(dir, "state"),
      "--allow-imports",
      join(ROOT, "test/fixtures"),
    ];
    await startHead();
    await until("the head has applied serve.yaml", 60_000, () =>
      head!.output().includes("Applied"),
    );
    void t;
  });
  after(async () => {
    await head?.stop();
    await Promise.all([...nodes.values()].map((n) => n.stop()));
    await nats?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("cluster - replicas are placed by resources, spread over the nodes that fit", async (t) => {
    if (!natsServerOrSkip(t)) return;
    const s = await until("cluster is RUNNING", 30_000, async () => {
      const s = await status();
      return s.applications.cluster?.status === "RUNNING" && s;
    });
    const { Front, backend } = s.applications.cluster!.deployments;
    assert.deepEqual(
      Front!.replicas.map((r) => r.node),
      ["n1"],
      "only n1 offers front",
    );
    const backNodes = backend!.replicas.map((r) => r.node!).sort();
    assert.equal(new Set(backNodes).size, 2, `spread over two nodes: ${backNodes.join(", ")}`);
    assert.deepEqual(
      s.nodes.map((n) => [n.name, n.state]),
      [
        ["n1", "ALIVE"],
        ["n2", "ALIVE"],
        ["n3", "ALIVE"],
      ],
    );
    const freeBack = s.nodes.reduce((sum, n) => sum + (n.free.custom.back ?? 0), 0);
    assert.equal(freeBack, 1, "two of the three back slots are taken");
    // The text view lists the nodes too.
    const text = await cli(["status", "--address", admin]);
    assert.match(text.stdout, /^n1 \(http:\/\/127\.0\.0\.1:\d+\)\s+ALIVE/m);
    assert.match(text.stdout, /backend\s+HEALTHY\s+2 RUNNING \(target 2\) on n\d, n\d/);
  });

  test("cluster - scaling and a rolling update place their replicas on the nodes that fit", async (t) => {
    if (!natsServerOrSkip(t)) return;
    const fixture = join(ROOT, "test/fixtures/cluster-app.ts");
    // Not `deploy --wait`: the file's other application waits for a node (PENDING) until the
    // next test starts one.
    const deploy = async (backend: string, replicas: number): Promise<void> => {
      await writeFile(join(dir, "serve.yaml"), config(fixture, backend));
      const answer = await cli(["deploy", join(dir, "serve.yaml"), "--address", admin]);
      assert.equal(answer.code, 0, `${answer.stdout}${answer.stderr}\n${logs()}`);
      await until(`backend runs ${replicas} replicas`, 30_000, async () => {
        const d = (await status()).applications.cluster!.deployments.backend!;
        return (
          d.status === "HEALTHY" &&
          d.replicas.length === replicas &&
          d.replicas.every((r) => r.state === "RUNNING")
        );
      });
    };
    const backend = async () => (await status()).applications.cluster!.deployments.backend!;
    // Three replicas: one on each node that offers "back".
    await deploy("    deployments:\n      - name: backend\n        numReplicas: 3\n", 3);
    assert.deepEqual((await backend()).replicas.map((r) => r.node).sort(), ["n1", "n2", "n3"]);
    // Back to two, then new resources: a rolling restart, one replica at a time, each new
    // one placed (in the one free slot) before an old one stops.
    await deploy("    deployments:\n      - name: backend\n        numReplicas: 2\n", 2);
    const before = (await backend()).replicas.map((r) => r.id);
    assert.equal(before.length, 2);
    await deploy(
      "    deployments:\n      - name: backend\n        numReplicas: 2\n        resources: { cpus: 0.4, custom: { back: 1 } }\n",
      2,
    );
    const rolled = await backend();
    assert.equal(rolled.status, "HEALTHY");
    assert.equal(rolled.replicas.length, 2);
    for (const r of rolled.replicas) assert.ok(!before.includes(r.id), `${r.id} is new`);
    assert.equal(new Set(rolled.replicas.map((r) => r.node)).size, 2, "still spread");
  });

  test("cluster - a deployment that fits nowhere is PENDING with the missing resource, and is placed when a node that fits joins", async (t) => {
    if (!natsServerOrSkip(t)) return;
    const s = await status();
    const backend = s.applications.waiting!.deployments.backend!;
    assert.equal(backend.status, "PENDING", logs());
    assert.match(backend.message, /custom resource "big" 1 \(free: 0\)/);
    assert.equal(s.applications.waiting!.status, "DEPLOYING");
    await startNode("big", { cpus: 1, custom: { big: 1 } });
    const placed = await until("waiting's backend runs on the new node", 30_000, async () => {
      const d = (await status()).applications.waiting!.deployments.backend!;
      return d.status === "HEALTHY" && d;
    });
    assert.deepEqual(
      placed.replicas.map((r) => r.node),
      ["big"],
    );
    assert.doesNotMatch(placed.message, /wait for a node/, "the placed deployment says so no more");
    const s2 = await status();
    const front = s2.applications.waiting!.deployments.Front!.replicas[0]!;
    for (let i = 0; i < 3; i++) {
      const answer = await post(`${s2.url}/waiting`, { op: "where" });
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.equal(answer.body.back.node, "big");
      assert.equal(answer.body.front.node, front.node, "the process replica on its node");
    }
  });

  test("cluster - a 16 MiB Float32Array crosses between nodes intact", async (t) => {
    if (!natsServerOrSkip(t)) return;
    const url = `${(await status()).url}/cluster`;
    const n = 4 * 1024 * 1024; // 16 MiB of float32, made in Front (on n1) and summed in a backend
    const seen = new Set<string>();
    // Calls made together spread over the backends (one made alone goes to the one that
    // answered last): some reach a backend on another node.
    for (let i = 0; i < 8 && !seen.has("remote"); i++) {
      for (const answer of await Promise.all([1, 2, 3].map(() => post(url, { op: "sum", n })))) {
        assert.equal(answer.status, 200, JSON.stringify(answer.body));
        assert.equal(answer.body.back.length, n);
        assert.equal(answer.body.back.sum, n * 0.5);
        if (answer.body.back.node !== answer.body.front.node) seen.add("remote");
      }
    }
    assert.ok(seen.has("remote"), "one of the calls went to a backend on another node");
  });

  test("cluster - a replica that exits on a node fails its call with ReplicaDiedError and the cause, the node logs it as an error, and it is replaced", async (t) => {
    if (!natsServerOrSkip(t)) return;
    const before = await status();
    const replicas = before.applications.cluster!.deployments.backend!.replicas;
    const answer = await post(`${before.url}/cluster`, { op: "exit" });
    // Front's call to the backend failed with ReplicaDiedError, which Front did not catch.
    assert.equal(answer.body.error?.code, "EXECUTION_FAILED", JSON.stringify(answer.body));
    assert.match(
      answer.body.error.message,
      /Replica backend#\d+ of deployment "backend" died while handling the request \(thread \d+ on node n\d exited with code 3\)/,
      JSON.stringify(answer.body),
    );
    const whole = await backendWhole();
    const gone = replicas.filter((r) => !whole.replicas.some((w) => w.id === r.id));
    assert.equal(gone.length, 1, JSON.stringify(whole.replicas));
    const node = nodes.get(gone[0]!.node!)!;
    await until("the node logs the replica's end", 10_000, () =>
      new RegExp(
        `"level":50,[^\\n]*"msg":"a replica ended","replica":"${gone[0]!.id}","reason":"[^"]*exited with code 3"`,
      ).test(node.output()),
    );
  });

  test("cluster - a node killed under load: only its calls in flight fail, and the deployment is whole again", async (t) => {
    if (!natsServerOrSkip(t)) return;
    const before = await status();
    const backend = before.applications.cluster!.deployments.backend!;
    const victim = backend.replicas.map((r) => r.node!).find((n) => n !== "n1")!;
    assert.ok(victim, "a backend runs on n2 or n3");
    const url = `${before.url}/cluster`;
    // Calls that hold their backend 1.5 s, and short calls all along.
    const slow = Array.from({ length: 12 }, () => post(url, { op: "sleep", ms: 1500 }));
    await new Promise((resolve) => setTimeout(resolve, 400));
    const killedAt = Date.now();
    nodes.get(victim)!.child.kill("SIGKILL");
    const results = await Promise.all(slow);
    let died = 0;
    for (const r of results) {
      if (r.status === 200) {
        assert.notEqual(
          r.body.back.node,
          victim,
          "a call that succeeded did not run on the killed node",
        );
      } else {
        died++;
        // Failed as its node was found DEAD, or as NATS said no one was subscribed for the
        // replica any more (whichever came first); either way naming the node.
        assert.match(r.body.error!.message, /died|was lost/, JSON.stringify(r.body));
        assert.match(
          r.body.error!.message,
          new RegExp(`node ${victim} is DEAD|on node ${victim} when`),
          JSON.stringify(r.body),
        );
      }
    }
    assert.ok(died > 0, "some calls were in flight on the killed node");
    assert.ok(died < results.length, "calls on the other node succeeded");
    const whole = await backendWhole();
    const took = Date.now() - killedAt;
    assert.ok(whole.replicas.every((r) => r.node !== victim));
    const s = await status();
    assert.equal(s.nodes.find((n) => n.name === victim)!.state, "DEAD");
    t.diagnostic(`${died} of ${results.length} calls failed; whole again after ${took} ms`);
    // New calls go to live replicas only.
    for (let i = 0; i < 6; i++) {
      const answer = await post(url, { op: "where" });
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.notEqual(answer.body.back.node, victim);
    }
  });

  test("cluster - a node paused past nodeTimeout is DEAD; when it resumes it ends its replicas, which were replaced", async (t) => {
    if (!natsServerOrSkip(t)) return;
    const before = (await status()).applications.cluster!.deployments.backend!;
    const paused = before.replicas.find((r) => r.node !== "n1")!;
    const node = nodes.get(paused.node!)!;
    // A node cut off (here: stopped) keeps its replicas in memory; the head gives up on it.
    node.child.kill("SIGSTOP");
    try {
      await until(
        "the paused node is DEAD",
        20_000,
        async () => (await status()).nodes.find((n) => n.name === paused.node)?.state === "DEAD",
      );
    } finally {
      node.child.kill("SIGCONT");
    }
    // Back, it finds its replica placed no more, and ends it; the head places a new one.
    const whole = await until(
      "backend is whole again, without the paused node's old replica",
      30_000,
      async () => {
        const d = (await status()).applications.cluster!.deployments.backend!;
        return (
          d.status === "HEALTHY" &&
          d.replicas.length === 2 &&
          d.replicas.every((r) => r.state === "RUNNING" && r.id !== paused.id) &&
          d
        );
      },
    );
    assert.ok(whole.replicas.every((r) => r.id !== paused.id));
    await until("the resumed node runs none of its old replicas", 20_000, async () => {
      const n = (await status()).nodes.find((x) => x.name === paused.node)!;
      return n.state === "ALIVE" && !n.replicas.includes(paused.id);
    });
    assert.match(
      node.output(),
      new RegExp(
        `"level":40,[^\n]*"msg":"a replica ended","replica":"${paused.id}","reason":"(the head placed it elsewhere|its node was cut off from the cluster)"`,
      ),
    );
    for (let i = 0; i < 6; i++) {
      const answer = await post(`${(await status()).url}/cluster`, { op: "where" });
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.notEqual(answer.body.back.replica, paused.id);
    }
  });

  test("cluster - a second head is refused while one runs, and takes none of its replicas", async (t) => {
    if (!natsServerOrSkip(t)) return;
    const replicaIds = (s: Status) =>
      Object.values(s.applications)
        .flatMap((a) => Object.values(a.deployments).flatMap((d) => d.replicas.map((r) => r.id)))
        .sort();
    const before = await status();
    const args = headArgs.map((arg) => (arg === join(dir, "state") ? join(dir, "state-2") : arg));
    const started = Date.now();
    const second = await cli(args);
    assert.equal(second.code, 1, second.stdout);
    assert.ok(Date.now() - started < 30_000, "it exits once refused");
    assert.match(second.stderr, /A head already runs cluster "[^"]+" \(pid \d+ on /);
    assert.doesNotMatch(second.stdout, /Head of cluster/);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const after = await status();
    assert.deepEqual(replicaIds(after), replicaIds(before));
    assert.doesNotMatch(
      [...nodes.values()].map((n) => n.output()).join("\n"),
      /a head adopted a replica/,
    );
    const answer = await post(`${after.url}/cluster`, { op: "where" });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
  });

  test("cluster - a node started under a live node's name is refused, and the live one keeps its replicas", async (t) => {
    if (!natsServerOrSkip(t)) return;
    // A node that is alive (an earlier test killed one, whose name is free again).
    const before = (await status()).nodes.find((n) => n.state === "ALIVE" && n.name !== "n1")!;
    const name = before.name;
    const started = Date.now();
    const twin = await cli(nodeArgs(name, { cpus: 2, custom: { back: 1 } }));
    assert.equal(twin.code, 1, twin.stdout);
    assert.match(
      twin.stderr,
      new RegExp(`A node named "${name}" is already in the cluster \\(pid \\d+`),
    );
    assert.ok(Date.now() - started < 30_000, "it exits once refused");
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const after = (await status()).nodes.find((n) => n.name === name)!;
    assert.equal(after.state, "ALIVE");
    assert.deepEqual(after.replicas, before.replicas);
    assert.doesNotMatch(nodes.get(name)!.output(), /the head placed it elsewhere/);
  });

  test("cluster - a code change with no room for the new version beside the old is refused, and the old one serves on", async (t) => {
    if (!natsServerOrSkip(t)) return;
    // One slot of "solo" in the cluster: the running version holds it.
    await startNode("solo", { cpus: 1, custom: { solo: 1 } });
    const module = join(dir, "solo.ts");
    const source = (version: string) => `import { build, deployment, InputNode } from "tributary";
export class Solo {
  version(_x: number): string { return "${version}"; }
}
const solo = deployment(Solo).bind();
export const app = build(solo.version.bind(new InputNode<number>()), { name: "solo" });
`;
    await writeFile(module, source("v1"));
    const file = join(dir, "serve.yaml");
    const before = await readFile(file, "utf8");
    await writeFile(
      file,
      `${before}  - name: solo
    routePrefix: /solo
    importPath: ${module}:app
    deployments:
      - name: Solo
        resources: { cpus: 0.1, custom: { solo: 1 } }
`,
    );
    const deployed = await cli(["deploy", file, "--address", admin, "--wait"]);
    assert.equal(deployed.code, 0, `${deployed.stdout}${deployed.stderr}\n${logs()}`);
    const url = (await status()).url!;
    const versionAt = async (base: string) => {
      const response = await fetch(`${base}/solo`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "1",
        signal: AbortSignal.timeout(5_000),
      });
      return `${response.status} ${await response.text()}`;
    };
    const version = () => versionAt(url);
    assert.equal(await version(), '200 "v1"');
    // A node's front door serves it too (from the head's membership).
    const nodeDoor = /front door at (\S+)\./.exec(nodes.get("n1")!.output())![1]!;
    await until(
      "n1's front door serves solo",
      20_000,
      async () => (await versionAt(nodeDoor).catch(() => "")) === '200 "v1"',
    );
    // New code: its replica fits nowhere while v1 runs. Before, the front door moved to it
    // (no replica), v1 drained, and calls queued until they timed out.
    await writeFile(module, source("v2"));
    const rolling = cli(["deploy", file, "--address", admin]);
    let rolledBack = false;
    void rolling.finally(() => (rolledBack = true));
    // Meanwhile (10 s) the node's front door answers from v1. Before, it followed v2 from
    // its start, with no replica: its calls queued until they timed out.
    const during: string[] = [];
    while (!rolledBack) {
      during.push(await versionAt(nodeDoor).catch((error: Error) => `${error}`));
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    assert.ok(during.length >= 5, `${during.length} calls during the roll`);
    assert.deepEqual([...new Set(during)], ['200 "v1"']);
    const rolled = await rolling;
    assert.notEqual(rolled.code, 0, rolled.stdout);
    assert.match(
      rolled.stderr,
      /The new version of "solo" has no room beside the old one, which serves on .*Solo: .*custom resource "solo" 1 \(free: 0\)/,
    );
    assert.equal(await version(), '200 "v1"');
    // And after it (before, the node's door was left with the refused version's empty
    // membership).
    for (let i = 0; i < 3; i++)
      assert.equal(await versionAt(nodeDoor).catch((error: Error) => `${error}`), '200 "v1"');
    const solo = (await status()).applications.solo!;
    assert.equal(solo.status, "RUNNING");
    assert.match(JSON.stringify(solo), /lastDeployFailed/);
    // With room for v2 (no "solo" needed), the roll goes through: the head's front door and
    // the node's both answer from v2 once it runs.
    await writeFile(
      file,
      (await readFile(file, "utf8")).replace(
        "resources: { cpus: 0.1, custom: { solo: 1 } }",
        "resources: { cpus: 0.1 }",
      ),
    );
    const moved = await cli(["deploy", file, "--address", admin, "--wait"]);
    assert.equal(moved.code, 0, `${moved.stdout}${moved.stderr}`);
    assert.equal(await version(), '200 "v2"');
    await until("n1's front door answers from v2", 10_000, async () =>
      (await versionAt(nodeDoor).catch(() => "")) === '200 "v2"' ? true : undefined,
    );
    // The file as the other tests wrote it: solo leaves.
    await writeFile(file, before);
    const removed = await cli(["deploy", file, "--address", admin, "--wait"]);
    assert.equal(removed.code, 0, `${removed.stdout}${removed.stderr}`);
  });

  test("cluster - with the head killed a node's front door keeps answering; a restarted head adopts every replica", async (t) => {
    if (!natsServerOrSkip(t)) return;
    /** Every replica's id, of every application. */
    const replicaIds = (s: Status): string[] =>
      Object.values(s.applications)
        .flatMap((a) => Object.values(a.deployments).flatMap((d) => d.replicas.map((r) => r.id)))
        .sort();
    /** The status once a (re)started head runs both applications (waited for). */
    const bothRunning = (what: string) =>
      until(what, 60_000, async () => {
        const next = await status();
        return (
          Object.values(next.applications).length === 2 &&
          Object.values(next.applications).every((a) => a.status === "RUNNING") &&
          next
        );
      });
    const ids = replicaIds(await status());
    const nodeDoor = /front door at (\S+)\./.exec(nodes.get("n1")!.output())![1]!;
    await head!.stop("SIGKILL");
    for (let i = 0; i < 10; i++) {
      const answer = await post(`${nodeDoor}/cluster`, { op: "where" });
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.equal(answer.body.front.node, "n1");
    }
    await startHead();
    const adopted = await bothRunning("the restarted head runs every application");
    assert.deepEqual(replicaIds(adopted), ids, "the same replicas, adopted, not restarted");
    assert.match(head!.output(), /Restored "cluster", "waiting" from the cluster's state/);
    const viaHead = await post(`${adopted.url}/cluster`, { op: "where" });
    assert.equal(viaHead.status, 200, JSON.stringify(viaHead.body));
    const viaNode = await post(`${nodeDoor}/cluster`, { op: "where" });
    assert.equal(viaNode.status, 200, JSON.stringify(viaNode.body));

    // Stopped by a signal (a restart, an upgrade), the head hands over: its call in flight
    // finishes, the replicas run on (before, every replica of the cluster was stopped and the
    // nodes' front doors answered 503), and the next head starts at once and adopts them.
    // With an autoscaled deployment: the autoscaler's timer kept a head that handed over
    // from exiting.
    const file = join(dir, "serve.yaml");
    const text = await readFile(file, "utf8");
    await writeFile(
      file,
      text.replace(
        "      - name: backend\n",
        "      - name: Front\n        autoscaling: { minReplicas: 1, maxReplicas: 1 }\n      - name: backend\n",
      ),
    );
    const scaled = await cli(["deploy", file, "--address", admin, "--wait"]);
    assert.equal(scaled.code, 0, `${scaled.stdout}${scaled.stderr}`);
    assert.match(scaled.stdout, /cluster: updated \(Front: scale\)/);
    const inFlight = post(`${adopted.url}/cluster`, { op: "sleep", ms: 1_500 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const stopping = head!.stop("SIGTERM");
    const slept = await inFlight;
    assert.equal(slept.status, 200, JSON.stringify(slept.body));
    await stopping;
    assert.match(head!.output(), /Handing over: /);
    assert.equal(head!.child.exitCode, 0, head!.output());
    for (let i = 0; i < 5; i++) {
      const answer = await post(`${nodeDoor}/cluster`, { op: "where" });
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
    }
    await startHead();
    const again = await bothRunning("the next head runs every application");
    assert.deepEqual(replicaIds(again), ids, "the same replicas again, adopted");
  });

  test("cluster - a node that leaves answers what its front door has in flight, though it runs past a second", async (t) => {
    if (!natsServerOrSkip(t)) return;
    // A node with a front door and room for no replica: leaving, it has nothing to drain.
    const door = await startNode("door", { cpus: 0 }, true);
    const url = /front door at (\S+)\./.exec(door.output())![1]!;
    await until("the node's front door serves the application", 30_000, async () => {
      return (await post(`${url}/cluster`, { op: "where" })).status === 200;
    });
    // Before, the front door was forced 1 s into leaving: this request lost its connection.
    const inFlight = post(`${url}/cluster`, { op: "sleep", ms: 2_500 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const leaving = door.stop("SIGTERM");
    const slept = await inFlight;
    assert.equal(slept.status, 200, JSON.stringify(slept.body));
    assert.ok(slept.body.back.node, "the backend answered");
    await leaving;
    assert.equal(door.child.exitCode, 0, door.output());
    assert.match(door.output(), /Leaving the cluster…[\s\S]*Stopped\./);
  });

  /**
   * Six calls of `ms` through `url`, and `victim` stopped with SIGTERM a second later, once
   * they run on the replicas; resolves when the head lists it LEAVING.
   */
  const leaveUnderCalls = async (url: string, ms: number, victim: string) => {
    const calls = Array.from({ length: 6 }, () => post(url, { op: "sleep", ms }));
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const leaving = nodes.get(victim)!.stop("SIGTERM");
    await until(`${victim} is LEAVING`, 5_000, async () => {
      return (await status()).nodes.find((n) => n.name === victim)?.state === "LEAVING";
    });
    return { calls, leaving };
  };
  /** Every call answered 200, and some of them on the node that left. */
  const allAnswered = async (
    calls: Promise<Awaited<ReturnType<typeof post>>>[],
    victim: string,
  ) => {
    const answers = await Promise.all(calls);
    for (const answer of answers) assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.ok(
      answers.some((a) => a.body.back.node === victim),
      `some of the calls ran on the leaving node ${victim}: ${answers.map((a) => a.body.back.node).join(", ")}`,
    );
  };

  test("cluster - a node that leaves is LEAVING while its replicas finish calls that run past nodeTimeout; it can join again at once", async (t) => {
    if (!natsServerOrSkip(t)) return;
    const before = await backendWhole();
    // n1 runs the ingress; a backend replica elsewhere is on the node that leaves.
    const victim = before.replicas.find((r) => r.node !== "n1")!.node!;
    const url = `${(await status()).url}/cluster`;
    // Room for the replacement of the leaving node's replica.
    await startNode("spare", { cpus: 2, custom: { back: 1 } });
    // Calls of 8 s, four times nodeTimeout (2 s): before, the head declared the leaving node
    // DEAD 2 s in, and the calls still running on its replica failed with REPLICA_DIED.
    const { calls, leaving } = await leaveUnderCalls(url, 8_000, victim);
    // Its replica is replaced while it drains (before, only once it had ended): two run
    // elsewhere while it is STOPPING there, its calls still running.
    await until("a replacement runs beside the draining replica", 6_000, async () => {
      const d = (await status()).applications.cluster!.deployments.backend!;
      return (
        d.replicas.filter((r) => r.state === "RUNNING" && r.node !== victim).length === 2 &&
        d.replicas.some((r) => r.node === victim && r.state === "STOPPING")
      );
    });
    await allAnswered(calls, victim);
    await leaving;
    assert.equal(nodes.get(victim)!.child.exitCode, 0, nodes.get(victim)!.output());
    // Gone (its key deleted), it can join again under its name, and the deployment is whole
    // (its replacement on it, or on a node with room that this suite's earlier tests left).
    await until(`${victim} is gone`, 5_000, async () => {
      return (await status()).nodes.find((n) => n.name === victim)?.state === "DEAD";
    });
    await startNode(victim, { cpus: 2, custom: { back: 1 } });
    const whole = await backendWhole();
    assert.equal(whole.replicas.length, 2);
  });

  test("cluster - a head restarted while a node leaves lets that node's replicas finish their calls", async (t) => {
    if (!natsServerOrSkip(t)) return;
    const before = await backendWhole();
    const victim = before.replicas.find((r) => r.node !== "n1")!.node!;
    // Through n1's front door: the head's goes with it.
    const nodeDoor = /front door at (\S+)\./.exec(nodes.get("n1")!.output())![1]!;
    const { calls, leaving } = await leaveUnderCalls(`${nodeDoor}/cluster`, 6_000, victim);
    // A head that hands over; the next one finds the leaving node's replica placed. Before,
    // it took it for an orphan no deployment adopted and ended it: its calls failed.
    await head!.stop("SIGTERM");
    await startHead();
    await allAnswered(calls, victim);
    await leaving;
    await startNode(victim, { cpus: 2, custom: { back: 1 } });
    await backendWhole();
  });
});
