/**
 * `run(app)`: serves an application with real replicas, and the `Server` it returns.
 * The ingress runs in this process: it validates the input, then walks the compiled plan,
 * sending each call through the router of its deployment.
 */
import { drainMs, INGRESS, type Application } from "../app/application.js";
import { toMilliseconds, type Duration, type JsonValue } from "../options.js";
import { inReplicaContext } from "../app/registry.js";
import { formatCallSite } from "../dag/call-site.js";
import type { DeploymentHandle } from "../dag/types.js";
import { DeployFailedError, GraphBuildError, ServerClosedError } from "../errors.js";
import { defaultTransportFactory } from "../data/transport/index.js";
import { movablesOf } from "../data/transport/transfer.js";
import type { TransportFactory } from "../data/transport/transport.js";
import { requestScope } from "../data/cancel.js";
import { StreamReader } from "../data/responses.js";
import { GraphIngress } from "./graph-ingress.js";
import { activeTraceparent, routeRequest } from "../tracing.js";
import { Controller, writeLine, type UpdateKind } from "../control/controller.js";
import { exportTraces, resolveTracing, type TracingOptions } from "../tracing-export.js";
import { checkModelId, handleProxy, handleTimeoutMs } from "../dag/handle.js";
import { checkRunOptions } from "./run-options.js";
import type { ApplicationStatusInfo } from "../status.js";
import { bytesFieldOf, OipModel } from "../ingress/oip.js";
import type { IngressCallOptions, IngressTarget } from "../ingress/target.js";
import { requireGrpcPackages, startFrontDoors } from "./front-doors.js";
import type { FrontDoorPool, PoolApplication } from "./front-door-pool.js";
import { Metrics } from "../metrics/metrics.js";
import { graphPicture, type GraphPicture } from "../metrics/dashboard.js";

export interface RunOptions {
  /** HTTP host (default `127.0.0.1`). */
  readonly host?: string;
  /** HTTP port (default 8000); 0 picks a free one, and `server.url` tells which. */
  readonly port?: number;
  /** Serve the Open Inference Protocol over gRPC too; port 0 picks a free one (`server.grpcPort`). */
  readonly grpc?: { readonly port?: number };
  /** Time a request may take through the pipeline before it fails with 504 (default: none). */
  readonly requestTimeout?: Duration;
  /** Time allowed to receive a whole HTTP request; slow senders are cut off (default 30s). */
  readonly readTimeout?: Duration;
  /** Largest request body in bytes (default 16 MiB), for HTTP and gRPC; a multipart body's parts together. */
  readonly bodyLimit?: number;
  /** Open HTTP connections at most (default 900); one more is answered 503 and closed. */
  readonly maxConnections?: number;
  /**
   * HTTP front doors: `workers` processes (default 1: the front door runs in this thread)
   * sharing the port, each with its own routers; one that dies is replaced. With `grpc`,
   * every worker serves gRPC too, on one shared gRPC port.
   */
  readonly http?: { readonly workers?: number };
  /**
   * Prometheus metrics at `GET /metrics` (default true). False records nothing: the front
   * doors count no request, replicas keep no statistics, and `/metrics` answers empty.
   */
  readonly metrics?: boolean;
  // Tracing (OpenTelemetry) gets its switch beside `metrics` (issue 15, part B).
  /** @internal The metrics several servers share (an instance's), instead of their own. */
  readonly metricsRegistry?: Metrics;
  /** Error responses include stack traces (default false). */
  readonly debug?: boolean;
  /** Level of the request log, a pino level (default `warn`). Each line carries the request id. */
  readonly logLevel?: string;
  /**
   * Where log lines go, one JSON object per line (default: standard output): the request
   * log, and what the replicas' code writes with `console.*`.
   */
  readonly logStream?: { write(line: string): void };
  /**
   * Export spans over OTLP/HTTP from this process, every replica and every front-door
   * worker, for code that registered no OpenTelemetry SDK (one it registered wins).
   */
  readonly tracing?: TracingOptions;
  /** @internal How replicas are started (tests may wrap the default). */
  readonly transports?: TransportFactory;
  /**
   * @internal A cluster's head: it places the replicas on nodes, and says when capacity
   * changed (a node joined), so that PENDING deployments are placed.
   */
  readonly cluster?: {
    readonly transports: TransportFactory;
    onCapacity(listener: () => void): () => void;
    /** The application's controller, for the front doors on nodes (their membership). */
    register(app: string, controller: Controller): () => void;
  };
  /** @internal False: serve no HTTP or gRPC (the caller owns the front doors). */
  readonly frontDoors?: false;
  /**
   * @internal The last replica number of each deployment of the version this one replaces
   * (an instance's code roll): its replicas are numbered on from there, so that no replica
   * label of the metrics is used twice.
   */
  readonly replicaNumbers?: ReadonlyMap<string, number>;
}

