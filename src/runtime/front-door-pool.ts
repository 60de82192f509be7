/**
 * @internal `http: { workers: N }`: N front-door processes sharing the HTTP (and gRPC)
 * port, each with its own routers. Node 20 has no `reusePort`, so the port is shared
 * through `node:cluster` with `SCHED_NONE`: this process opens the listening socket once
 * and hands it to every worker, and the kernel gives each new connection to one of the
 * workers that accept. This process is on no connection's path (cluster's default round
 * robin would accept every connection here and pass it on). A worker that dies is
 * replaced.
 *
 * The workers serve a list of applications (one for `run()`, those of an instance for the
 * CLI), each with its own controller: a worker imports each application's module as a
 * replica does and subscribes to that controller's membership for its deployments.
 */
import cluster, { type Worker } from "node:cluster";
import { createServer, type AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { AggregatorRegistry } from "prom-client";
import { INGRESS, type Application } from "../app/application.js";
import type { Controller, Subscriber } from "../control/controller.js";
import { TributaryError } from "../errors.js";
import { listenFailed, PORT_SETTINGS } from "../ingress/listen.js";
import { deserializeError } from "../wire/error-codec.js";
import type { FromFrontDoor, ServedApplication, ToFrontDoor } from "./front-door-worker.js";
import { LISTEN_DEFAULTS } from "./front-doors.js";
import { armWeights } from "./graph-ingress.js";
import type { RunOptions } from "./server.js";
import { countersOf, type Metrics, type MetricsJson } from "../metrics/metrics.js";

const ENTRY = new URL("./front-door-entry.mjs", import.meta.url);
/** How long a worker may take to import the modules and listen, or to load new ones. */
const START_TIMEOUT_MS = 60_000;
/** How long a worker may take to send its metrics before a scrape goes on without them. */
const METRICS_TIMEOUT_MS = 2_000;
/** How long a closing worker may take beyond the drain before it is killed. */
const EXIT_GRACE_MS = 2_000;
/** The wait before a dead worker's replacement starts, doubled after each that failed to start. */
export const REPLACE_MS = 100;
/** A worker that exits sooner than this after it listened counts as one that failed to start. */
const STABLE_MS = 1_000;
/** The longest wait between replacements that fail to start (a module that no longer loads). */
export const MAX_REPLACE_MS = 30_000;

/** The wait before the next replacement, after `failures` replacements in a row failed to start. */
export function replacementDelay(failures: number): number {
  return Math.min(REPLACE_MS * 2 ** Math.min(failures, 30), MAX_REPLACE_MS);
}

/**
 * What the pool needs of a controller: its deployments' names, and their membership. A
 * cluster node's front door passes one that asks the head over NATS.
 */
export type PoolController = Pick<
  Controller,
  "deploymentNames" | "subscribe" | "unsubscribe" | "reportQueued"
>;

interface Subscription {
  readonly controller: PoolController;
  readonly subscriber: Subscriber;
}

/** An application the workers serve, and the controller that runs its replicas. */
export interface PoolApplication {
  readonly app: Application;
  readonly controller: PoolController;
}

/**
 * Sends to a worker unless its channel has closed; a send racing the worker's exit fails
 * with EPIPE, which only means the worker is gone (its exit handler replaces it).
 */
function tell(worker: Worker, message: ToFrontDoor): void {
  if (worker.isConnected()) worker.send(message, () => undefined);
}

export interface FrontDoorPool {
  readonly url: string;
  /** The gRPC port every worker shares, when gRPC is on. */
  readonly grpcPort: number | undefined;
  /** The process ids of the workers that listen (tests kill one to see it replaced). */
  pids(): number[];
  /**
   * The applications to serve from now on (new ones, new limits or route prefixes, fewer).
   * Resolves once every worker serves them.
   */
  serve(apps: readonly PoolApplication[], starting?: boolean): Promise<void>;
  /**
   * Applies new front-door settings in every worker; resolves with the names of those that
   * changed, or `undefined` when the listeners themselves must change (then none was).
   */
  update(options: RunOptions): Promise<string[] | undefined>;
  close(force: Promise<void>): Promise<void>;
  /** Resolves once every worker told to close has no HTTP request in flight (or exited). */
  idle(): Promise<void>;
}

/**
 * The ports this process's pools listen on, by `host:port`. Node's cluster shares one
 * listening socket per address and port among all the workers of a process, whatever pool
 * forked them: a second pool on a port is served by the first one's workers too. So a
 * port is one owner's (one `run()`, one instance), whose pools share it on purpose (a new
 * pool started beside the old one takes over without closing the port); another owner
 * asking for it is refused as a taken port. Port 0 is pinned to a free port when a pool
 * starts: each owner gets its own, and its workers, replacements included, listen there
 * (after all of them died, too: the cluster closes a socket its last worker leaves).
 */
interface HeldPort {
  readonly owner: object;
  readonly kind: "HTTP" | "gRPC";
  readonly host: string;
  readonly port: number;
  /** Asked as 0: the same owner's next pool asking 0 for this kind gets it again. */
  readonly pinned: boolean;
  pools: number;
}
const heldPorts = new Map<string, HeldPort>();

/**
 * A port no one listens on now (the kernel's pick), for a pool asked to listen on 0. (Free
 * until the first worker binds it: another process could take it meanwhile, and the pool's
 * start then fails as a port in use.)
 */
async function freePort(host: string, kind: HeldPort["kind"]): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once("error", reject);
    probe.listen(0, host, resolve);
  }).catch((error: unknown) => listenFailed(error, kind, host, 0, PORT_SETTINGS[kind]));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** Claims `asked` (0: a pinned free port) on `host` for `owner`; throws when another holds it. */
