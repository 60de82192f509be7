/**
 * @internal `http: { workers: N }`: N front-door processes sharing the HTTP port, each with
 * its own routers. Node 20 has no `reusePort`, so the port is shared through `node:cluster`
 * with `SCHED_NONE`: this process opens the listening socket once and hands it to every
 * worker, and the kernel gives each new connection to one of the workers that accept. This
 * process is on no connection's path (cluster's default round robin would accept every
 * connection here and pass it on). A worker that dies is replaced.
 */
import cluster, { type Worker } from "node:cluster";
import { fileURLToPath } from "node:url";
import { INGRESS, type Application } from "../app/application.js";
import type { Controller, Subscriber } from "../control/controller.js";
import { TributaryError } from "../errors.js";
import { deserializeError } from "../wire/error-codec.js";
import type { MembersMessage } from "../wire/protocol.js";
import type { FromFrontDoor, ToFrontDoor } from "./front-door-worker.js";
import type { RunOptions } from "./server.js";
import type { Metrics, MetricsJson } from "../metrics/metrics.js";

const ENTRY = new URL("./front-door-entry.mjs", import.meta.url);
/** How long a worker may take to import the module and listen. */
const START_TIMEOUT_MS = 60_000;
/** How long a worker may take to send its metrics before a scrape goes on without them. */
const METRICS_TIMEOUT_MS = 2_000;
/** How long a closing worker may take beyond the drain before it is killed. */
const EXIT_GRACE_MS = 2_000;

/**
 * Sends to a worker unless its channel has closed; a send racing the worker's exit fails
 * with EPIPE, which only means the worker is gone (its exit handler replaces it).
 */
function tell(worker: Worker, message: ToFrontDoor | MembersMessage): void {
  if (worker.isConnected()) worker.send(message, () => undefined);
}

export interface FrontDoorPool {
  readonly url: string;
  /** The workers' process ids (tests kill one to see it replaced). */
  pids(): number[];
  /** New ingress limits after an update. */
  configure(app: Application): void;
  close(force: Promise<void>): Promise<void>;
}

export async function startFrontDoorPool(
  app: Application,
  controller: Controller,
  options: RunOptions,
  count: number,
  metrics: Metrics,
): Promise<FrontDoorPool> {
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  cluster.setupPrimary({ exec: fileURLToPath(ENTRY), serialization: "advanced" });
  let ingress = app.deployments[INGRESS]!;
  const {
    logStream: _logStream,
    transports: _transports,
    http: _http,
    metricsRegistry: _metricsRegistry,
    ...settings
  } = options;
  const workers = new Set<Worker>();
  // Scrapes ask every worker for its series (JSON) and sum them into this process's.
  const pendingJson = new Map<number, (json: MetricsJson) => void>();
  let nextAsk = 0;
  const askJson = (worker: Worker): Promise<MetricsJson> =>
    new Promise((resolve) => {
      const id = nextAsk++;
      const timer = setTimeout(() => {
        pendingJson.delete(id);
        resolve([]);
      }, METRICS_TIMEOUT_MS);
      pendingJson.set(id, (json) => {
        clearTimeout(timer);
        resolve(json);
      });
      tell(worker, { t: "metrics-json", id });
    });
  const unlistRemote = metrics.addRemote(() =>
    Promise.all([...workers].filter((w) => w.isConnected()).map(askJson)),
  );
  let closing = false;
  let url = "";

  const init = (): ToFrontDoor => ({
    t: "init",
    moduleUrl: app.moduleUrl,
    app: app.name,
    deployments: controller.deploymentNames,
    ingress: { maxOngoing: ingress.maxOngoingRequests, maxQueued: ingress.maxQueuedRequests },
    // The same arguments in every worker: the cluster shares one socket per address and
    // port as asked, so port 0 picks a port once, for all of them.
    options: settings,
  });

  const start = (): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const worker = cluster.fork();
      workers.add(worker);
      const subscriber: Subscriber = {
        isolation: "process",
        tell: (message) => {
          tell(worker, message);
        },
      };
      const timer = setTimeout(
        () => fail(new Error(`did not listen within ${START_TIMEOUT_MS} ms`)),
        START_TIMEOUT_MS,
      );
      const fail = (error: Error): void => {
        clearTimeout(timer);
        worker.kill("SIGKILL");
        reject(
          new TributaryError("DEPLOY_FAILED", `A front-door worker failed: ${error.message}`, {
            cause: error,
          }),
        );
      };
      worker.on("message", (message: FromFrontDoor) => {
        if (message.t === "hello") tell(worker, init());
        else if (message.t === "subscribe") controller.subscribe(subscriber, message.d);
        else if (message.t === "listening") {
          clearTimeout(timer);
          url ||= message.url;
          resolve();
        } else if (message.t === "failed") fail(deserializeError(message.e));
        else if (message.t === "metrics-json") {
          pendingJson.get(message.id)?.(message.json);
          pendingJson.delete(message.id);
        } else if (message.t === "metrics") {
          void metrics
            .exposition()
            .then((answer) => tell(worker, { t: "metrics-text", id: message.id, ...answer }));
        }
      });
      worker.once("exit", () => {
        clearTimeout(timer);
        workers.delete(worker);
        controller.unsubscribe(subscriber);
        // One that dies while serving is replaced (one that failed to start is reported).
        if (!closing && url) setTimeout(() => void start().catch(() => undefined), 100);
      });
    });

  try {
    await start(); // the first picks the port; the others share it
    await Promise.all(Array.from({ length: count - 1 }, start));
  } catch (error) {
    closing = true;
    unlistRemote();
    for (const worker of workers) worker.kill("SIGKILL");
    throw error;
  }
  return {
    url,
    pids: () => [...workers].flatMap((w) => (w.process.pid === undefined ? [] : [w.process.pid])),
    configure(next) {
      ingress = next.deployments[INGRESS]!;
      for (const worker of workers) {
        tell(worker, {
          t: "ingress",
          maxOngoing: ingress.maxOngoingRequests,
          maxQueued: ingress.maxQueuedRequests,
        } satisfies ToFrontDoor);
      }
    },
    async close(force) {
      closing = true;
      unlistRemote();
      const exited = [...workers].map(
        (worker) => new Promise<void>((resolve) => worker.once("exit", () => resolve())),
      );
      for (const worker of workers) tell(worker, { t: "close" });
      await force;
      for (const worker of workers) {
        tell(worker, { t: "force" });
        setTimeout(() => worker.kill("SIGKILL"), EXIT_GRACE_MS).unref();
      }
      await Promise.all(exited);
    },
  };
}
