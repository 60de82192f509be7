import assert from "node:assert/strict";
import { test } from "node:test";
import { z } from "zod";
import { build, deployment, InputNode, type DeploymentHandle } from "../index.js";
import { PROCESSING_BUCKETS } from "../wire/protocol.js";
import { Dashboard, graphPicture } from "./dashboard.js";
import { Metrics } from "./metrics.js";

class Leaf {
  f(x: number): number {
    return x;
  }
}
class Holder {
  constructor(private readonly leaf: DeploymentHandle<Leaf>) {}
  g(a: number, b: number): Promise<number> {
    return this.leaf.f(a + b);
  }
}
const input = new InputNode(z.object({ x: z.number() }));
const pre = deployment(function pre(x: number): number {
  return x;
});
const leaf = deployment(Leaf).bind();
const holder = deployment(Holder).bind(leaf);
const p = pre.bind(input.x);
const out = holder.g.bind(p, leaf.f.bind(p));
const app = build(out, { name: "pictured", names: { leaf, holder } });

test("dashboard - the graph picture has the deployments as nodes, data and handle calls as edges", () => {
  const picture = graphPicture(app);
  assert.deepEqual(picture.nodes.map((n) => n.id).sort(), ["holder", "ingress", "leaf", "pre"]);
  const edges = picture.edges.map((e) => `${e.from}->${e.to} ${e.kind}`).sort();
  assert.deepEqual(edges, [
    "holder->leaf handle",
    "ingress->pre data",
    "leaf->holder data",
    "pre->holder data",
    "pre->leaf data",
  ]);
});

test("dashboard - rates, error rate and quantiles come from the change of the replicas' totals over the window", () => {
  const metrics = new Metrics();
  const counts = new Array<number>(PROCESSING_BUCKETS.length + 1).fill(0);
  let ok = 0;
  let error = 0;
  metrics.addSource({
    application: "a",
    deployments: () => [
      {
        name: "d",
        status: "HEALTHY",
        targetReplicas: 1,
        autoscalerTarget: undefined,
        queued: 3,
        starts: 1,
        failures: { start_failed: 0, died: 0, health_check: 0 },
        replicas: [
          {
            id: "d#1",
            state: "RUNNING",
            ongoing: 2,
            stats: {
              ok,
              error,
              cancelled: 0,
              processing: { counts: [...counts], sum: 0 },
              batches: { counts: [], sum: 0 },
            },
          },
        ],
      },
    ],
  });
  const dashboard = new Dashboard(metrics);
  const first = dashboard.view(10_000).applications[0]!.deployments[0]!;
  assert.equal(first.requestRate, 0);
  assert.equal(first.p50, null);
  // In 2 s: 90 calls of 1–2.5 ms (bucket index 2) and 10 failed calls of 0.5–1 s (index 10).
  ok = 90;
  error = 10;
  counts[2] = 90;
  counts[10] = 10;
  const view = dashboard.view(12_000).applications[0]!.deployments[0]!;
  assert.equal(view.requestRate, 50);
  assert.equal(view.errorRate, 0.1);
  assert.ok(view.p50! > 0.001 && view.p50! <= 0.0025, `p50 ${view.p50}`);
  assert.ok(view.p99! > 0.5 && view.p99! <= 1, `p99 ${view.p99}`);
  assert.deepEqual(view.replicaStates, { RUNNING: 1 });
  assert.equal(view.queued, 3);
  assert.equal(view.ongoing, 2);
});

test("dashboard - a replica that leaves takes only its own calls out of the rates: the others' still count, and its replacement's count from zero", () => {
  const metrics = new Metrics();
  /** Replicas by id, each with the calls it has served (all ok, 1–2.5 ms). */
  let served: Record<string, number> = {};
  const stats = (n: number) => {
    const counts = new Array<number>(PROCESSING_BUCKETS.length + 1).fill(0);
    counts[2] = n;
    return {
      ok: n,
      error: 0,
      cancelled: 0,
      processing: { counts, sum: 0 },
      batches: { counts: [], sum: 0 },
    };
  };
  metrics.addSource({
    application: "a",
    deployments: () => [
      {
        name: "d",
        status: "HEALTHY",
        targetReplicas: 2,
        autoscalerTarget: undefined,
        queued: 0,
        starts: 3,
        failures: { start_failed: 0, died: 1, health_check: 0 },
        replicas: Object.entries(served).map(([id, n]) => ({
          id,
          state: "RUNNING" as const,
          ongoing: 0,
          stats: stats(n),
        })),
      },
    ],
  });
  const dashboard = new Dashboard(metrics);
  const at = (seconds: number) =>
    dashboard.view(100_000 + seconds * 1000).applications[0]!.deployments[0]!;
  // Two replicas at 100 calls/s each, with 1000 calls served before.
  for (let s = 0; s <= 5; s++) {
    served = { "d#1": 1000 + 100 * s, "d#2": 1000 + 100 * s };
    at(s);
  }
  assert.equal(at(5).requestRate, 200);
  // d#1 is replaced by d#3: d#2 and d#3 serve 100 calls/s each.
  served = { "d#2": 1600, "d#3": 100 };
  const view = at(6);
  // Over the window (1 s to 6 s): d#2 served 500, d#3 100 since it started.
  assert.equal(view.requestRate, 120);
  assert.ok(view.p50! > 0.001 && view.p50! <= 0.0025, `p50 ${view.p50}`);
});