async function claimPort(
  owner: object,
  kind: HeldPort["kind"],
  host: string,
  asked: number,
): Promise<HeldPort> {
  let port = asked;
  if (asked === 0) {
    const mine = [...heldPorts.values()].find(
      (h) => h.owner === owner && h.kind === kind && h.host === host && h.pinned,
    );
    if (mine) {
      port = mine.port;
    } else {
      // Not one this process's pools hold (the HTTP port, when gRPC's is pinned next).
      let tries = 0;
      do port = await freePort(host, kind);
      while (heldPorts.has(`${host}:${port}`) && ++tries < 10);
    }
  }
  const key = `${host}:${port}`;
  const held = heldPorts.get(key);
  if (held && (held.owner !== owner || held.kind !== kind)) {
    listenFailed(
      Object.assign(new Error(`listen EADDRINUSE: address already in use ${key}`), {
        code: "EADDRINUSE",
      }),
      kind,
      host,
      port,
      PORT_SETTINGS[kind],
    );
  }
  if (held) {
    held.pools++;
    return held;
  }
  const claimed: HeldPort = { owner, kind, host, port, pinned: asked === 0, pools: 1 };
  heldPorts.set(key, claimed);
  return claimed;
}

function releasePort(held: HeldPort): void {
  if (--held.pools === 0) heldPorts.delete(`${held.host}:${held.port}`);
}

/** A number per controller: a worker imports an application's code again for a new one. */
const generations = new WeakMap<PoolController, number>();
let lastGeneration = 0;

function describe(apps: readonly PoolApplication[]): ServedApplication[] {
  return apps.map(({ app, controller }) => {
    const ingress = app.deployments[INGRESS]!;
    let generation = generations.get(controller);
    if (generation === undefined) generations.set(controller, (generation = ++lastGeneration));
    return {
      moduleUrl: app.moduleUrl,
      generation,
      name: app.name,
      routePrefix: app.routePrefix,
      deployments: controller.deploymentNames,
      ingress: {
        maxOngoing: ingress.maxOngoingRequests,
        maxQueued: ingress.maxQueuedRequests,
        maxQueueWait: ingress.maxQueueWaitMs,
        weights: armWeights(app),
      },
    };
  });
}

/** The front-door settings a worker gets (no log stream: its lines go to standard output). */
function workerSettings(options: RunOptions): ToFrontDoorOptions {
  const {
    logStream: _logStream,
    transports: _transports,
    http: _http,
    metricsRegistry: _metricsRegistry,
    ...settings
  } = options;
  return settings;
}
type ToFrontDoorOptions = Extract<ToFrontDoor, { t: "init" }>["options"];

/**
 * `owner`: whose the pool's ports are (see {@link heldPorts}): an instance's pools share
 * theirs; by default the pool's own.
 */
