/**
 * @internal A front-door worker: one of the `http: { workers: N }` processes that share
 * the HTTP (and gRPC) port. It imports each served application's module as a replica
 * does, keeps a router per deployment of its own (membership from that application's
 * controller, calls straight to the replicas' Unix sockets), and serves the same routes as
 * the front door of `run()` or of an instance. The main thread is on none of its
 * requests' paths.
 */
import { findApplication, markReplicaContext } from "../app/registry.js";
import type { Application } from "../app/application.js";
import { handleProxy } from "../dag/handle.js";
import type { DeploymentHandle } from "../dag/types.js";
import { ensureTypeScriptLoader } from "../app/typescript-loader.js";
import { serializeError } from "../wire/error-codec.js";
import { OutgoingCalls } from "../data/remote-handle.js";
import { bytesFieldOf, OipModel } from "../ingress/oip.js";
import type { IngressTarget, IngressTargets } from "../ingress/target.js";
import type { MembersMessage, SerializedError } from "../wire/protocol.js";
import { startFrontDoors, type FrontDoors } from "./front-doors.js";
import { GraphIngress, type ArmWeights } from "./graph-ingress.js";
import { exportTraces, resolveTracing, type TraceExport } from "../tracing-export.js";
import type { RunOptions } from "./server.js";
import { Metrics, type FrontDoorMetrics, type MetricsJson } from "../metrics/metrics.js";

/** An application a worker serves, as the main process describes it. */
export interface ServedApplication {
  readonly moduleUrl: string;
  /**
   * Which run of the application this is (a new controller, for new code, is a new one):
   * a worker imports the module again for a new generation, so it runs the new code.
   */
  readonly generation: number;
  readonly name: string;
  readonly routePrefix: string;
  readonly deployments: readonly string[];
  /** The ingress's limits and split weights as configured (code, YAML or an update). */
  readonly ingress: {
    readonly maxOngoing: number;
    readonly maxQueued: number;
    readonly maxQueueWait?: number | undefined;
    readonly weights: ArmWeights;
  };
}

type WorkerOptions = Omit<RunOptions, "logStream" | "transports" | "http" | "metricsRegistry">;

/** What a front-door worker is told (over the cluster's IPC channel). */
export type ToFrontDoor =
  | {
      readonly t: "init";
      readonly apps: readonly ServedApplication[];
      readonly starting: boolean;
      /** The front door's settings (no log stream: lines go to standard output). */
      readonly options: WorkerOptions;
    }
  /** The applications to serve from now on; answered with `done`. */
  | {
      readonly t: "apps";
      readonly seq: number;
      readonly apps: readonly ServedApplication[];
      readonly starting: boolean;
    }
  /** New front-door settings; answered with `done` and what changed (null: new listeners). */
  | { readonly t: "update"; readonly seq: number; readonly options: WorkerOptions }
  /** A membership change of a deployment, for the served application that subscribed as `e`. */
  | (MembersMessage & { readonly e: number })
  /** Stop taking requests; close the connections on `force`. */
  | { readonly t: "close" }
  | { readonly t: "force" }
  /** Send this worker's metrics (its HTTP and gRPC series) as JSON, answering `id`. */
  | { readonly t: "metrics-json"; readonly id: number }
  /** The whole server's `/metrics` text this worker asked for with `id`. */
  | {
      readonly t: "metrics-text";
      readonly id: number;
      readonly contentType: string;
      readonly text: string;
    };

