/**
 * @internal The control plane: for each deployment, one state machine; a reconcile loop
 * that converges the running replicas on the desired count; replacement of replicas that
 * crash or fail health checks (with backoff); constructor failures reported as
 * DEPLOY_FAILED; updates planned by {@link planUpdate} and rolled back when they fail;
 * autoscaling; a graceful shutdown. It publishes each deployment's running replicas to
 * every router (this thread's, and those in replicas that call the deployment, over
 * `MessageChannel`s it hands out) and is not on a request's path: replicas call each
 * other directly.
 */
import type { Application } from "../app/application.js";
import type { JsonValue, ResolvedDeploymentOptions } from "../options.js";
import { DeployFailedError, NotFoundError, ServerClosedError } from "../errors.js";
import { DeploymentRuntime, runningOnceStarted } from "./deployment-runtime.js";
import { hostname } from "node:os";
import { pino, type Logger } from "pino";
import { Membership, type Subscriber } from "./membership.js";
import { planUpdate, type UpdateKind } from "./update-plan.js";
import {
  NoPlacementError,
  type ReplicaTransport,
  type TransportFactory,
} from "../data/transport/transport.js";
import { Autoscaler } from "./autoscaler.js";
import { ReplicaClient, type ReplicaEvents } from "./replica-client.js";
import { Router } from "../data/router.js";
import { canonicalJson } from "../values.js";
import {
  aggregateStatus,
  type ApplicationStatus,
  type DeploymentStatus,
  type DeploymentStatusInfo,
  type ReplicaState,
} from "../status.js";
import type { ReplicaStats } from "../wire/protocol.js";

/**
 * Failed starts in a row a deployment takes before it stays DEPLOY_FAILED, as Ray Serve
 * counts them: 3 for each replica it wants, at most 20 (its MAX_PER_REPLICA_RETRY_COUNT and
 * MAX_DEPLOYMENT_CONSTRUCTOR_RETRY_COUNT). Counted per deployment, since replicas that start
 * together fail together: a count per replica read "failure 4; tried up to 3 times".
 */
const START_ATTEMPTS_PER_REPLICA = 3;
const MAX_START_FAILURES = 20;
const startAttempts = (deployment: DeploymentRuntime): number =>
  Math.min(MAX_START_FAILURES, START_ATTEMPTS_PER_REPLICA * Math.max(1, deployment.target));
/** How many starts a rolling restart makes of one new replica whose nodes were leaving. */
const LEAVING_STARTS = 3;
/**
 * How long a rolling restart watches its new replicas before the last old one drains (see
 * `#rollingRestart`).
 */
const SETTLE_MS = 500;
/** How a deployment's message ends while a replica that ended is being replaced. */
const REPLACING = "; replacing it.";
/**
 * Health checks a replica may fail in a row before it is replaced (Ray Serve's
 * REPLICA_HEALTH_CHECK_UNHEALTHY_THRESHOLD, 3).
 */
const HEALTH_CHECK_FAILURE_THRESHOLD = 3;
const START_TIMEOUT_MS = 120_000;
const MAX_BACKOFF_MS = 5_000;
/**
 * How long `reconfigure()` may take on live replicas: at least this, even with a short
 * health check timeout, since it may load a model.
 */
const MIN_RECONFIGURE_TIMEOUT_MS = 30_000;
const reconfigureTimeout = (options: ResolvedDeploymentOptions): number =>
  Math.max(options.healthCheckTimeoutMs, MIN_RECONFIGURE_TIMEOUT_MS);
/** How often an autoscaled deployment's load is sampled. */
const AUTOSCALE_TICK_MS = 100;

export type { UpdateKind };
export type { Subscriber };

/** Why a replica failed, as `tributary_replica_failures_total{reason}` counts it. */
export type FailureReason = "start_failed" | "died" | "health_check";

/** One deployment as the metrics read it (at scrape time, from the control plane's state). */
export interface DeploymentMetrics {
  readonly name: string;
  readonly status: DeploymentStatus;
  readonly targetReplicas: number;
  /** The autoscaler's decision, when the deployment is autoscaled. */
  readonly autoscalerTarget: number | undefined;
  /** Requests waiting for a slot, in this thread's router and in replicas' routers. */
  readonly queued: number;
  readonly replicas: readonly {
    readonly id: string;
    readonly state: ReplicaState;
    readonly ongoing: number;
    readonly stats: ReplicaStats | undefined;
  }[];
  /** Replicas that came up (constructed and running), since the server started. */
  readonly starts: number;
  readonly failures: Readonly<Record<FailureReason, number>>;
}

/** What every replica of the controller is started with, besides its deployment. */
export interface ControllerSettings {
  /** Where the lines the replicas' code logs go (one JSON object each, no newline). */
  readonly log: (line: string) => void;
  /** `tracing`: each replica exports its spans there. */
  readonly tracing?: { readonly otlpEndpoint: string; readonly serviceName: string } | undefined;
  /** False: replicas keep no request statistics (`run(app, { metrics: false })`). */
  readonly metrics?: boolean | undefined;
  /**
   * The least level of the control plane's own lines in `log` (a replica that died, one
   * that failed to start), as pino names them; "info" by default.
   */
  readonly logLevel?: string | undefined;
  /** The replica number each deployment's replicas are numbered on from (a code roll's). */
  readonly replicaNumbers?: ReadonlyMap<string, number> | undefined;
}

