/**
 * @internal The Prometheus metrics of one `run()` (or one instance): a prom-client
 * `Registry` of its own (never the global one, so several servers in one process keep
 * their series apart). The front doors count their requests here as they answer them; the
 * deployment and replica series are read at scrape time from each application's control
 * plane (replicas ship their counts and histograms with their load reports), and the
 * series of front-door worker processes are gathered over their IPC channel and summed in.
 */
import { AggregatorRegistry, Registry } from "prom-client";
import type { DeploymentMetrics } from "../control/controller.js";
import {
  BATCH_BUCKETS,
  PROCESSING_BUCKETS,
  type HistogramSnapshot,
  type ReplicaStats,
} from "../wire/protocol.js";
import type { ReplicaState } from "../status.js";
import type { GraphPicture } from "./dashboard.js";

/** An application whose deployments the metrics read: its control plane. */
export interface MetricsSource {
  readonly application: string;
  deployments(): readonly DeploymentMetrics[];
  /** The application's status (`RUNNING`, …), for the dashboard. */
  status?(): string;
  /** The application's graph of deployments, for the dashboard. */
  picture?(): GraphPicture;
}

/** The JSON form of a registry's metrics (prom-client's `getMetricsAsJSON()`). */
export type MetricsJson = Awaited<ReturnType<Registry["getMetricsAsJSON"]>>;

/** The counters and histograms of `json`: what a source that is gone still counts. */
export function countersOf(json: MetricsJson): MetricsJson {
  return json.filter((m) => ["counter", "histogram"].includes(String(m.type)));
}

/** What the front doors record and answer `GET /metrics` with. */
export interface FrontDoorMetrics {
  /** An HTTP request was answered with `code` after `seconds`. */
  http(application: string, code: number, seconds: number): void;
  /** A gRPC call ended with the status `code` (`OK`, `INVALID_ARGUMENT`, …) after `seconds`. */
  grpc(application: string, code: string, seconds: number): void;
  /** The text of `GET /metrics`. */
  exposition(): Promise<{ readonly contentType: string; readonly text: string }>;
}

/** Bucket bounds (seconds) of the front doors' request durations. */
const DURATION_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

const REPLICA_STATES: readonly ReplicaState[] = [
  "STARTING",
  "RUNNING",
  "STOPPING",
  "STOPPED",
  "DEAD",
];

type Labels = Record<string, string>;
type Value = { value: number; labels: Labels; metricName?: string };

/**
 * A metric whose values are computed when scraped (from the control plane's state), in the
 * shape prom-client's registry formats and its aggregator sums.
 */
class ReadAtScrape {
  readonly aggregator = "sum";
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: "counter" | "gauge" | "histogram",
    readonly values: () => Value[],
  ) {}
  get(): Promise<{
    name: string;
    help: string;
    type: string;
    aggregator: string;
    values: Value[];
  }> {
    // While an application's new code starts beside the old, both report under its name:
    // series with the same labels are summed, so that none appears twice.
    return Promise.resolve({
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values: merged(this.values()),
    });
  }
  reset(): void {}
}

/** `values` with those of the same name and labels summed into one. */
function merged(values: readonly Value[]): Value[] {
  const byKey = new Map<string, Value>();
  for (const value of values) {
    const key = `${value.metricName ?? ""}${JSON.stringify(Object.entries(value.labels).sort())}`;
    const seen = byKey.get(key);
    if (seen) seen.value += value.value;
    else byKey.set(key, { ...value });
  }
  return [...byKey.values()];
}