/** After the drain, a moment for the answers of requests that were cut off to be sent. */
const FLUSH_MS = 100;

/** Options of one request through a handle. */
export interface RequestOptions {
  /** Aborting it cancels the request; the replica's `requestContext().signal` fires. */
  readonly signal?: AbortSignal;
  /** Fails the request with `TimeoutError` after this long (`"2s"`, or milliseconds). */
  readonly timeout?: Duration;
  /** Carried to `requestContext().requestId` in every deployment the request reaches. */
  readonly requestId?: string;
  /** Request headers, as a front door would see them: a sticky `split()` reads its header here. */
  readonly headers?: Readonly<Record<string, string>>;
  /**
   * The model the request is for (multiplexing): carried to
   * `requestContext().multiplexedModelId` in every deployment it reaches; routers prefer
   * replicas that have it loaded.
   */
  readonly multiplexedModelId?: string;
}

/** The input `handle.call` takes: nothing for a graph without an `InputNode`. */
export type GraphInput<In> = [In] extends [never] ? undefined : In;

export interface ServerStatus {
  readonly applications: Readonly<Record<string, ApplicationStatusInfo>>;
}

/** Calls over the whole graph. */
export interface GraphHandle<In, Out> {
  call(input: GraphInput<In>, options?: RequestOptions): Promise<Out>;
}