/** The default log sink: standard output. */
export const writeLine = (line: string): void => void process.stdout.write(`${line}\n`);

/** What a deployment's message says while replicas wait for a node to fit them. */
const WAIT_FOR_NODE = " wait for a node: ";

export class Controller {
  #app: Application;
  readonly #transports: TransportFactory;
  readonly #deployments = new Map<string, DeploymentRuntime>();
  readonly #byReplica = new Map<ReplicaClient, DeploymentRuntime>();
  readonly #changed = new Set<() => void>();
  /** Replica starts and failures per deployment, for the metrics. */
  readonly #counts = new Map<string, { starts: number; failures: Record<FailureReason, number> }>();
  readonly #metrics: boolean;
  /** What front doors in other processes hold queued, by subscriber (see reportQueued). */
  readonly #subscriberQueues = new Map<Subscriber, Readonly<Record<string, number>>>();
  #closing = false;
  /** Replicas on a cluster node that leaves, replaced already (see replicaLeaving). */
  readonly #leaving = new WeakSet<ReplicaClient>();
  readonly #membership = new Membership(
    this.#deployments,
    (name) => this.#notFound(name),
    (subscriber) => !(subscriber instanceof ReplicaClient) || this.#byReplica.has(subscriber),
  );

  readonly #events: ReplicaEvents = {
    subscribe: (replica, name) => this.#membership.subscribe(replica, name),
    exited: (replica, reason) => this.#onReplicaExit(replica, `died (${reason})`, "died"),
    // Every router of the deployment learns which replica has which model (a rare change).
    modelsChanged: (replica) => {
      const d = this.#deployments.get(replica.deployment);
      if (d) this.#membership.publish(d);
    },
    log: (_replica, lines) => {
      for (const line of lines) this.#settings.log(line);
    },
  };

  readonly #settings: ControllerSettings;
  /** The control plane's own lines (see {@link ControllerSettings.logLevel}). */
  readonly #logger: Logger;

  constructor(
    app: Application,
    transports: TransportFactory,
    settings: ControllerSettings = { log: writeLine },
  ) {
    this.#app = app;
    this.#transports = transports;
    this.#settings = settings;
    this.#logger = pino(
      { level: settings.logLevel ?? "info", base: { pid: process.pid, hostname: hostname() } },
      { write: (line: string) => settings.log(line.endsWith("\n") ? line.slice(0, -1) : line) },
    );
    this.#metrics = settings.metrics !== false;
    for (const spec of app.graph.deployments) {
      this.#counts.set(spec.name, {
        starts: 0,
        failures: { start_failed: 0, died: 0, health_check: 0 },
      });
      const options = app.deployments[spec.name]!;
      const label = spec.deployment.sourceName || spec.name;
      const runtime = new DeploymentRuntime(
        spec.name,
        spec,
        options,
        new Router(spec.name, label, options),
      );
      runtime.replicaNumber = settings.replicaNumbers?.get(spec.name) ?? 0;
      this.#deployments.set(spec.name, runtime);
    }
  }

  /** The last replica number of each deployment (a code roll's new version numbers on). */
  replicaNumbers(): Map<string, number> {
    return new Map([...this.#deployments].map(([name, d]) => [name, d.replicaNumber]));
  }

  /**
   * `subscriber` (a front-door worker) calls deployment `name`: it gets the running replicas
   * now and at every change, until {@link unsubscribe}.
   */
  subscribe(subscriber: Subscriber, name: string): void {
    this.#membership.subscribe(subscriber, name);
  }

  unsubscribe(subscriber: Subscriber): void {
    this.#membership.unsubscribe(subscriber);
    this.#subscriberQueues.delete(subscriber);
  }

  /**
   * The requests `subscriber`'s routers hold queued, by deployment, as it last reported
   * (replaced whole each time): autoscaling counts them, as it counts replicas' queues, so a
   * request waiting in a front-door worker scales a deployment up (from zero too).
   */
  reportQueued(subscriber: Subscriber, queued: Readonly<Record<string, number>>): void {
    if (Object.keys(queued).length === 0) this.#subscriberQueues.delete(subscriber);
    else this.#subscriberQueues.set(subscriber, queued);
  }

  /** The names of the deployments, for a subscriber that calls them all. */
  get deploymentNames(): string[] {
    return [...this.#deployments.keys()];
  }

  /** The router of a deployment. */
  router(name: string): Router {
    const deployment = this.#deployments.get(name);
    if (!deployment) throw this.#notFound(name);
    return deployment.router;
  }

  #notFound(name: string): NotFoundError {
    return new NotFoundError(
      `Application "${this.#app.name}" has no deployment "${name}"; it has ${[
        ...this.#deployments.keys(),
      ]
        .map((n) => `"${n}"`)
        .join(", ")}.`,
    );
  }

  /** Starts every deployment; resolves when all are HEALTHY, rejects if one fails to deploy. */
  async start(): Promise<void> {
    for (const deployment of this.#deployments.values()) {
      this.#reconcile(deployment);
      this.#startHealthChecks(deployment);
      this.#startAutoscaling(deployment);
    }
    await new Promise<void>((resolve, reject) => {
      const check = (): void => {
        // A replica that failed to start is tried again (startAttempts() in all, with
        // backoff): the start fails once a deployment has no attempt left or under way
        // (though some of its replicas may run: the deployment is short of its target).
        const failed = [...this.#deployments.values()].find(
          (d) =>
            d.status === "DEPLOY_FAILED" &&
            d.retryTimer === undefined &&
            !d.replicas.some((r) => r.state === "STARTING"),
        );
        if (failed) {
          this.#changed.delete(check);
          reject(new DeployFailedError(failed.name, failed.message));
        } else if (
          // PENDING waits for capacity (a node that fits), not for this start.
          [...this.#deployments.values()].every(
            (d) => d.status === "HEALTHY" || d.status === "PENDING",
          )
        ) {
          this.#changed.delete(check);
          resolve();
        }
      };
      this.#changed.add(check);
      check();
    });
  }

  /** Runs `listener` on every change of a deployment's status; returns what stops it. */
  onChange(listener: () => void): () => void {
    this.#changed.add(listener);
    return () => this.#changed.delete(listener);
  }

  /** Whether every deployment has at least one running replica. */
  ready(): boolean {
    if (this.#closing) return false;
    for (const d of this.#deployments.values())
      if (d.running.length === 0 && d.target > 0) return false;
    return true;
  }

  status(): {
    status: ApplicationStatus;
    message: string;
    deployments: Record<string, DeploymentStatusInfo>;
  } {
    const deployments: Record<string, DeploymentStatusInfo> = {};
    for (const d of this.#deployments.values()) {
      deployments[d.name] = {
        name: d.name,
        status: d.status,
        message: d.message,
        targetReplicas: d.target,
        ongoing: d.ongoing,
        queued: this.#queued(d),
        replicas: d.replicas.map((r) => ({
          id: r.id,
          state: r.state,
          isolation: r.transport.isolation,
          host: r.transport.description,
          ongoing: r.load.ongoing,
          message: r.message,
          ...(r.transport.remote && { node: r.transport.remote.node }),
        })),
      };
    }
    return { ...aggregateStatus(Object.values(deployments), this.#closing), deployments };
  }

  /** Every deployment as the metrics read it. */
  metrics(): DeploymentMetrics[] {
    return [...this.#deployments.values()].map((d) => {
      const counts = this.#counts.get(d.name)!;
      return {
        name: d.name,
        status: d.status,
        targetReplicas: d.target,
        autoscalerTarget: d.autoscaler ? d.target : undefined,
        queued: this.#queued(d),
        replicas: d.replicas.map((r) => ({
          id: r.id,
          state: r.state,
          ongoing: r.load.ongoing,
          stats: r.stats,
        })),
        starts: counts.starts,
        failures: { ...counts.failures },
      };
    });
  }

  /**
   * Stops controlling: no more health checks, autoscaling, retries or replacements; the
   * replicas run on as they are. A cluster's head that hands over to the next one (which
   * adopts them) does only this; `close()` does it first, then drains and stops them.
   */
  detach(): void {
    this.#closing = true;
    for (const d of this.#deployments.values()) {
      clearTimeout(d.retryTimer);
      clearInterval(d.healthTimer);
      clearInterval(d.scaleTimer);
    }
  }

  /**
   * Stops every replica: waits (bounded by each deployment's `gracefulShutdownTimeout`) for
   * running and queued requests to finish, then calls `close()` on the instances, then
   * terminates what is left.
   */
  async close(
    deadline = Date.now() +
      Math.max(
        ...[...this.#deployments.values()].map((d) => d.options.gracefulShutdownTimeoutMs),
        0,
      ),
  ): Promise<void> {
    if (this.#closing) return;
    this.detach();
    while (Date.now() < deadline && [...this.#deployments.values()].some((d) => this.#busy(d))) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    // From here on nothing is routed: queued requests and calls from close() hooks are
    // answered at once instead of waiting for replicas that are stopping.
    this.#membership.stopRouting();
    for (const d of this.#deployments.values()) {
      d.unavailable = new ServerClosedError(`Deployment "${d.name}"`);
      this.#membership.publish(d);
    }
    await Promise.all(
      [...this.#deployments.values()].flatMap((d) =>
        d.replicas.map(async (replica) => {
          if (await runningOnceStarted(replica, deadline)) {
            replica.state = "STOPPING";
            const left = Math.max(deadline - Date.now(), 1000);
            await replica
              .control({ t: "stop", drainMs: deadline - Date.now() }, left)
              .catch(() => undefined);
          }
          await replica.terminate();
          // Front-door workers still answer what ran on it: they hear why it ended.
          this.#publishGone(d, replica);
        }),
      ),
    );
  }

  /**
   * Requests waiting for a slot of `d`: in this thread's router, in replicas' routers and in
   * the routers of front doors in other processes.
   */
  #queued(d: DeploymentRuntime): number {
    let total = d.router.queued;
    for (const other of this.#deployments.values())
      for (const r of other.replicas) total += r.load.queued[d.name] ?? 0;
    for (const queued of this.#subscriberQueues.values()) total += queued[d.name] ?? 0;
    return total;
  }

  /** Whether anything still runs or waits for `d` (the drain before a shutdown). */
  #busy(d: DeploymentRuntime): boolean {
    return d.router.ongoing + d.ongoing + this.#queued(d) > 0;
  }

  #notify(): void {
    for (const listener of [...this.#changed]) listener();
  }

  #setStatus(deployment: DeploymentRuntime): void {
    deployment.state.derive({
      running: deployment.running.length,
      live: deployment.live.length,
      target: deployment.target,
      crashes: deployment.crashes,
      givenUp:
        deployment.startFailures >= startAttempts(deployment) &&
        deployment.running.length < deployment.target,
      rolling: deployment.rolling,
      unplaced: deployment.unplaced,
    });
    // What was under way is done.
    const whole =
      deployment.status === "HEALTHY" &&
      deployment.running.length === deployment.target &&
      deployment.replicas.length === deployment.target; // none starting or stopping
    if (deployment.progress !== undefined && whole) {
      if (deployment.message === deployment.progress) deployment.message = "";
      deployment.progress = undefined;
    }
    // Why a replica ended stays (what an operator looks for), but not as under way.
    if (whole && deployment.message.endsWith(REPLACING))
      deployment.message = `${deployment.message.slice(0, -REPLACING.length)}; replaced.`;
    this.#notify();
  }

  /**
   * Capacity changed (a node joined, or one left): deployments short of replicas try to
   * place them again.
   */
  replan(): void {
    for (const d of this.#deployments.values()) {
      if (d.live.length >= d.target) continue;
      // One whose starts keep failing tries again at its backoff's pace, not at every change
      // of capacity: its own failed replica leaving a node is one, and an instant failure
      // (a node with other code) looped about a hundred times a second.
      if (d.startFailures === 0) this.#reconcile(d);
      else if (!d.retryTimer) this.#retryLater(d, 500 * 2 ** (d.startFailures - 1));
    }
  }

  /** Starts or stops replicas until the live count is the target. */
  #reconcile(deployment: DeploymentRuntime): void {
    if (this.#closing || deployment.retryTimer) return;
    deployment.unplaced = 0;
    while (deployment.live.length < deployment.target) {
      const transport = this.#place(deployment);
      if (!transport) break;
      void this.#startReplica(deployment, transport);
    }
    // Every replica found a node: what said some wait for one is no longer true.
    if (deployment.unplaced === 0 && deployment.message.includes(WAIT_FOR_NODE))
      deployment.message = "";
    const extra = deployment.rolling ? 0 : deployment.live.length - deployment.target;
    if (extra > 0) {
      // Starting replicas go first, then the least busy.
      const victims = [...deployment.live]
        .sort(
          (a, b) =>
            (a.state === "STARTING" ? -1 : 0) - (b.state === "STARTING" ? -1 : 0) ||
            a.load.ongoing - b.load.ongoing,
        )
        .slice(0, extra);
      for (const replica of victims) void this.#stopReplica(deployment, replica);
    }
    this.#setStatus(deployment);
  }

  /**
   * A transport to a new replica of `deployment` (or, in a cluster after a restart, to a
   * running one adopted), or undefined when it fits nowhere: the deployment is then
   * PENDING until {@link replan}.
   */
  #place(deployment: DeploymentRuntime): ReplicaTransport | undefined {
    const id = `${deployment.name}#${deployment.replicaNumber + 1}`;
    const memoryLimit = deployment.options.resources.memory || undefined;
    try {
      const transport = this.#transports(
        deployment.options.isolation,
        id,
        { memoryBytes: memoryLimit },
        {
          app: this.#app.name,
          deployment: deployment.name,
          resources: deployment.options.resources,
          key: this.#replicaKey(deployment),
        },
      );
      deployment.replicaNumber++;
      return transport;
    } catch (error) {
      if (!(error instanceof NoPlacementError)) throw error;
      deployment.unplaced = deployment.target - deployment.live.length;
      deployment.message = `${deployment.unplaced} replica(s)${WAIT_FOR_NODE}${error.message}`;
      return undefined;
    }
  }

  /** What an adopted replica must have been started with to count as one of `d`'s. */
  #replicaKey(d: DeploymentRuntime): string {
    return canonicalJson([
      this.#app.moduleUrl,
      d.spec.init,
      d.options.isolation,
      d.options.resources,
      d.options.maxOngoingRequests,
    ]);
  }

  /** Starts one replica; resolves true once it runs, false if it failed to start. */
  #startReplica(
    deployment: DeploymentRuntime,
    placed: ReplicaTransport | undefined = this.#place(deployment),
  ): Promise<boolean> {
    if (!placed) {
      this.#setStatus(deployment);
      return Promise.resolve(false);
    }
    const transport = placed;
    const adopted = transport.adopted;
    let id = `${deployment.name}#${deployment.replicaNumber}`;
    if (adopted) {
      id = adopted.replica;
      const number = Number(/#(\d+)$/.exec(id)?.[1] ?? 0);
      deployment.replicaNumber = Math.max(deployment.replicaNumber, number);
    }
    const memoryLimit = deployment.options.resources.memory || undefined;
    const replica = new ReplicaClient(id, deployment.name, transport, this.#events);
    this.#startedWith.set(replica, this.#startKey(deployment.options));
    if (deployment.userConfig === undefined) this.#configless.add(replica);
    deployment.replicas.push(replica);
    this.#byReplica.set(replica, deployment);
    const initConfig = deployment.userConfig;
    if (adopted) {
      // Already constructed and serving: it runs from now on, as it did under the last head.
      replica.state = "RUNNING";
      if (adopted.models) {
        replica.connection.models = new Set(adopted.models);
        replica.connection.multiplexed = true;
      }
      deployment.unavailable = undefined;
      this.#membership.publish(deployment);
      this.#setStatus(deployment);
      return Promise.resolve(true);
    }
    return replica
      .start(
        {
          t: "init",
          moduleUrl: this.#app.moduleUrl,
          app: this.#app.name,
          deployment: deployment.name,
          replica: id,
          args: deployment.spec.init,
          userConfig: initConfig,
          memoryLimit,
          maxOngoing: deployment.options.maxOngoingRequests,
          metrics: this.#metrics,
          tracing: this.#settings.tracing,
          code: this.#app.code,
        },
        START_TIMEOUT_MS,
      )
      .then(
        () => {
          if (this.#closing || replica.state !== "STARTING") return false;
          replica.state = "RUNNING";
          this.#counts.get(deployment.name)!.starts++;
          deployment.startFailures = 0;
          // A userConfig applied while this replica was starting reaches it now (one removed
          // meanwhile: the update's rolling restart replaces it).
          if (
            deployment.userConfig !== undefined &&
            JSON.stringify(deployment.userConfig) !== JSON.stringify(initConfig)
          ) {
            this.#reconfigureReplica(
              replica,
              deployment.userConfig,
              reconfigureTimeout(deployment.options),
            ).catch(
              (error: Error) =>
                (deployment.message = `Replica ${id}: reconfigure() failed: ${error.message}`),
            );
          }
          if (deployment.status === "DEPLOY_FAILED") deployment.state.set("UPDATING");
          deployment.unavailable = undefined;
          this.#membership.publish(deployment);
          this.#setStatus(deployment);
          return true;
        },
        (error: Error) => {
          void replica.kill(`failed to start: ${error.message}`);
          this.#forget(deployment, replica);
          if (this.#closing) return false;
          // Its node left while it started: replaced already, not a failure of its code.
          if (this.#leaving.has(replica)) {
            this.#setStatus(deployment);
            return false;
          }
          this.#counts.get(deployment.name)!.failures.start_failed++;
          deployment.startFailures++;
          deployment.state.set("DEPLOY_FAILED");
          deployment.message = `Replica ${id} failed to start (failure ${deployment.startFailures} of at most ${startAttempts(deployment)}): ${error.message}`;
          this.#logLine("error", deployment, id, deployment.message);
          if (deployment.running.length === 0) {
            deployment.unavailable = new DeployFailedError(deployment.name, error.message, {
              cause: error,
            });
            this.#membership.publish(deployment);
          }
          if (deployment.startFailures < startAttempts(deployment) && !deployment.rolling)
            this.#retryLater(deployment, 500 * 2 ** (deployment.startFailures - 1));
          this.#setStatus(deployment);
          return false;
        },
      );
  }

  /**
   * Applies another configuration of the same application, deployment by deployment, doing
   * only what each change needs: router limits in place, `userConfig` through
   * `reconfigure()` on live replicas, replica counts by scaling, and isolation or resources
   * by a rolling restart (a new replica runs before an old one drains). A change that fails
   * is rolled back and reported; the deployment keeps serving throughout.
   */
  async apply(next: Application): Promise<Record<string, UpdateKind[]>> {
    const plan: Record<string, UpdateKind[]> = {};
    const done: [DeploymentRuntime, ResolvedDeploymentOptions][] = [];
    for (const spec of next.graph.deployments) {
      const deployment = this.#deployments.get(spec.name);
      if (!deployment)
        throw new NotFoundError(
          `Application "${this.#app.name}" has no deployment "${spec.name}"; a new graph needs a code update.`,
        );
      const old = deployment.options;
      try {
        plan[spec.name] = await this.#applyDeployment(deployment, next.deployments[spec.name]!);
      } catch (error) {
        // The failed deployment undid its own change; the ones before it go back too, so
        // that what runs and what this controller believes are the old version again.
        for (const [d, options] of done.reverse())
          await this.#applyDeployment(d, options).catch(() => undefined);
        throw error;
      }
      done.push([deployment, old]);
    }
    this.#app = next;
    return plan;
  }

  /** The message of each deployment's last rolled-back update (cleared by the next change). */
  readonly #rollbacks = new WeakMap<DeploymentRuntime, string>();

  /** What a replica was started with, to tell which ones a rollback must replace. */
  readonly #startedWith = new WeakMap<ReplicaClient, string>();

  #startKey = (options: ResolvedDeploymentOptions): string =>
    canonicalJson([options.isolation, options.resources]);

  /** Replicas that run with no userConfig (started without one, never reconfigured since). */
  readonly #configless = new WeakSet<ReplicaClient>();

  /** Hands `replica` a userConfig through its reconfigure(). */
  async #reconfigureReplica(
    replica: ReplicaClient,
    config: JsonValue,
    timeoutMs: number,
  ): Promise<void> {
    await replica.control({ t: "reconfigure", config }, timeoutMs);
    this.#configless.delete(replica);
  }

  async #applyDeployment(
    d: DeploymentRuntime,
    next: ResolvedDeploymentOptions,
  ): Promise<UpdateKind[]> {
    const old = d.options;
    const plan = planUpdate(old, next);
    const kinds: UpdateKind[] = [];
    try {
      d.options = next;
      for (const step of plan) {
        if (step === "scale") continue; // after the others, outside the rollback
        kinds.push(step);
        if (step === "router") this.#configureLimits(d, next);
        else if (step === "controller") {
          clearInterval(d.healthTimer);
          this.#startHealthChecks(d);
        } else if (step === "reconfigure") {
          d.userConfig = next.userConfig;
          try {
            await Promise.all(
              d.running.map((r) =>
                this.#reconfigureReplica(r, next.userConfig ?? null, reconfigureTimeout(next)),
              ),
            );
          } catch (error) {
            d.message = `userConfig update rolled back: reconfigure() failed: ${(error as Error).message}`;
            this.#rollbacks.set(d, d.message);
            throw new DeployFailedError(d.name, d.message, { cause: error });
          }
        } else if (step === "restart") {
          // The userConfig removed: the new replicas start without one.
          if (next.userConfig === undefined) d.userConfig = undefined;
          if (!(await this.#rollingRestart(d))) {
            d.message = `Update rolled back: ${d.message}; the old replicas keep serving.`;
            this.#rollbacks.set(d, d.message);
            throw new DeployFailedError(d.name, d.message);
          }
        }
      }
    } catch (error) {
      await this.#revert(d, old, kinds);
      throw error;
    }
    // A change went through: what an earlier one's rollback said is said no more.
    if (plan.length > 0 && d.message === this.#rollbacks.get(d)) d.message = "";
    if (plan.includes("scale")) {
      d.autoscaler = next.autoscaling ? new Autoscaler(next.autoscaling) : undefined;
      clearInterval(d.scaleTimer);
      this.#startAutoscaling(d);
      d.target = next.autoscaling
        ? Math.min(next.autoscaling.maxReplicas, Math.max(next.autoscaling.minReplicas, d.target))
        : next.numReplicas;
      d.message = d.progress = `Scaling to ${d.target} replicas.`;
      d.startFailures = 0; // a new target gets its own attempts
      if (d.status === "DEPLOY_FAILED") d.state.set("UPDATING");
      this.#reconcile(d);
      kinds.push("scale");
    }
    return kinds;
  }

  /** New limits: this thread's router, every replica's own cap, and the routers in replicas. */
  #configureLimits(d: DeploymentRuntime, options: ResolvedDeploymentOptions): void {
    d.router.configure(options);
    for (const replica of d.live)
      replica.tell({ t: "limits", maxOngoing: options.maxOngoingRequests });
    this.#membership.publish(d);
  }

  /** Puts a deployment back on `old` after a failed update: what `kinds` had changed. */
  async #revert(d: DeploymentRuntime, old: ResolvedDeploymentOptions, kinds: UpdateKind[]) {
    const message = d.message;
    d.options = old;
    if (kinds.includes("router")) this.#configureLimits(d, old);
    if (kinds.includes("controller")) {
      clearInterval(d.healthTimer);
      this.#startHealthChecks(d);
    }
    // A userConfig added where there was none: the replicas that took it (or half took it)
    // are replaced by ones started without it, as they were.
    let restartAll = false;
    if (kinds.includes("reconfigure")) {
      const config = old.userConfig;
      d.userConfig = config;
      if (config === undefined) restartAll = true;
      else
        await Promise.allSettled(
          d.running.map((r) => this.#reconfigureReplica(r, config, reconfigureTimeout(old))),
        );
    }
    if (kinds.includes("restart") || restartAll) {
      clearTimeout(d.retryTimer);
      d.retryTimer = undefined;
      d.startFailures = 0;
      // A removal undone: the replicas started without the config get it back.
      const removed =
        kinds.includes("restart") && d.userConfig === undefined && old.userConfig !== undefined;
      if (removed) d.userConfig = old.userConfig;
      // Replicas the rolling restart had already replaced go back to the old settings.
      const key = this.#startKey(old);
      await this.#rollingRestart(
        d,
        (r) =>
          restartAll || this.#startedWith.get(r) !== key || (removed && this.#configless.has(r)),
      );
    }
    d.state.set("UPDATING");
    d.message = message;
    this.#setStatus(d);
  }

  /** Replaces the replicas `which` picks one at a time: the new one runs before the old one drains. */
  async #rollingRestart(
    d: DeploymentRuntime,
    which: (replica: ReplicaClient) => boolean = () => true,
  ): Promise<boolean> {
    d.rolling = true;
    d.state.set("UPDATING");
    const started: ReplicaClient[] = [];
    /** Why no new replica started, set once the restart is over (its reconcile clears a placement's message). */
    let notStarted: string | undefined;
    try {
      const old = d.live.filter(which);
      for (const [i, replica] of old.entries()) {
        // On a node that leaves: replaced already, and its node ends it.
        if (this.#leaving.has(replica)) continue;
        const fresh = await this.#startFresh(d);
        if (!fresh) {
          // A start that failed says why. One that found no node said so in a message the
          // reconcile below clears, and one refused by nodes that were leaving said nothing
          // (the rollback read "Update rolled back: ;").
          notStarted = `a new replica could not be started${d.message ? `: ${d.message}` : ""}`;
          return false;
        }
        started.push(fresh);
        // The new replicas are healthy before an old one drains: each answers a health
        // check, and none has ended since it started. Before the last old one goes, they
        // get a moment more: a replica that ends soon after its constructor returned (its
        // memory limit reached as the model warms up) would otherwise leave none serving.
        if (i === old.length - 1) await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
        const unhealthy = await this.#unhealthy(d, started, fresh);
        if (unhealthy) {
          d.message = unhealthy.why;
          // One that failed its health check goes now (its old one still runs): the count is
          // the target, and no healthy old replica is stopped to make room for it.
          if (unhealthy.stop) await this.#stopReplica(d, unhealthy.stop);
          return false;
        }
        await this.#stopReplica(d, replica);
      }
      return true;
    } finally {
      d.rolling = false;
      this.#reconcile(d);
      if (notStarted !== undefined) d.message = notStarted;
    }
  }

  /**
   * Starts one new replica for a rolling restart; returns it once it runs. One whose
   * cluster node turns out to be leaving (it refused the start) is not the new version
   * failing: it is started again on another node ({@link LEAVING_STARTS} starts in all).
   */
  async #startFresh(d: DeploymentRuntime): Promise<ReplicaClient | undefined> {
    for (let tries = 1; ; tries++) {
      const count = d.replicas.length;
      const starting = this.#startReplica(d);
      const fresh = d.replicas.length > count ? d.replicas.at(-1) : undefined;
      if (await starting) return fresh;
      if (!fresh || !this.#leaving.has(fresh) || tries >= LEAVING_STARTS) return undefined;
    }
  }

  /**
   * Why one of `replicas` (started by a rolling restart) is not healthy, if one is not: it
   * ended, or `fresh` (the one just started) fails a health check, and then it is the one
   * to `stop`. The earlier ones had theirs, and the periodic checks go on.
   */
  async #unhealthy(
    d: DeploymentRuntime,
    replicas: readonly ReplicaClient[],
    fresh: ReplicaClient | undefined,
  ): Promise<{ why: string; stop?: ReplicaClient } | undefined> {
    const gone = replicas.find((r) => r.state !== "RUNNING" && !this.#leaving.has(r));
    if (gone)
      return {
        why: `New replica ${gone.id} ended after it started (${gone.message || gone.state})`,
      };
    if (!fresh || this.#leaving.has(fresh)) return undefined;
    try {
      await fresh.control({ t: "health" }, d.options.healthCheckTimeoutMs);
    } catch (error) {
      const why = `New replica ${fresh.id} failed its health check: ${(error as Error).message}`;
      return { why, stop: fresh };
    }
    return undefined;
  }

  /** Takes a replica out of routing, lets its requests finish, then stops it. */
  async #stopReplica(deployment: DeploymentRuntime, replica: ReplicaClient): Promise<void> {
    // On a node that leaves, it drains there and its node ends it (see replicaLeaving).
    if (this.#leaving.has(replica)) return;
    const deadline = Date.now() + deployment.options.gracefulShutdownTimeoutMs;
    const wasRunning = await runningOnceStarted(replica, deadline);
    replica.state = "STOPPING";
    // Every router hears first; the replica then drains what reached it (what arrives
    // after the stop is answered `busy` and goes to another replica).
    this.#membership.publish(deployment);
    if (wasRunning)
      await replica
        .control(
          { t: "stop", drainMs: Math.max(deadline - Date.now(), 0) },
          Math.max(deadline - Date.now(), 0) + 1_000,
        )
        .catch(() => undefined);
    await replica.terminate();
    this.#forget(deployment, replica);
    this.#setStatus(deployment);
  }

  #startAutoscaling(deployment: DeploymentRuntime): void {
    const autoscaler = deployment.autoscaler;
    if (!autoscaler) return;
    deployment.scaleTimer = setInterval(() => {
      const load = deployment.ongoing + this.#queued(deployment);
      const next = autoscaler.observe(Date.now(), load, deployment.target);
      if (next === undefined || next === deployment.target) return;
      deployment.message =
        deployment.progress = `Autoscaling from ${deployment.target} to ${next} replicas (load ${load}).`;
      deployment.target = next;
      this.#reconcile(deployment);
    }, AUTOSCALE_TICK_MS);
    deployment.scaleTimer.unref();
  }

  #retryLater(deployment: DeploymentRuntime, delayMs: number): void {
    clearTimeout(deployment.retryTimer);
    deployment.retryTimer = setTimeout(
      () => {
        deployment.retryTimer = undefined;
        this.#reconcile(deployment);
      },
      Math.min(delayMs, MAX_BACKOFF_MS),
    );
  }

  #forget(deployment: DeploymentRuntime, replica: ReplicaClient): void {
    const index = deployment.replicas.indexOf(replica);
    if (index >= 0) deployment.replicas.splice(index, 1);
    this.#byReplica.delete(replica);
    deployment.checking.delete(replica);
    deployment.healthFailures.delete(replica);
    this.#membership.unsubscribe(replica);
    this.#publishGone(deployment, replica);
  }

  /**
   * Publishes `d`'s membership with why `replica` ended: routers in other threads and
   * processes see only its channel close (see `MembersMessage.gone`).
   */
  #publishGone(d: DeploymentRuntime, replica: ReplicaClient): void {
    this.#membership.publish(d, {
      [replica.id]: replica.state === "DEAD" ? replica.message : "stopped",
    });
  }

  /**
   * A line of the control plane's own in the replicas' log, in their format (pino's JSON,
   * tagged with the application, deployment and replica).
   */
  #logLine(level: "warn" | "error", d: DeploymentRuntime, replica: string, msg: string): void {
    this.#logger[level]({ application: this.#app.name, deployment: d.name, replica }, msg);
  }

  /**
   * A cluster's head says the replica on `transport` is on a node that leaves: it drains
   * there and ends with its node. Routers send it nothing new, and a replacement starts now
   * (not once it has ended). A replica that is not RUNNING here (or not this controller's:
   * in a code roll two versions may each have a replica of the same id) is left as it is.
   */
  replicaLeaving(transport: ReplicaTransport): void {
    if (this.#closing) return;
    for (const deployment of this.#deployments.values()) {
      const replica = deployment.replicas.find((r) => r.transport === transport);
      if (!replica) continue;
      // One still starting too: it would end as soon as it is ready.
      if (
        (replica.state !== "RUNNING" && replica.state !== "STARTING") ||
        this.#leaving.has(replica)
      )
        return;
      this.#leaving.add(replica);
      replica.state = "STOPPING";
      this.#membership.publish(deployment);
      deployment.message =
        deployment.progress = `Replica ${replica.id}'s node is leaving: it finishes what it runs there, and a replacement starts.`;
      this.#reconcile(deployment);
      return;
    }
  }

  /** `what` completes "Replica X …": `died (exited with code 3)`, `failed its health check: …`. */
  #onReplicaExit(replica: ReplicaClient, what: string, reason: FailureReason): void {
    const deployment = this.#byReplica.get(replica);
    if (!deployment) return;
    this.#forget(deployment, replica);
    if (this.#leaving.has(replica)) {
      // Its node has left: it was replaced already (see replicaLeaving).
      this.#setStatus(deployment);
      return;
    }
    if (this.#closing) return;
    this.#counts.get(deployment.name)!.failures[reason]++;
    // A replica that ran for a while before dying does not count towards the backoff.
    deployment.crashes = Date.now() - replica.startedAt > 30_000 ? 1 : deployment.crashes + 1;
    deployment.message = `Replica ${replica.id} ${what}${REPLACING}`;
    this.#logLine("error", deployment, replica.id, deployment.message);
    this.#retryLater(deployment, 100 * 2 ** (deployment.crashes - 1));
    this.#setStatus(deployment);
  }

  #startHealthChecks(deployment: DeploymentRuntime): void {
    const { healthCheckPeriodMs, healthCheckTimeoutMs } = deployment.options;
    deployment.healthTimer = setInterval(() => {
      for (const replica of deployment.running) {
        if (deployment.checking.has(replica)) continue;
        deployment.checking.add(replica);
        replica
          .control({ t: "health" }, healthCheckTimeoutMs)
          .then(
            () => void deployment.healthFailures.delete(replica),
            (error: Error) => {
              if (replica.state !== "RUNNING") return;
              // As Ray Serve: replaced after 3 failed checks in a row, so that one check lost
              // in a network blip (a cluster's NATS) does not end a healthy replica.
              const failed = (deployment.healthFailures.get(replica) ?? 0) + 1;
              deployment.healthFailures.set(replica, failed);
              if (failed < HEALTH_CHECK_FAILURE_THRESHOLD) {
                this.#logLine(
                  "warn",
                  deployment,
                  replica.id,
                  `Replica ${replica.id} failed a health check (${failed} of ${HEALTH_CHECK_FAILURE_THRESHOLD} in a row before it is replaced): ${error.message}`,
                );
                return;
              }
              const reason = `failed its health check ${failed} times in a row: ${error.message}`;
              void replica.kill(reason);
              this.#onReplicaExit(replica, reason, "health_check");
            },
          )
          .finally(() => deployment.checking.delete(replica));
      }
    }, healthCheckPeriodMs);
    deployment.healthTimer.unref();
  }
}