/** A histogram snapshot as Prometheus' cumulative `_bucket`, `_sum` and `_count` values. */
function histogramValues(
  name: string,
  bounds: readonly number[],
  snapshot: HistogramSnapshot,
  labels: Labels,
): Value[] {
  const values: Value[] = [];
  let cumulative = 0;
  bounds.forEach((bound, i) => {
    cumulative += snapshot.counts[i] ?? 0;
    values.push({
      metricName: `${name}_bucket`,
      labels: { ...labels, le: String(bound) },
      value: cumulative,
    });
  });
  cumulative += snapshot.counts[bounds.length] ?? 0;
  values.push({
    metricName: `${name}_bucket`,
    labels: { ...labels, le: "+Inf" },
    value: cumulative,
  });
  values.push({ metricName: `${name}_sum`, labels, value: snapshot.sum });
  values.push({ metricName: `${name}_count`, labels, value: cumulative });
  return values;
}

/** Requests by `application\0code`, and their durations by application. */
class RequestCounts {
  readonly requests = new Map<string, number>();
  readonly durations = new Map<string, { counts: number[]; sum: number }>();
  record(application: string, code: string, seconds: number): void {
    const key = `${application}\0${code}`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
    let histogram = this.durations.get(application);
    if (!histogram) {
      histogram = { counts: new Array<number>(DURATION_BUCKETS.length + 1).fill(0), sum: 0 };
      this.durations.set(application, histogram);
    }
    let i = 0;
    while (i < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[i]!) i++;
    histogram.counts[i]!++;
    histogram.sum += seconds;
  }
}

export interface MetricsOptions {
  /** False: nothing is recorded and `/metrics` answers an empty exposition. */
  readonly enabled?: boolean;
}

export class Metrics implements FrontDoorMetrics {
  readonly registry = new Registry();
  readonly enabled: boolean;
  readonly #sources = new Set<MetricsSource>();
  /** How each carried deployment counter reads a list of sources, by series name. */
  readonly #carried = new Map<string, (sources: Iterable<MetricsSource>) => Value[]>();
  /** What those series last read from sources since removed (see {@link addSource}). */
  readonly #retired = new Map<string, Value[]>();
  readonly #remotes = new Set<() => Promise<MetricsJson[]>>();
  /** What gone sources counted (see {@link keepCounted}), and whether a scrape reads it. */
  #counted: Promise<MetricsJson> = Promise.resolve([]);
  #keepsCounted = false;
  /**
   * The front doors' counts, kept as plain numbers (a request does a map lookup and a few
   * additions, not prom-client's hashing of its labels) and formatted at scrape time.
   */
  readonly #http = new RequestCounts();
  readonly #grpc = new RequestCounts();
  /** Requests by the arm of a `split()` they took, keyed `application\0split\0arm`. */
  readonly #arms = new Map<string, number>();