/** A served application. Close it with `close()` or `await using`. */
export class Server<In = unknown, Out = unknown> implements AsyncDisposable {
  #app: Application<In, Out>;
  /** The HTTP address: `http://127.0.0.1:8000`. */
  url = "";
  /** The gRPC port, when gRPC is served. */
  grpcPort: number | undefined;
  readonly handle: GraphHandle<In, Out>;
  /**
   * @internal Front doors: they stop taking requests first, and close their connections
   * once `force` resolves (after the drain).
   */
  readonly frontDoors: {
    close(force: Promise<void>): Promise<void>;
    /** No HTTP request in flight any more (see FrontDoors.idle). */
    idle(): Promise<void>;
  }[] = [];
  /** @internal What closes last (the span exporter, after every span ended). */
  readonly closers: (() => Promise<void>)[] = [];
  /** @internal Run as `close()` begins (a cluster's head stops sending node front doors here). */
  readonly closing: (() => void)[] = [];
  /** @internal The front-door workers, with `http: { workers }` above 1. */
  frontDoorPool: FrontDoorPool | undefined;
  readonly #controller: Controller;
  /** @internal This server's Prometheus registry (or the instance's it shares). */
  readonly metrics: Metrics;
  readonly #unlistMetrics: () => void;
  /** When the application was last deployed or updated, and what that changed. */
  #lastDeploy: { at: string; changes: Record<string, UpdateKind[]> } = {
    at: new Date().toISOString(),
    changes: {},
  };
  /** The ingress of this thread: the plan's calls go through this thread's routers. */
  readonly #ingress: GraphIngress;
  #closed: Promise<void> | undefined;

  /** The application as last applied. */
  get app(): Application<In, Out> {
    return this.#app;
  }

  /** @internal Use {@link run}. */
  constructor(app: Application<In, Out>, controller: Controller, metrics: Metrics) {
    this.#app = app;
    this.#controller = controller;
    this.metrics = metrics;
    let picture: GraphPicture | undefined;
    this.#unlistMetrics = metrics.addSource({
      application: app.name,
      deployments: () => controller.metrics(),
      status: () => controller.status().status,
      picture: () => (picture ??= graphPicture(app)),
    });
    const routers = app.graph.steps.map((step) =>
      step.op === "call" ? controller.router(step.deployment) : undefined,
    );
    this.#ingress = new GraphIngress(
      app,
      (step, args, options) => routers[step.index]!.call(step.method, args, options),
      (application, split, arm) => metrics.split(application, split, arm),
    );
    this.handle = { call: (input, options) => this.#callGraph(input, options) as Promise<Out> };
  }

  #callGraph(input: unknown, options?: RequestOptions | IngressCallOptions): Promise<unknown> {
    // A route's request in flight during a shutdown runs its graph (app.call) too.
    if (this.#closed && !routeRequest())
      return Promise.reject(new ServerClosedError(`Application "${this.app.name}"`));
    return this.#ingress.call(input, options);
  }

  /**
   * A handle to one deployment: each method of `T` as an async function through the runtime.
   *
   * @example
   * const m1 = server.getHandle<Classifier>("m1");
   * await m1.forward(new Float32Array(4));
   */
  getHandle<T>(name: string, options: RequestOptions = {}): DeploymentHandle<T> {
    const router = this.#controller.router(name);
    const ownTimeout = options.timeout === undefined ? undefined : toMilliseconds(options.timeout);
    checkModelId(options.multiplexedModelId, "getHandle()");
    return handleProxy(name, (method, args, handleOptions) => {
      // A route's request in flight finishes during a shutdown (its calls go on); a new call
      // from elsewhere is refused.
      if (this.#closed && !routeRequest())
        return Promise.reject(new ServerClosedError(`Deployment "${name}"`));
      // A handle's own options (withHandleOptions) before those it was got with.
      const timeout =
        handleOptions.timeout !== undefined ? handleTimeoutMs(handleOptions) : ownTimeout;
      const signal =
        options.signal && handleOptions.signal
          ? [options.signal, handleOptions.signal]
          : (handleOptions.signal ?? options.signal);
      const { scope, dispose } = requestScope(`${name}.${method}()`, signal, timeout);
      const call = router.call(method, args, {
        cancel: scope,
        // In a route of the application's own, the request it handles.
        requestId: options.requestId ?? routeRequest()?.requestId,
        ...movablesOf(args),
        multiplexedModelId: handleOptions.multiplexedModelId ?? options.multiplexedModelId,
        traceparent: activeTraceparent(),
      });
      // A stream keeps its timeout and signal until it ends.
      if (scope) {
        call.then(
          (value) => (value instanceof StreamReader ? value.onEnd(dispose) : dispose()),
          dispose,
        );
      }
      return call;
    }) as DeploymentHandle<T>;
  }

  /** Applications, deployments and replicas, with their states and latest messages. */
  async status(): Promise<ServerStatus> {
    const { status, message, deployments } = this.#controller.status();
    return {
      applications: {
        [this.app.name]: {
          name: this.app.name,
          routePrefix: this.app.routePrefix,
          status,
          message,
          deployments,
          lastDeployedAt: this.#lastDeploy.at,
          lastChanges: this.#lastDeploy.changes,
        },
      },
    };
  }

  /**
   * Applies another configuration of this application (from `app.withOptions(...)`): each
   * deployment gets only what its change needs (router limits, `reconfigure()`, scaling, or a
   * rolling restart that loses no request). Resolves with what was done per deployment;
   * rejects with `DeployFailedError` after rolling a failed change back.
   *
   * @example
   * await server.update(app.withOptions({ m1: { numReplicas: 4, userConfig: { threshold: 0.3 } } }));
   */
  update(next: Application<In, Out>): Promise<Record<string, UpdateKind[]>> {
    // One update at a time: the next starts from what the previous one left.
    const result = this.#updates.then(() => this.#update(next));
    this.#updates = result.catch(() => undefined);
    return result;
  }

  #updates: Promise<unknown> = Promise.resolve();

  async #update(next: Application<In, Out>): Promise<Record<string, UpdateKind[]>> {
    if (next.graph !== this.#app.graph) {
      throw new GraphBuildError(
        `update() takes a configuration of the same application (app.withOptions(...)); a changed graph or module needs a code update.`,
      );
    }
    const plan = await this.#controller.apply(next);
    // The generated ingress is no deployment of the control plane: its limits apply here.
    const before = this.#app.deployments[INGRESS]!;
    const after = next.deployments[INGRESS]!;
    if (
      before.maxOngoingRequests !== after.maxOngoingRequests ||
      before.maxQueuedRequests !== after.maxQueuedRequests ||
      before.maxQueueWaitMs !== after.maxQueueWaitMs
    )
      plan[INGRESS] = ["router"];
    this.#ingress.configure(next);
    await this.frontDoorPool?.serve([{ app: next, controller: this.#controller }]);
    this.#app = next;
    const changes = Object.fromEntries(
      Object.entries(plan).filter(([, kinds]) => kinds.length > 0),
    );
    if (Object.keys(changes).length > 0)
      this.#lastDeploy = { at: new Date().toISOString(), changes };
    return plan;
  }

  /**
   * Sends a new `userConfig` to a deployment: `reconfigure()` runs on live replicas, no
   * restart. It is an update of that one option (`update(app.withOptions(...))`): the new
   * config is what replicas started later get, and one that `reconfigure()` refuses is
   * rolled back (a `DeployFailedError`), the replicas keeping the config they had.
   */
  async reconfigure(deployment: string, userConfig: JsonValue): Promise<void> {
    await this.update(this.app.withOptions({ [deployment]: { userConfig } }));
  }

  /**
   * @internal Stops this server's control plane and leaves its replicas running: a cluster's
   * head handing over to the next one, which adopts them (see `Instance.close`).
   */
  detach(): void {
    this.#controller.detach();
  }

  /**
   * Stops taking requests, drains those in flight, closes the instances. Bounded: what still
   * runs after `gracefulShutdownTimeout` (the largest of the deployments') is answered with
   * `ReplicaDiedError` (and queued requests with `ServerClosedError`), so it ends within that
   * plus about a second for `close()` hooks. Safe to call twice.
   */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      for (const begin of this.closing) begin();
      // The deployments' own timeouts bound the drain (the generated ingress has none of its own).
      const deadline = Date.now() + drainMs(this.app);
      let drained!: () => void;
      const force = new Promise<void>((resolve) => (drained = resolve));
      const doors = Promise.all(this.frontDoors.map((door) => door.close(force)));
      // The front doors answer what they have in flight (a route's own code too, between its
      // handle calls) while the replicas still run; graph executions go on through every step.
      await withinDeadline(Promise.all(this.frontDoors.map((door) => door.idle())), deadline);
      while (this.#ingress.pending > 0 && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 10));
      await this.#controller.close(deadline);
      setTimeout(drained, FLUSH_MS);
      await doors;
      this.#unlistMetrics();
      for (const close of this.closers) await close();
    })();
    return this.#closed;
  }

  /**
   * @internal What the HTTP and gRPC front doors call. Made once: the model and the bytes
   * field depend on the graph's schema, which updates do not change.
   */
  ingressTarget(): IngressTarget {
    if (this.#target) return this.#target;
    const schema = this.app.graph.input?.schema;
    const app = (): Application => this.app;
    this.#target = {
      get app() {
        return app();
      },
      model: new OipModel(this.app.name, schema),
      bytesField: bytesFieldOf(schema),
      call: (input, options) => this.#callGraph(input, options),
      getHandle: (name) => this.getHandle(name),
      ready: () => this.#controller.ready(),
    };
    return this.#target;
  }

  #target: IngressTarget | undefined;

  /** @internal The last replica number of each deployment (see `RunOptions.replicaNumbers`). */
  replicaNumbers(): ReadonlyMap<string, number> {
    return this.#controller.replicaNumbers();
  }

  /** @internal What front-door workers serve of this application: it, and its controller. */
  poolApplication(): PoolApplication {
    return { app: this.app, controller: this.#controller };
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Serves an application: starts every deployment's replicas and resolves once all are
 * healthy. Rejects with `DeployFailedError` (after stopping what started) when a
 * deployment cannot start.
 *
 * @example
 * await using server = await run(app);
 * await server.handle.call({ image, id: "42" });
 */
export async function run<In, Out>(
  app: Application<In, Out>,
  options: RunOptions = {},
): Promise<Server<In, Out>> {
  if (inReplicaContext()) {
    throw new GraphBuildError(
      `run() was called while a replica imported ${app.moduleUrl}. Replicas import the module that ` +
        `builds the graph; call run() from another module (or use the tributary CLI).`,
    );
  }
  if (app.site && !app.site.topLevel) {
    throw new GraphBuildError(
      `Application "${app.name}" was built inside a function (${app.site.functionName ?? "anonymous"}, ` +
        `at ${formatCallSite(app.site)}). Replicas re-import the module that called build() and find ` +
        `the graph by name, so build the graph at the module's top level and export it, or export ` +
        `the function as an application builder (its arguments then reach every replica).`,
    );
  }
  checkRunOptions(options);
  // Before any replica starts: a missing package is known now.
  if (options.grpc && options.frontDoors !== false) requireGrpcPackages();
  const metrics = options.metricsRegistry ?? new Metrics({ enabled: options.metrics !== false });
  const tracing = resolveTracing(options.tracing);
  const logStream = options.logStream;
  const controller = new Controller(
    app,
    options.cluster?.transports ?? options.transports ?? defaultTransportFactory,
    {
      log: logStream ? (line) => logStream.write(`${line}\n`) : writeLine,
      logLevel: options.logLevel,
      tracing,
      metrics: metrics.enabled,
      replicaNumbers: options.replicaNumbers,
    },
  );
  // This thread's spans (the front doors'), unless its code registered an SDK. First: when
  // it cannot start (its optional packages are missing), nothing is left registered.
  const traceExport = tracing && (await exportTraces(tracing.otlpEndpoint, tracing.serviceName));
  const offCapacity = options.cluster?.onCapacity(() => controller.replan());
  const unregister = options.cluster?.register(app.name, controller);
  try {
    await controller.start();
  } catch (error) {
    if (error instanceof DeployFailedError) {
      const { status, message, deployments } = controller.status();
      error.status = { name: app.name, routePrefix: app.routePrefix, status, message, deployments };
    }
    offCapacity?.();
    unregister?.();
    await controller.close();
    // Its replicas' starts and failures count (a failed code roll of an instance's
    // application shows in tributary_replica_failures_total): read once, and kept.
    metrics.addSource({ application: app.name, deployments: () => controller.metrics() })();
    await traceExport?.close();
    throw error;
  }
  const server = new Server(app, controller, metrics);
  if (offCapacity) server.closers.push(async () => offCapacity());
  // At once: a version dropped in a code roll hands node front doors back to the one that
  // serves on before it drains.
  if (unregister) server.closing.push(unregister);
  if (traceExport) server.closers.push(() => traceExport.close());
  if (options.frontDoors === false) return server;
  const workers = options.http?.workers ?? 1;
  try {
    if (workers > 1) {
      const { startFrontDoorPool } = await import("./front-door-pool.js");
      const pool = await startFrontDoorPool([{ app, controller }], options, workers, metrics);
      server.url = pool.url;
      server.grpcPort = pool.grpcPort;
      server.frontDoorPool = pool;
      server.frontDoors.push(pool);
      return server;
    }
    const doors = await startFrontDoors(server.ingressTarget(), options, metrics);
    server.url = doors.url;
    server.grpcPort = doors.grpcPort;
    server.frontDoors.push(doors);
  } catch (error) {
    await server.close();
    throw error;
  }
  return server;
}

/**
 * Waits for `done` until `deadline` (a time), whichever comes first; a rejection counts as
 * done (what failed is someone else's to report).
 */
export async function withinDeadline(done: Promise<unknown>, deadline: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    done.catch(() => undefined),
    new Promise((resolve) => (timer = setTimeout(resolve, Math.max(0, deadline - Date.now())))),
  ]);
  clearTimeout(timer);
}