/** What a front-door worker says. */
export type FromFrontDoor =
  | { readonly t: "hello" }
  | { readonly t: "listening"; readonly url: string; readonly grpcPort: number | undefined }
  | { readonly t: "failed"; readonly e: SerializedError }
  /** Served application `e` (an id of this worker's) calls deployment `d` of application `app`. */
  | { readonly t: "subscribe"; readonly app: string; readonly e: number; readonly d: string }
  /** Served application `e` is no longer served here. */
  | { readonly t: "unsubscribe"; readonly e: number }
  | { readonly t: "metrics-json"; readonly id: number; readonly json: MetricsJson }
  /** Its series as it exits, unasked: its counts to the last request. */
  | { readonly t: "final-metrics"; readonly json: MetricsJson }
  /** Closing, this worker has no HTTP request in flight any more. */
  | { readonly t: "drained" }
  /**
   * The requests this worker's routers hold queued, by served application `e` and
   * deployment (autoscaling counts them); sent when it changes, at most every 20 ms.
   */
  | {
      readonly t: "load";
      readonly queued: Readonly<Record<number, Readonly<Record<string, number>>>>;
    }
  /** A client asked this worker for `/metrics`: the main process answers for every process. */
  | { readonly t: "metrics"; readonly id: number }
  | {
      readonly t: "done";
      readonly seq: number;
      readonly changed?: readonly string[] | null;
      readonly error?: { readonly message: string };
    };

markReplicaContext();

const send = (message: FromFrontDoor): void => {
  if (process.connected) process.send?.(message, undefined, undefined, () => undefined);
};

/** `tracing.otlpEndpoint`'s exporter in this worker, when set. */
let traceExport: TraceExport | undefined;

/** One served application in this worker: its routers and its front-door target. */
interface Served {
  readonly id: number;
  readonly key: string;
  readonly description: ServedApplication;
  readonly outgoing: OutgoingCalls;
  readonly ingress: GraphIngress;
  readonly target: IngressTarget;
}

/** Served applications by name; a new module or route prefix makes a new entry. */
const served = new Map<string, Served>();
/** Every entry that may get membership, by id (a new one from its load, before it is served). */
const byId = new Map<number, Served>();
let nextId = 0;
let list: readonly IngressTarget[] = [];
/** The instance's first configuration is still starting: not ready (see IngressTargets). */
let starting = false;
const targets: IngressTargets = { list: () => list, starting: () => starting };
let doors: FrontDoors | undefined;
let force: (() => void) | undefined;
/** This worker's front-door series; `/metrics` asks the main process, which sums every worker's. */
let metrics: Metrics | undefined;
const asked = new Map<number, (answer: { contentType: string; text: string }) => void>();
let nextAsk = 0;
/** How long a `/metrics` answer from the main process may take. */
const METRICS_TIMEOUT_MS = 5_000;

function serverMetrics(own: Metrics): FrontDoorMetrics {
  return {
    http: (application, code, seconds) => own.http(application, code, seconds),
    grpc: (application, code, seconds) => own.grpc(application, code, seconds),
    exposition: () =>
      new Promise((resolve, reject) => {
        const id = nextAsk++;
        const timer = setTimeout(() => {
          asked.delete(id);
          reject(new Error(`the main process did not answer /metrics in ${METRICS_TIMEOUT_MS} ms`));
        }, METRICS_TIMEOUT_MS);
        asked.set(id, (answer) => {
          clearTimeout(timer);
          resolve(answer);
        });
        send({ t: "metrics", id });
      }),
  };
}
let queueTimer: NodeJS.Timeout | undefined;
let reportedQueues = "{}";

/**
 * Tells the main process (soon, not per request) what this worker's routers hold queued,
 * and again every {@link LOAD_REPORT_MS} until nothing is: a queue that drains says nothing
 * itself.
 */
function reportQueued(): void {
  if (queueTimer) return;
  queueTimer = setTimeout(() => {
    queueTimer = undefined;
    const queued: Record<number, Record<string, number>> = {};
    for (const [id, entry] of byId) {
      const own = entry.outgoing.queued();
      if (Object.keys(own).length > 0) queued[id] = own;
    }
    const text = JSON.stringify(queued);
    if (text !== "{}") reportQueued();
    if (text === reportedQueues) return;
    reportedQueues = text;
    send({ t: "load", queued });
  }, LOAD_REPORT_MS);
  queueTimer.unref();
}

/** How often, at most, a worker reports its queues (as a replica reports its load). */
const LOAD_REPORT_MS = 20;

