/**
 * @internal What the admin API's live dashboard shows: each application's graph (its
 * deployments as nodes, calls as edges) and, per deployment, its replicas and their
 * states, request rate, p50/p99 processing time, error rate and queue. Rates and quantiles
 * come from the replicas' counters and histograms, sampled every second and compared over
 * the last few seconds (as Prometheus' `rate()` and `histogram_quantile()` would).
 */
import type { Application } from "../app/application.js";
import { PROCESSING_BUCKETS } from "../wire/protocol.js";
import type { ReplicaState } from "../status.js";
import type { Metrics, MetricsSource } from "./metrics.js";

/** An application's graph at the level of deployments. */
export interface GraphPicture {
  readonly nodes: readonly { readonly id: string; readonly kind: "ingress" | "deployment" }[];
  /** `data`: one step's result feeds the other; `handle`: a constructor got a handle. */
  readonly edges: readonly {
    readonly from: string;
    readonly to: string;
    readonly kind: "data" | "handle";
  }[];
}

/** The deployments of `app` as nodes and their calls as edges, from its compiled plan. */
export function graphPicture(app: Application): GraphPicture {
  const { steps, deployments } = app.graph;
  const nodes: GraphPicture["nodes"][number][] = [{ id: "ingress", kind: "ingress" }];
  for (const d of deployments) nodes.push({ id: d.name, kind: "deployment" });
  const edges = new Map<string, GraphPicture["edges"][number]>();
  const edge = (from: string, to: string, kind: "data" | "handle"): void => {
    if (from !== to) edges.set(`${from}\0${to}\0${kind}`, { from, to, kind });
  };
  /** The deployments whose calls feed step `index` (through attributes and multi-outputs). */
  const feeders = (index: number, seen = new Set<number>()): string[] => {
    const found: string[] = [];
    for (const dep of steps[index]!.deps) {
      if (seen.has(dep)) continue;
      seen.add(dep);
      const step = steps[dep]!;
      if (step.op === "call") found.push(step.deployment);
      else found.push(...feeders(dep, seen));
    }
    return found;
  };
  for (const step of steps) {
    if (step.op !== "call") continue;
    const from = feeders(step.index);
    if (from.length === 0) edge("ingress", step.deployment, "data");
    for (const f of from) edge(f, step.deployment, "data");
  }
  for (const d of deployments)
    for (const arg of d.init) {
      if (arg.kind === "handle") edge(d.name, arg.deployment, "handle");
      else if (arg.kind === "nested")
        for (const h of arg.handles) edge(d.name, h.deployment, "handle");
    }
  return { nodes, edges: [...edges.values()] };
}

export interface DeploymentView {
  readonly name: string;
  readonly status: string;
  readonly targetReplicas: number;
  readonly replicas: readonly {
    readonly id: string;
    readonly state: ReplicaState;
    readonly ongoing: number;
  }[];
  /** Replicas by state (only the states some replica is in). */
  readonly replicaStates: Readonly<Partial<Record<ReplicaState, number>>>;
  /** Calls finished per second, over the last few seconds. */
  readonly requestRate: number;
  /** Share of those calls that failed (0 to 1), or null with none. */
  readonly errorRate: number | null;
  /** Processing time quantiles in seconds over the last few seconds, or null with no calls. */
  readonly p50: number | null;
  readonly p99: number | null;
  readonly ongoing: number;
  readonly queued: number;
}

export interface DashboardView {
  readonly at: string;
  readonly applications: readonly {
    readonly name: string;
    readonly status: string;
    readonly graph: GraphPicture | undefined;
    readonly deployments: readonly DeploymentView[];
  }[];
}

/** One replica's totals when sampled. */
interface Totals {
  readonly ok: number;
  readonly error: number;
  readonly cancelled: number;
  readonly buckets: readonly number[];
}

/** A deployment's replicas' totals at one time, by replica id. */
interface Sample {
  readonly at: number;
  readonly replicas: ReadonlyMap<string, Totals>;
}

/** How far back rates and quantiles look. */
const WINDOW_MS = 5_000;
/** How often the totals are sampled (and the page updated). */
export const DASHBOARD_INTERVAL_MS = 1_000;