  constructor(options: MetricsOptions = {}) {
    this.enabled = options.enabled !== false;
    this.#requestSeries("http", "HTTP requests answered by the front door", this.#http);
    this.#requestSeries(
      "grpc",
      "gRPC calls (Open Inference Protocol ModelInfer) answered",
      this.#grpc,
    );
    this.#deploymentSeries();
    this.registry.registerMetric(
      new ReadAtScrape(
        "tributary_split_requests_total",
        "Requests that went through a split(), by the arm (version) each took: each arm's share.",
        "counter",
        () =>
          [...this.#arms].map(([key, value]) => {
            const [application, split, arm] = key.split("\0") as [string, string, string];
            return { labels: { application, split, arm }, value };
          }),
      ) as never,
    );
  }

  /** A request took `arm` of `split` (a weighted split's version). */
  split(application: string, split: string, arm: string): void {
    if (!this.enabled) return;
    const key = `${application}\0${split}\0${arm}`;
    this.#arms.set(key, (this.#arms.get(key) ?? 0) + 1);
  }

  http(application: string, code: number, seconds: number): void {
    if (this.enabled) this.#http.record(application, String(code), seconds);
  }

  grpc(application: string, code: string, seconds: number): void {
    if (this.enabled) this.#grpc.record(application, code, seconds);
  }

  /** `tributary_{kind}_requests_total{application,code}` and `…_request_duration_seconds`. */
  #requestSeries(kind: "http" | "grpc", what: string, counts: RequestCounts): void {
    const requests = `tributary_${kind}_requests_total`;
    const duration = `tributary_${kind}_request_duration_seconds`;
    this.registry.registerMetric(
      new ReadAtScrape(requests, `${what}, by application and status code.`, "counter", () =>
        [...counts.requests].map(([key, value]) => {
          const [application, code] = key.split("\0") as [string, string];
          return { labels: { application, code }, value };
        }),
      ) as never,
    );
    this.registry.registerMetric(
      new ReadAtScrape(
        duration,
        `Time from a request's arrival to the end of its answer, by application (${kind}).`,
        "histogram",
        () =>
          [...counts.durations].flatMap(([application, histogram]) =>
            histogramValues(duration, DURATION_BUCKETS, histogram, { application }),
          ),
      ) as never,
    );
  }

  /**
   * Reads an application's deployments at every scrape, until the returned function runs.
   * Then its deployments' counters of replica starts and failures keep the values last
   * read, and count on in the series of the same labels: an application's new code (which
   * starts beside the old, with the same deployment names) carries those totals on instead
   * of starting them at zero, which Prometheus would read as a reset. A replica's own
   * series go with it (its replacement's have a label of their own). Bounded: one series
   * per deployment and reason ever served.
   */
  addSource(source: MetricsSource): () => void {
    this.#sources.add(source);
    return () => {
      if (!this.#sources.delete(source)) return;
      for (const [name, read] of this.#carried) {
        const kept = this.#retired.get(name) ?? [];
        this.#retired.set(name, merged([...kept, ...read([source])]));
      }
    };
  }

  /** Metrics of other processes (front-door workers), summed into every answer. */
  addRemote(collect: () => Promise<MetricsJson[]>): () => void {
    this.#remotes.add(collect);
    return () => this.#remotes.delete(collect);
  }

  /**
   * Counters and histograms of sources that are gone (the workers of a closed front-door
   * pool), summed into one: they stay in every scrape, so a source that goes reads as no
   * reset.
   */
  keepCounted(json: MetricsJson): void {
    const kept = countersOf(json);
    if (kept.length === 0) return;
    this.#counted = this.#counted.then(async (counted) =>
      AggregatorRegistry.aggregate([counted, kept]).getMetricsAsJSON(),
    );
    if (!this.#keepsCounted) {
      this.#keepsCounted = true;
      this.#remotes.add(async () => [await this.#counted]);
    }
  }

  /** The deployments of every source, for the dashboard. */
  sources(): readonly MetricsSource[] {
    return [...this.#sources];
  }

  /** This registry's metrics as JSON (what a front-door worker sends the main process). */
  json(): Promise<MetricsJson> {
    return this.registry.getMetricsAsJSON();
  }

  async exposition(): Promise<{ contentType: string; text: string }> {
    const contentType = this.registry.contentType;
    if (!this.enabled) return { contentType, text: "" };
    if (this.#remotes.size === 0) return { contentType, text: await this.registry.metrics() };
    const parts: MetricsJson[] = [await this.json()];
    for (const collect of this.#remotes) parts.push(...(await collect()));
    return { contentType, text: await AggregatorRegistry.aggregate(parts).metrics() };
  }

  /** The series read from the control plane and the replicas' reports at scrape time. */
  #deploymentSeries(): void {
    type Read = (sources: Iterable<MetricsSource>) => Value[];
    const each =
      (fn: (app: string, d: DeploymentMetrics, push: (v: Value) => void) => void): Read =>
      (sources) => {
        const values: Value[] = [];
        for (const source of sources)
          for (const d of source.deployments())
            fn(source.application, d, (value) => values.push(value));
        return values;
      };
    const perReplica = (
      fn: (stats: ReplicaStats, labels: Labels, push: (v: Value) => void) => void,
    ): Read =>
      each((application, d, push) => {
        for (const r of d.replicas)
          if (r.stats) fn(r.stats, { application, deployment: d.name, replica: r.id }, push);
      });
    /** `carried`: a deployment's counter, which its application's next version counts on. */
    const add = (
      name: string,
      help: string,
      type: "counter" | "gauge" | "histogram",
      read: Read,
      carried = false,
    ): void => {
      if (carried) this.#carried.set(name, read);
      const values = carried
        ? () => [...read(this.#sources), ...(this.#retired.get(name) ?? [])]
        : () => read(this.#sources);
      this.registry.registerMetric(new ReadAtScrape(name, help, type, values) as never);
    };

    add(
      "tributary_deployment_requests_total",
      "Calls a replica finished, by outcome (ok, error: user code threw, cancelled: timed out or the caller went away).",
      "counter",
      perReplica((stats, labels, push) => {
        for (const outcome of ["ok", "error", "cancelled"] as const)
          push({ labels: { ...labels, outcome }, value: stats[outcome] });
      }),
    );
    add(
      "tributary_deployment_processing_seconds",
      "Time a replica spent on a call, from its arrival in the replica to its answer (a stream: to its end).",
      "histogram",
      perReplica((stats, labels, push) => {
        for (const v of histogramValues(
          "tributary_deployment_processing_seconds",
          PROCESSING_BUCKETS,
          stats.processing,
          labels,
        ))
          push(v);
      }),
    );
    add(
      "tributary_batch_size",
      "Items in each call of a batch() function, per replica.",
      "histogram",
      perReplica((stats, labels, push) => {
        if (stats.batches.counts.every((n) => n === 0)) return;
        for (const v of histogramValues(
          "tributary_batch_size",
          BATCH_BUCKETS,
          stats.batches,
          labels,
        ))
          push(v);
      }),
    );
    add(
      "tributary_deployment_ongoing_requests",
      "Calls running on a replica now, as it last reported.",
      "gauge",
      each((application, d, push) => {
        for (const r of d.replicas)
          push({ labels: { application, deployment: d.name, replica: r.id }, value: r.ongoing });
      }),
    );
    add(
      "tributary_deployment_queued_requests",
      "Calls waiting for a free replica slot of a deployment, in every router (the front door's and the replicas').",
      "gauge",
      each((application, d, push) =>
        push({ labels: { application, deployment: d.name }, value: d.queued }),
      ),
    );
    add(
      "tributary_deployment_replicas",
      "Replicas of a deployment, by state.",
      "gauge",
      each((application, d, push) => {
        for (const state of REPLICA_STATES)
          push({
            labels: { application, deployment: d.name, state },
            value: d.replicas.filter((r) => r.state === state).length,
          });
      }),
    );
    add(
      "tributary_deployment_target_replicas",
      "The replica count a deployment converges on (numReplicas, or the autoscaler's decision).",
      "gauge",
      each((application, d, push) =>
        push({ labels: { application, deployment: d.name }, value: d.targetReplicas }),
      ),
    );
    add(
      "tributary_autoscaler_target_replicas",
      "The autoscaler's current decision for an autoscaled deployment.",
      "gauge",
      each((application, d, push) => {
        if (d.autoscalerTarget !== undefined)
          push({ labels: { application, deployment: d.name }, value: d.autoscalerTarget });
      }),
    );
    add(
      "tributary_replica_starts_total",
      "Replicas that started (were constructed and took requests).",
      "counter",
      each((application, d, push) =>
        push({ labels: { application, deployment: d.name }, value: d.starts }),
      ),
      true,
    );
    add(
      "tributary_replica_failures_total",
      "Replicas that failed, by reason: start_failed (import or constructor), died (exited or crashed), health_check.",
      "counter",
      each((application, d, push) => {
        for (const [reason, value] of Object.entries(d.failures))
          push({ labels: { application, deployment: d.name, reason }, value });
      }),
      true,
    );
  }
}