/** Messages are handled one at a time, in order (loading a module takes a while). */
let queue: Promise<unknown> = Promise.resolve();

const keyOf = (d: ServedApplication): string =>
  JSON.stringify([d.moduleUrl, d.routePrefix, d.generation]);

async function load(description: ServedApplication): Promise<Served> {
  await ensureTypeScriptLoader(description.moduleUrl);
  // A module's address without a query is where build() ran: a query makes a new instance of
  // it (new code), which registers its application under the same address. An address with
  // a query (a builder's) names its code version already.
  const fresh = description.moduleUrl.includes("?")
    ? description.moduleUrl
    : `${description.moduleUrl}?generation=${description.generation}`;
  await import(fresh);
  // build() registers its application under the address its module was imported from: in
  // JavaScript that keeps the query; under the TypeScript loader, the source map drops it.
  const found =
    findApplication(fresh, description.name) ??
    findApplication(description.moduleUrl, description.name);
  if (!found) {
    throw new Error(`importing ${description.moduleUrl} did not build "${description.name}"`);
  }
  const app: Application =
    found.routePrefix === description.routePrefix
      ? found
      : found.withRoutePrefix(description.routePrefix);
  const name = description.name;
  const id = ++nextId;
  const outgoing = new OutgoingCalls((message) => {
    if (message.t === "subscribe") send({ t: "subscribe", app: name, e: id, d: message.d });
  }, reportQueued);
  for (const deployment of description.deployments) outgoing.subscribe(deployment);
  const ingress = new GraphIngress(
    app,
    (step, args, options) => outgoing.call(step.deployment, step.method, args, options),
    // Summed into the main process's /metrics with this worker's other series.
    (application, split, arm) => metrics?.split(application, split, arm),
  );
  const { maxOngoing, maxQueued, maxQueueWait, weights } = description.ingress;
  ingress.limit(maxOngoing, maxQueued, maxQueueWait, weights);
  const schema = app.graph.input?.schema;
  const target: IngressTarget = {
    app,
    model: new OipModel(app.name, schema),
    bytesField: bytesFieldOf(schema),
    call: (input, options) => ingress.call(input, options),
    // For the application's own routes (build({ routes })), which this worker serves too.
    getHandle: (deployment) =>
      handleProxy(deployment, (method, args, options) =>
        outgoing.call(deployment, method, args, undefined, options),
      ) as DeploymentHandle<unknown>,
    ready: () => outgoing.ready(),
  };
  const entry: Served = { id, key: keyOf(description), description, outgoing, ingress, target };
  byId.set(id, entry);
  return entry;
}

/** Serves exactly `descriptions` from now on: loads new ones, updates limits, drops the rest. */
async function serve(descriptions: readonly ServedApplication[]): Promise<void> {
  const next = new Map<string, Served>();
  // Applications mounted in this change, listed only once all are: each mount keeps them.
  const mounted = new Set<IngressTarget>();
  for (const description of descriptions) {
    const existing = served.get(description.name);
    if (existing?.key === keyOf(description)) {
      const { maxOngoing, maxQueued, maxQueueWait, weights } = description.ingress;
      existing.ingress.limit(maxOngoing, maxQueued, maxQueueWait, weights);
      next.set(description.name, existing);
      continue;
    }
    const fresh = await load(description);
    // Routes are built before the application is listed (see http.ts).
    await doors?.mount(fresh.target, mounted);
    mounted.add(fresh.target);
    next.set(description.name, fresh);
  }
  list = [...next.values()].map((entry) => entry.target);
  for (const [name, entry] of served) {
    if (next.get(name) === entry) continue;
    // No longer served: its calls in flight finish on the connections they have.
    byId.delete(entry.id);
    send({ t: "unsubscribe", e: entry.id });
    entry.outgoing.unsubscribed();
  }
  served.clear();
  for (const [name, entry] of next) served.set(name, entry);
}