export async function startFrontDoorPool(
  initial: readonly PoolApplication[],
  options: RunOptions,
  count: number,
  metrics: Metrics,
  owner: object = {},
): Promise<FrontDoorPool> {
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  cluster.setupPrimary({ exec: fileURLToPath(ENTRY), serialization: "advanced" });
  let apps = initial;
  let served = describe(apps);
  /** Whether the instance's first configuration is still starting (see IngressTargets). */
  let starting = false;
  // Every worker gets the same settings, with the ports this pool holds (0 pinned): the
  // cluster shares one socket per address and port among them, replacements included.
  // gRPC's listener is shared the same way.
  const host = options.host ?? LISTEN_DEFAULTS.host;
  const askedHttp = options.port ?? LISTEN_DEFAULTS.port;
  const askedGrpc = options.grpc ? (options.grpc.port ?? LISTEN_DEFAULTS.grpcPort) : undefined;
  const ports: HeldPort[] = [];
  /** Lets go of the ports (once: the list is emptied). */
  const releasePorts = (): void => ports.splice(0).forEach(releasePort);
  try {
    ports.push(await claimPort(owner, "HTTP", host, askedHttp));
    if (askedGrpc !== undefined) ports.push(await claimPort(owner, "gRPC", host, askedGrpc));
  } catch (error) {
    releasePorts();
    throw error;
  }
  const [httpHeld, grpcHeld] = ports;
  /** `next` with this pool's ports where it asks for the same ones as the pool was. */
  const pinned = (next: RunOptions): RunOptions => {
    if ((next.host ?? LISTEN_DEFAULTS.host) !== host) return next;
    const sameGrpc = next.grpc && (next.grpc.port ?? LISTEN_DEFAULTS.grpcPort) === askedGrpc;
    return {
      ...next,
      ...((next.port ?? LISTEN_DEFAULTS.port) === askedHttp && { port: httpHeld!.port }),
      ...(sameGrpc && { grpc: { port: grpcHeld!.port } }),
    };
  };
  let settings = workerSettings(pinned(options));
  const workers = new Set<Worker>();
  /** Those that listen (a replacement is in `workers` from its start). */
  const serving = new Set<Worker>();
  /** Those that were sent their start (later lists reach the others in it). */
  const started = new Set<Worker>();
  /** Workers closing that have no HTTP request in flight any more, and who waits for them. */
  const drained = new Set<Worker>();
  const drainChecks: (() => void)[] = [];
  /** Each worker's subscriptions, by the worker's id of the served application. */
  const subscriptions = new Map<Worker, Map<number, Subscription>>();
  /** Answers a worker owes, by sequence number. */
  const waiting = new Map<number, (answer: Extract<FromFrontDoor, { t: "done" }>) => void>();
  let sequence = 0;
  let closing = false;
  /** Replacements that failed to start since one last did: the next waits longer. */
  let failedStarts = 0;
  /** Replacements waiting to start (cleared by close). */
  const replacing = new Set<NodeJS.Timeout>();
  // A replacement that fails is written to the log, where the main thread's lines go.
  const log = pino({ level: options.logLevel ?? "info" }, options.logStream ?? process.stdout);
  let url = "";
  let grpcPort: number | undefined;
  // Scrapes ask every worker for its series (JSON) and sum them into this process's.
  const pendingJson = new Map<number, (json: MetricsJson) => void>();
  let nextAsk = 0;
  /**
   * Each worker's series as it last answered: a scrape it does not answer in time reads
   * these (a counter that dropped out would read as a reset).
   */
  const lastJson = new Map<Worker, MetricsJson>();
  /**
   * The counters and histograms of workers that exited, as they last answered, summed: a
   * worker's requests stay counted after it is gone (its gauges go with it).
   */
  let retired: MetricsJson = [];
  let retiring: Promise<void> = Promise.resolve();
  const retire = (worker: Worker): void => {
    const last = lastJson.get(worker);
    lastJson.delete(worker);
    const kept = last && countersOf(last);
    if (!kept || kept.length === 0) return;
    retiring = retiring.then(async () => {
      retired = await AggregatorRegistry.aggregate([retired, kept]).getMetricsAsJSON();
    });
  };
  const askJson = (worker: Worker): Promise<MetricsJson> =>
    new Promise((resolve) => {
      const id = nextAsk++;
      const timer = setTimeout(() => {
        pendingJson.delete(id);
        resolve(lastJson.get(worker) ?? []);
      }, METRICS_TIMEOUT_MS);
      pendingJson.set(id, (json) => {
        clearTimeout(timer);
        if (workers.has(worker)) lastJson.set(worker, json);
        resolve(json);
      });
      tell(worker, { t: "metrics-json", id });
    });
  const unlistRemote = metrics.addRemote(async () => {
    const asked = [...serving].filter((w) => w.isConnected());
    const answers = await Promise.all(asked.map(askJson));
    await retiring;
    // A worker that exited meanwhile is in `retired` now: not counted twice.
    return [...answers.filter((_, i) => workers.has(asked[i]!)), retired];
  });

  const ask = (worker: Worker, message: ToFrontDoor & { seq: number }) =>
    new Promise<Extract<FromFrontDoor, { t: "done" }>>((resolve, reject) => {
      // A worker that dies owes nothing: its replacement starts with the current list.
      const exited = (): void => {
        clearTimeout(timer);
        waiting.delete(message.seq);
        resolve({ t: "done", seq: message.seq });
      };
      const timer = setTimeout(() => {
        waiting.delete(message.seq);
        worker.off("exit", exited);
        reject(new Error(`a front-door worker did not answer within ${START_TIMEOUT_MS} ms`));
      }, START_TIMEOUT_MS);
      waiting.set(message.seq, (answer) => {
        clearTimeout(timer);
        // Each deploy asks every worker: the listener goes with the answer (it piled up).
        worker.off("exit", exited);
        resolve(answer);
      });
      worker.once("exit", exited);
      tell(worker, message);
    });

  /** Ends a worker's subscription `e` (all of them when `e` is undefined: the worker is gone). */
  const unsubscribe = (worker: Worker, e?: number): void => {
    const byEntry = subscriptions.get(worker);
    if (!byEntry) return;
    for (const [id, { controller, subscriber }] of byEntry) {
      if (e !== undefined && id !== e) continue;
      controller.unsubscribe(subscriber);
      byEntry.delete(id);
    }
  };

  const start = (): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const worker = cluster.fork();
      workers.add(worker);
      const timer = setTimeout(
        () => fail(new Error(`did not listen within ${START_TIMEOUT_MS} ms`)),
        START_TIMEOUT_MS,
      );
      /** When it listened (0: not yet), and why its start failed. */
      let listenedAt = 0;
      let startError: Error | undefined;
      const fail = (error: Error): void => {
        startError ??= error;
        clearTimeout(timer);
        worker.kill("SIGKILL");
        reject(
          new TributaryError("DEPLOY_FAILED", `A front-door worker failed: ${error.message}`, {
            cause: error,
          }),
        );
      };
      worker.on("message", (message: FromFrontDoor) => {
        switch (message.t) {
          case "hello":
            started.add(worker);
            tell(worker, { t: "init", apps: served, starting, options: settings });
            return;
          case "subscribe": {
            // Entry `e` of the worker gets the membership of the controller that runs
            // application `app` now (a code update brings a new one, and a new entry).
            let byEntry = subscriptions.get(worker);
            if (!byEntry) subscriptions.set(worker, (byEntry = new Map<number, Subscription>()));
            let subscription = byEntry.get(message.e);
            if (!subscription) {
              const controller = apps.find((a) => a.app.name === message.app)?.controller;
              if (!controller) return;
              const e = message.e;
              subscription = {
                controller,
                subscriber: { isolation: "process", tell: (m) => tell(worker, { ...m, e }) },
              };
              byEntry.set(e, subscription);
            }
            subscription.controller.subscribe(subscription.subscriber, message.d);
            return;
          }
          case "unsubscribe":
            unsubscribe(worker, message.e);
            return;
          case "drained":
            drained.add(worker);
            for (const check of drainChecks.splice(0)) check();
            return;
          case "load":
            // Each served application's controller hears what waits for its deployments.
            for (const [e, { controller, subscriber }] of subscriptions.get(worker) ?? [])
              controller.reportQueued(subscriber, message.queued[e] ?? {});
            return;
          case "listening":
            clearTimeout(timer);
            listenedAt = Date.now();
            serving.add(worker);
            url ||= message.url;
            grpcPort ??= message.grpcPort;
            resolve();
            return;
          case "failed":
            fail(deserializeError(message.e));
            return;
          case "done":
            waiting.get(message.seq)?.(message);
            waiting.delete(message.seq);
            return;
          case "final-metrics":
            // Its last series as it exits: what its exit folds into `retired`.
            lastJson.set(worker, message.json);
            return;
          case "metrics-json":
            pendingJson.get(message.id)?.(message.json);
            pendingJson.delete(message.id);
            return;
          case "metrics":
            void metrics
              .exposition()
              .then((answer) => tell(worker, { t: "metrics-text", id: message.id, ...answer }));
            return;
        }
      });
      worker.once("exit", (code: number | null, signal: string | null) => {
        clearTimeout(timer);
        retire(worker);
        workers.delete(worker);
        serving.delete(worker);
        started.delete(worker);
        drained.delete(worker);
        for (const check of drainChecks.splice(0)) check();
        unsubscribe(worker);
        subscriptions.delete(worker);
        const how = signal ? `signal ${signal}` : `code ${String(code)}`;
        // One that exits before it listens (its module calls process.exit, a crash) fails
        // its start, as one that reports an error does.
        if (listenedAt === 0) fail(new Error(`it exited before it listened (${how})`));
        // One that dies while serving is replaced (one that fails to start at first is
        // reported by run()). A replacement that fails to start, or dies soon after, is
        // logged and tried again, each time after twice the wait, up to MAX_REPLACE_MS.
        if (closing || !url) return;
        const early = listenedAt === 0 || Date.now() - listenedAt < STABLE_MS;
        failedStarts = early ? failedStarts + 1 : 0;
        const wait = replacementDelay(failedStarts);
        if (listenedAt === 0) {
          log.error(
            { err: startError, retryInMs: wait },
            `A front-door worker that replaces one that exited failed to start; ` +
              `${serving.size} of ${count} serve until one does`,
          );
        } else {
          log.warn({ exit: how, retryInMs: wait }, "A front-door worker exited; it is replaced");
        }
        const replacement = setTimeout(() => {
          replacing.delete(replacement);
          if (!closing) start().catch(() => undefined); // logged on its exit, above
        }, wait);
        replacing.add(replacement);
      });
    });

  try {
    await start(); // the first binds the port; the others share it
    await Promise.all(Array.from({ length: count - 1 }, start));
  } catch (error) {
    closing = true;
    unlistRemote();
    for (const worker of workers) worker.kill("SIGKILL");
    releasePorts();
    throw error;
  }

  const everyWorker = async (
    message: (seq: number) => ToFrontDoor & { seq: number },
  ): Promise<Extract<FromFrontDoor, { t: "done" }>[]> =>
    Promise.all([...started].map((worker) => ask(worker, message(++sequence))));

  return {
    url,
    grpcPort,
    pids: () => [...serving].flatMap((w) => (w.process.pid === undefined ? [] : [w.process.pid])),
    async serve(next, nextStarting = false) {
      const failures: string[] = [];
      apps = next;
      served = describe(next);
      starting = nextStarting;
      const answers = await everyWorker((seq) => ({ t: "apps", seq, apps: served, starting }));
      for (const answer of answers) if (answer.error) failures.push(answer.error.message);
      if (failures.length > 0) {
        throw new TributaryError(
          "DEPLOY_FAILED",
          `A front-door worker could not serve the applications: ${failures[0]!}`,
        );
      }
    },
    async update(next) {
      const nextSettings = workerSettings(pinned(next));
      const answers = await everyWorker((seq) => ({ t: "update", seq, options: nextSettings }));
      if (answers.some((a) => a.changed === null)) return undefined;
      settings = nextSettings;
      return [...(answers.find((a) => a.changed)?.changed ?? [])];
    },
    async close(force) {
      closing = true;
      for (const timer of replacing) clearTimeout(timer);
      replacing.clear();
      const exited = [...workers].map(
        (worker) => new Promise<void>((resolve) => worker.once("exit", () => resolve())),
      );
      for (const worker of workers) {
        // One still loading before it listens for messages would not hear "close".
        if (started.has(worker)) tell(worker, { t: "close" });
        else worker.kill("SIGKILL");
      }
      // Each exits once it has answered what it had in flight; those still at it when forced
      // close their connections.
      const allExited = Promise.all(exited);
      await Promise.race([allExited, force]);
      for (const worker of workers) {
        tell(worker, { t: "force" });
        setTimeout(() => worker.kill("SIGKILL"), EXIT_GRACE_MS).unref();
      }
      await allExited;
      releasePorts();
      // What the workers counted stays in the sum (an instance that changes its number of
      // workers starts a new pool: a rollout reads as no reset), as their series ended.
      await retiring;
      unlistRemote();
      metrics.keepCounted(retired);
    },
    idle: () =>
      new Promise<void>((resolve) => {
        const check = (): void => {
          if ([...workers].every((w) => drained.has(w) || !w.isConnected())) resolve();
          else drainChecks.push(check);
        };
        check();
      }),
  };
}