/** The `q` quantile of bucket counts (per bucket, the last past the largest bound). */
function quantile(q: number, counts: readonly number[]): number | null {
  const count = counts.reduce((a, b) => a + b, 0);
  if (count === 0) return null;
  const rank = q * count;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    const inBucket = counts[i]!;
    if (seen + inBucket >= rank && inBucket > 0) {
      if (i >= PROCESSING_BUCKETS.length) return PROCESSING_BUCKETS[PROCESSING_BUCKETS.length - 1]!;
      const lower = i === 0 ? 0 : PROCESSING_BUCKETS[i - 1]!;
      const upper = PROCESSING_BUCKETS[i]!;
      return lower + ((upper - lower) * (rank - seen)) / inBucket;
    }
    seen += inBucket;
  }
  return PROCESSING_BUCKETS[PROCESSING_BUCKETS.length - 1]!;
}

export class Dashboard {
  readonly #metrics: Metrics;
  /** Samples per `application\0deployment`, oldest first, covering the window. */
  readonly #history = new Map<string, Sample[]>();

  constructor(metrics: Metrics) {
    this.#metrics = metrics;
  }

  /** Samples the totals now and returns the view. */
  view(now = Date.now()): DashboardView {
    const seen = new Set<string>();
    const applications = this.#metrics.sources().map((source: MetricsSource) => {
      const deployments = source.deployments().map((d): DeploymentView => {
        const key = `${source.application}\0${d.name}`;
        seen.add(key);
        const current: Map<string, Totals> = new Map();
        for (const r of d.replicas) {
          if (!r.stats) continue;
          current.set(r.id, {
            ok: r.stats.ok,
            error: r.stats.error,
            cancelled: r.stats.cancelled,
            buckets: [...r.stats.processing.counts],
          });
        }
        const history = this.#history.get(key) ?? [];
        history.push({ at: now, replicas: current });
        while (history.length > 2 && history[1]!.at <= now - WINDOW_MS) history.shift();
        this.#history.set(key, history);
        const first = history[0]!;
        const seconds = (now - first.at) / 1000;
        // Each replica's change over the window, summed (Prometheus's sum(rate(...))): one
        // that started within it counts from zero, and one that left counts no more (its
        // totals went with it: summing first made its departure hide everyone's calls).
        let okN = 0;
        let errorN = 0;
        let cancelledN = 0;
        const window = new Array<number>(PROCESSING_BUCKETS.length + 1).fill(0);
        const delta = (a: number, b: number | undefined): number => Math.max(0, a - (b ?? 0));
        for (const [id, totals] of current) {
          const before = first.replicas.get(id);
          okN += delta(totals.ok, before?.ok);
          errorN += delta(totals.error, before?.error);
          cancelledN += delta(totals.cancelled, before?.cancelled);
          totals.buckets.forEach((n, i) => (window[i] = window[i]! + delta(n, before?.buckets[i])));
        }
        const calls = okN + errorN + cancelledN;
        const replicaStates: Partial<Record<ReplicaState, number>> = {};
        for (const r of d.replicas) replicaStates[r.state] = (replicaStates[r.state] ?? 0) + 1;
        return {
          name: d.name,
          status: d.status,
          targetReplicas: d.targetReplicas,
          replicas: d.replicas.map((r) => ({ id: r.id, state: r.state, ongoing: r.ongoing })),
          replicaStates,
          requestRate: seconds > 0 ? calls / seconds : 0,
          errorRate: calls > 0 ? errorN / calls : null,
          p50: quantile(0.5, window),
          p99: quantile(0.99, window),
          ongoing: d.replicas.reduce((n, r) => n + r.ongoing, 0),
          queued: d.queued,
        };
      });
      return {
        name: source.application,
        status: source.status?.() ?? "",
        graph: source.picture?.(),
        deployments,
      };
    });
    for (const key of this.#history.keys()) if (!seen.has(key)) this.#history.delete(key);
    return { at: new Date(now).toISOString(), applications };
  }
}