async function init(message: Extract<ToFrontDoor, { t: "init" }>): Promise<void> {
  starting = message.starting;
  await serve(message.apps);
  // After the applications' modules: an SDK their code registered wins over this one.
  const tracing = resolveTracing(message.options.tracing);
  if (tracing) traceExport = await exportTraces(tracing.otlpEndpoint, tracing.serviceName);
  metrics = new Metrics({ enabled: message.options.metrics !== false });
  doors = await startFrontDoors(targets, message.options, serverMetrics(metrics));
  send({ t: "listening", url: doors.url, grpcPort: doors.grpcPort });
}

const inOrder = (work: () => Promise<void>): void => {
  queue = queue.then(work, work);
};

process.on("message", (message: ToFrontDoor) => {
  switch (message.t) {
    case "init":
      inOrder(() =>
        init(message).catch((error: unknown) => send({ t: "failed", e: serializeError(error) })),
      );
      return;
    case "apps":
      starting = message.starting;
      inOrder(() =>
        serve(message.apps).then(
          () => send({ t: "done", seq: message.seq }),
          (error: unknown) =>
            send({ t: "done", seq: message.seq, error: { message: (error as Error).message } }),
        ),
      );
      return;
    case "update":
      inOrder(async () => {
        const changed = doors ? await doors.update(message.options) : [];
        send({ t: "done", seq: message.seq, changed: changed ?? null });
      });
      return;
    case "members":
      byId.get(message.e)?.outgoing.onMembers(message);
      return;
    case "close":
      drain();
      return;
    case "force":
      force?.();
      return;
    // Metrics are answered at once, not behind a module that is loading.
    case "metrics-json":
      void (metrics?.json() ?? Promise.resolve([])).then((json) =>
        send({ t: "metrics-json", id: message.id, json }),
      );
      return;
    case "metrics-text":
      asked.get(message.id)?.(message);
      asked.delete(message.id);
      return;
  }
});
/**
 * Stops taking requests, answers those in flight, and exits once the last is answered, or
 * once forced (the main process's `force`, or after `timeoutMs`). A second call changes
 * nothing: the first one's drain goes on, and `force` still ends it.
 */
let draining = false;
function drain(timeoutMs?: number): void {
  if (draining) return;
  draining = true;
  if (!doors) process.exit(0);
  const forced = new Promise<void>((resolve) => {
    force = resolve;
    if (timeoutMs !== undefined) setTimeout(resolve, timeoutMs).unref();
  });
  const closed = doors.close(forced);
  // The main process stops the replicas once every worker has answered what it had.
  void doors.idle().then(() => send({ t: "drained" }));
  // Its counts go first: a trace exporter slow to flush could outlast the main process's
  // patience (it kills a worker that has not exited soon after a forced close).
  void closed
    .then(() => sendFinalMetrics().catch(() => undefined))
    .then(() => traceExport?.close())
    .finally(() => process.exit(0));
}

/** Sends this worker's series as they end (`final-metrics`); resolves once sent. */
async function sendFinalMetrics(): Promise<void> {
  if (!metrics || !process.connected) return;
  const json = await metrics.json();
  await new Promise<void>((resolve) => {
    if (!process.connected) return resolve();
    const message: FromFrontDoor = { t: "final-metrics", json };
    process.send!(message, undefined, undefined, () => resolve());
  });
}

/** How long a worker told to stop by SIGTERM answers its requests in flight before it exits. */
const WORKER_DRAIN_MS = 30_000;

// The main process decides when this one stops (after draining it), not a terminal's Ctrl-C;
// the main process going away ends it.
process.on("SIGINT", () => undefined);
// SIGTERM (an operator, a service manager stopping the process group) drains this worker as
// the main process's close does: the requests in flight are answered, new connections go
// to the other workers, and the main process starts a replacement once this one exits.
process.on("SIGTERM", () => drain(WORKER_DRAIN_MS));
process.on("disconnect", () => process.exit(0));
// Messages sent before this listener existed would be lost: the main process waits for this.
send({ t: "hello" });
