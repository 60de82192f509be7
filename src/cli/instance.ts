/**
 * `tributary start`: a long-running instance with an admin API. It owns the front doors,
 * serves every application of the last configuration that validated (each by its name and
 * route prefix), and converges on each deploy application by application: one whose part
 * of the file is unchanged is not touched; a change of options is applied with
 * `server.update` (only what each deployment needs); a change of code (the module's
 * contents, its import path or a builder's args) starts the new version beside the old
 * one, moves the front doors to it once healthy, then drains the old one; one that left
 * the file is taken off the front doors, drained and stopped. The last applied
 * configuration is kept in the state directory and restored on restart.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { isIP } from "node:net";
import { dirname, join, resolve } from "node:path";
import type { Duration } from "../options.js";
import { parseConfig } from "../config/load.js";
import { replaceApplications } from "../config/write.js";
import {
  checkImportPath,
  configureApplication,
  moduleVersion,
  type ImportPolicy,
} from "../config/resolve.js";
import { drainMs, type Application } from "../app/application.js";
import { checkApplications, checkRoutePrefixes } from "../config/applications.js";
import type { ApplicationConfigEntry, ServeConfig } from "../config/schema.js";
import { TributaryError } from "../errors.js";
import type { IngressTarget, IngressTargets } from "../ingress/target.js";
import { startFrontDoors, type FrontDoors } from "../runtime/front-doors.js";
import { run, withinDeadline, type RunOptions, type Server } from "../runtime/server.js";
import type { FrontDoorPool } from "../runtime/front-door-pool.js";
import { startAdminApi } from "./admin-api.js";
import { Metrics } from "../metrics/metrics.js";
import { Dashboard } from "../metrics/dashboard.js";
import { LogBuffer } from "./log-buffer.js";
import { exportTraces, resolveTracing, type TraceExport } from "../tracing-export.js";
import type { ClusterHead } from "../control/cluster.js";

export interface InstanceOptions {
  readonly adminHost: string;
  readonly adminPort: number;
  /** Required when the admin API listens on a non-loopback address. */
  readonly adminToken: string | undefined;
  /** Where the last applied configuration is kept; `undefined`: nowhere (`tributary run`). */
  readonly stateDir: string | undefined;
  /** Server settings that win over the file's (`tributary run --port`). */
  readonly overrides?: RunOptions;
  /**
   * Where deployed configurations may import modules from: under the config file's
   * directory inside `projectDir` (default: the working directory), or under one of
   * `allowedDirs` (`--allow-imports`).
   */
  readonly imports?: Partial<ImportPolicy>;
  /** How many recent log lines the instance keeps for `tributary logs` (default 10,000). */
  readonly logLines?: number;
  /**
   * `tributary start --cluster`: this instance is the cluster's head. Replicas run on the
   * nodes; the applied config is kept in the cluster's KV and restored from there.
   */
  readonly cluster?: ClusterHead | undefined;
}

/** One application as it runs, with what it was made from (for the next deploy's diff). */
interface Running {
  readonly entry: ApplicationConfigEntry;
  readonly version: string;
  /** The application as its code builds it, before the config's overrides. */
  readonly base: Application;
  readonly server: Server;
}

/** What a deploy did to one application. */
export interface ApplicationDeployResult {
  readonly application: string;
  /**
   * `started`, `updated` (per deployment: what changed), `code` (the whole application
   * rolled to new code or arguments), `unchanged`, or `removed` (drained and stopped).
   */
  readonly action: "started" | "updated" | "code" | "unchanged" | "removed";
  readonly changes: Record<string, string[]>;
}

export interface DeployResult {
  /** Each application of the file, in its order, then those the file no longer has. */
  readonly applications: readonly ApplicationDeployResult[];
  /** The http settings applied in place; `address` when the front doors were restarted. */
  readonly http: readonly string[];
}

const isLoopback = (host: string): boolean =>
  host === "localhost" || host === "::1" || (isIP(host) === 4 && host.startsWith("127."));

/** The server settings of a config file (what `run()` takes). */
export function serverOptions(config: ServeConfig): RunOptions {
  const http = config.http ?? {};
  return {
    ...(http.host !== undefined && { host: http.host }),
    ...(http.port !== undefined && { port: http.port }),
    ...(http.requestTimeout !== undefined && { requestTimeout: http.requestTimeout as Duration }),
    ...(http.readTimeout !== undefined && { readTimeout: http.readTimeout as Duration }),
    ...(http.bodyLimit !== undefined && { bodyLimit: http.bodyLimit }),
    ...(http.maxConnections !== undefined && { maxConnections: http.maxConnections }),
    ...(http.workers !== undefined && { http: { workers: http.workers } }),
    ...(config.grpc && { grpc: { port: config.grpc.port ?? 9000 } }),
    ...(config.tracing && { tracing: config.tracing }),
  };
}

/** What a deploy will do to one application of the file. */
interface Plan {
  readonly entry: ApplicationConfigEntry;
  readonly version: string;
  readonly app: Application;
  readonly base: Application;
  /** The running application it updates in place (same code and arguments), if any. */
  readonly previous: Running | undefined;
}

/** How long requests in flight may finish on an old address when the front door moves. */
const RESTART_DRAIN_MS = 5_000;

/** The front-door worker processes of `http.workers` above 1. */
type PoolRef = { readonly workers: number; readonly pool: FrontDoorPool } | undefined;

/** The ports `doors` listen on. */
function portsOf(doors: FrontDoors): { http: number; grpc: number | undefined } {
  const url = new URL(doors.url);
  // (A URL leaves out its scheme's default port: http://127.0.0.1 listens on 80.)
  return { http: Number(url.port || (url.protocol === "https:" ? 443 : 80)), grpc: doors.grpcPort };
}

/** Whether starting listeners failed on a port in use (from this process or another). */
function portInUse(error: unknown): boolean {
  const cause = (error as { cause?: { code?: string } } | undefined)?.cause;
  return (
    cause?.code === "EADDRINUSE" || / is in use /.test((error as Error | undefined)?.message ?? "")
  );
}

/**
 * Whether listeners for `next` may need a port that `current` holds (the same HTTP or gRPC
 * port number, other than 0): then they cannot start beside them.
 */
function sharesPort(current: FrontDoors, next: RunOptions): boolean {
  const held = portsOf(current);
  const http = next.port ?? 8000;
  const grpc = next.grpc?.port;
  return (
    (http !== 0 && http === held.http) || (grpc !== undefined && grpc !== 0 && grpc === held.grpc)
  );
}

/**
 * How long a code roll's new version may wait for room on a cluster (a deployment PENDING)
 * before the roll is refused (the old version holds the room).
 */
const ROOM_WAIT_MS = 10_000;

export class Instance {
  readonly #options: InstanceOptions;
  /** The recent log lines (`tributary logs`); every line also goes to standard output. */
  readonly logs: LogBuffer;
  /** This thread's span exporter (`tracing` in the first file that set it). */
  #traceExport: TraceExport | undefined;
  readonly #imports: ImportPolicy;
  /** The last configuration applied whole. */
  #applied: { readonly file: string; readonly text: string } | undefined;
  /** The running applications, by name, in the order of the file that made them. */
  #running = new Map<string, Running>();
  /** What the front doors serve: the running applications' targets. */
  #served: readonly IngressTarget[] = [];
  #frontDoors: FrontDoors | undefined;
  /** With `http.workers` above 1: the worker processes behind `#frontDoors`. */
  #pool: PoolRef;
  /** The options `#frontDoors` were started or last updated with. */
  #frontDoorOptions: RunOptions | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #admin: (() => Promise<void>) | undefined;
  #closed: Promise<void> | undefined;
  /** One Prometheus registry for every application: the front door's and the admin API's `/metrics`. */
  readonly metrics = new Metrics();
  /** The admin API's live dashboard (`GET /`). */
  readonly dashboard = new Dashboard(this.metrics);
  /** The last deploy that changed each application: when, and what it did. */
  readonly #lastDeploys = new Map<
    string,
    { at: string; action: string; changes: Record<string, string[]> }
  >();
  /**
   * The last deploy of each application that failed, since one that succeeded: when, and why
   * (what ran before goes on running, so its status alone does not show it).
   */
  readonly #failedDeploys = new Map<string, { at: string; error: string }>();
  /** Resolves when the instance has shut down. */
  readonly stopped: Promise<void>;
  #stop!: () => void;

  constructor(options: InstanceOptions) {
    if (!isLoopback(options.adminHost) && !options.adminToken) {
      throw new TributaryError(
        "INVALID_CONFIG",
        `The admin API would listen on ${options.adminHost}, which is not a loopback address: give a token with --admin-token or TRIBUTARY_ADMIN_TOKEN.`,
      );
    }
    this.#options = options;
    this.logs = new LogBuffer(options.logLines);
    this.#imports = {
      projectDir: resolve(options.imports?.projectDir ?? process.cwd()),
      allowedDirs: (options.imports?.allowedDirs ?? []).map((dir) => resolve(dir)),
    };
    this.stopped = new Promise((resolve) => (this.#stop = resolve));
  }

  /**
   * Whether the first configuration (the restored one, or the first deploy) has been
   * applied: until then the instance is not ready, though its first applications serve
   * (a load balancer would send it requests for the ones still starting).
   */
  #settled = false;
  /** The configuration being applied now, and since when (`tributary status` shows it). */
  #deploying: { readonly file: string; readonly at: string } | undefined;
  /** What the front doors serve: always the running applications. */
  readonly #targets: IngressTargets = {
    list: () => this.#served,
    starting: () => !this.#settled,
  };

  /** The front doors serve the running applications from now on (the workers once they have loaded them). */
  async #publish(): Promise<void> {
    const running = [...this.#running.values()];
    this.#served = running.map((r) => r.server.ingressTarget());
    await this.#pool?.pool.serve(
      running.map((r) => r.server.poolApplication()),
      !this.#settled,
    );
  }

  /** Validates and applies a configuration; one at a time, in order. */
  deploy(text: string, file: string): Promise<DeployResult> {
    const next = this.#queue.then(() => {
      // One that waited behind another while a shutdown began is not started: nothing of it
      // is imported, started or saved.
      if (this.#closed) throw new TributaryError("SERVER_CLOSED", "The instance is shutting down.");
      this.#deploying = { file, at: new Date().toISOString() };
      return this.#deploy(text, file).finally(() => {
        this.#deploying = undefined;
        return this.#settle();
      });
    });
    this.#queue = next.catch(() => undefined);
    return next;
  }

  /** The first configuration has been applied (or refused): ready once what runs is. */
  async #settle(): Promise<void> {
    if (this.#settled) return;
    this.#settled = true;
    await this.#publish().catch(() => undefined); // the front-door workers hear it too
  }

  async #deploy(text: string, file: string): Promise<DeployResult> {
    const { config, document } = parseConfig(text, file);
    checkApplications(config, document);
    // Every check that needs no user code runs first: a module is imported (its top-level
    // code runs) only for a configuration that passed them, from an allowed directory.
    for (const [index, entry] of config.applications.entries())
      checkImportPath(entry, index, document, file, this.#imports);
    const baseDir = dirname(resolve(file));
    // Then every application is resolved before anything changes: a file with one bad
    // application changes none.
    const plans: Plan[] = [];
    for (const [index, entry] of config.applications.entries()) {
      const version = moduleVersion(entry.importPath, baseDir);
      const previous = this.#running.get(entry.name);
      const sameCode =
        previous !== undefined &&
        previous.version === version &&
        previous.entry.importPath === entry.importPath &&
        JSON.stringify(previous.entry.args ?? null) === JSON.stringify(entry.args ?? null);
      const { app, base } = await configureApplication(
        entry,
        index,
        document,
        file,
        sameCode ? { base: previous.base } : { version },
      );
      plans.push({ entry, version, app, base, previous: sameCode ? previous : undefined });
    }
    checkRoutePrefixes(
      plans.map((plan) => plan.app),
      document,
      (name) => config.applications.findIndex((entry) => entry.name === name),
    );
    const cluster = this.#options.cluster;
    const options: RunOptions = {
      logStream: this.logs,
      ...serverOptions(config),
      ...this.#options.overrides,
      ...(cluster && { cluster }),
    };
    if (cluster && (options.http?.workers ?? 1) > 1)
      throw new TributaryError(
        "INVALID_CONFIG",
        "http.workers above 1 is not supported on a cluster's head: give nodes front doors of their own (tributary node --http-port).",
      );
    // Before the front doors start, so that their requests get spans.
    const tracing = resolveTracing(options.tracing);
    if (tracing && !this.#traceExport)
      this.#traceExport = await exportTraces(tracing.otlpEndpoint, tracing.serviceName);
    const http = await this.#ensureFrontDoors(options);
    const results: ApplicationDeployResult[] = [];
    /** The applications that failed, and why. */
    const failures = new Map<string, string>();
    const kept = new Set(plans.map((plan) => plan.entry.name));
    for (const plan of plans) {
      try {
        const result = await this.#apply(plan, options);
        results.push(result);
        this.#failedDeploys.delete(result.application);
        if (result.action !== "unchanged")
          this.#lastDeploys.set(result.application, {
            at: new Date().toISOString(),
            action: result.action,
            changes: result.changes,
          });
      } catch (error) {
        const message = (error as Error).message;
        failures.set(plan.entry.name, message);
        this.#failedDeploys.set(plan.entry.name, { at: new Date().toISOString(), error: message });
      }
    }
    // Applications the file no longer has: off the front doors at once, then drained.
    for (const [name, running] of [...this.#running]) {
      if (kept.has(name)) continue;
      this.#running.delete(name);
      this.#lastDeploys.delete(name);
      await this.#publish();
      await running.server.close();
      results.push({ application: name, action: "removed", changes: {} });
    }
    // The file's order is the order of status and of the front door's listing.
    this.#running = new Map(
      [...this.#running].sort(
        ([a], [b]) =>
          config.applications.findIndex((e) => e.name === a) -
          config.applications.findIndex((e) => e.name === b),
      ),
    );
    await this.#publish();
    // A failure is shown under an application that runs; one that never ran has none.
    for (const name of this.#failedDeploys.keys())
      if (!this.#running.has(name)) this.#failedDeploys.delete(name);
    if (failures.size > 0) {
      // What runs now is the config: the applications that deployed as the file says, the
      // ones that failed as they ran before (or not at all). A restart brings that back.
      const ran = new Map<string, object | null>(
        [...failures.keys()].map((name) => [name, this.#running.get(name)?.entry ?? null]),
      );
      this.#applied = { file, text: replaceApplications(text, ran) };
      await this.#persist(file, this.#applied.text);
      throw new TributaryError(
        "DEPLOY_FAILED",
        `Some applications could not be deployed (the others were; what ran before keeps running): ${[...failures].map(([name, why]) => `${name}: ${why}`).join("; ")}`,
      );
    }
    this.#applied = { file, text };
    await this.#persist(file, text);
    return { applications: results, http };
  }

  /** Applies one application's plan: an update in place, new code beside the old, or a start. */
  async #apply(plan: Plan, options: RunOptions): Promise<ApplicationDeployResult> {
    const { entry, app, previous } = plan;
    if (previous && app.graph === previous.server.app.graph) {
      const prefixBefore = previous.server.app.routePrefix;
      const splitsBefore = previous.server.app.splits;
      const changes: Record<string, string[]> = Object.fromEntries(
        Object.entries(await previous.server.update(app)).filter(([, kinds]) => kinds.length > 0),
      );
      // New split weights apply on the next request (no replica restarts).
      const reweighted = Object.entries(app.splits)
        .filter(([name, weights]) =>
          Object.entries(weights).some(([arm, w]) => splitsBefore[name]?.[arm] !== w),
        )
        .map(([name]) => name);
      if (reweighted.length > 0) changes.splits = reweighted;
      if (app.routePrefix !== prefixBefore) {
        await this.#frontDoors?.mount(previous.server.ingressTarget());
        changes.routePrefix = [app.routePrefix];
      }
      this.#running.set(entry.name, { ...previous, entry });
      return {
        application: entry.name,
        action: Object.keys(changes).length > 0 ? "updated" : "unchanged",
        changes,
      };
    }
    const old = this.#running.get(entry.name)?.server;
    const server = await run(app, {
      ...options,
      frontDoors: false,
      metricsRegistry: this.metrics,
      // The new version's replicas are numbered on from the old one's: no replica label of
      // the metrics is used twice (a counter of the same labels would seem to go down).
      ...(old && { replicaNumbers: old.replicaNumbers() }),
    });
    if (this.#closed) {
      await server.close();
      throw new TributaryError("SERVER_CLOSED", "The instance is shutting down.");
    }
    // On a cluster, a deployment of the new version may wait for room (PENDING): the old
    // version holds it. Moving the front door to it, and draining the old one, left no
    // replica to serve (a full cluster's code roll was an outage). It waits a while for a
    // node that fits, then the roll is refused and the old version serves on.
    if (old && !(await this.#readyWithin(server, ROOM_WAIT_MS))) {
      const pending = Object.entries((await server.status()).applications[entry.name]!.deployments)
        .filter(([, d]) => d.status === "PENDING")
        .map(([name, d]) => `${name}: ${d.message}`);
      await server.close();
      throw new TributaryError(
        "DEPLOY_FAILED",
        `The new version of "${entry.name}" has no room beside the old one, which serves on (a code change starts the whole new version before the old one drains): ${pending.join("; ") || "not every deployment runs a replica"}.`,
      );
    }
    try {
      await this.#frontDoors?.mount(server.ingressTarget());
    } catch (error) {
      await server.close();
      throw error;
    }
    this.#running.set(entry.name, { entry, version: plan.version, base: plan.base, server });
    await this.#publish();
    if (old) await old.close(); // drains what it was still serving
    return { application: entry.name, action: old ? "code" : "started", changes: {} };
  }

  /** Whether every deployment of `server` runs a replica within `ms`. */
  async #readyWithin(server: Server, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!server.ingressTarget().ready()) {
      if (Date.now() > deadline || this.#closed) return false;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return true;
  }

  /**
   * Starts the front doors, or applies changed http settings to them in place (no connection
   * is dropped). Only a new address or gRPC port restarts them. Resolves with what changed.
   */
  async #ensureFrontDoors(options: RunOptions): Promise<string[]> {
    const workers = options.http?.workers ?? 1;
    const old = this.#frontDoors;
    const before = this.#pool?.workers ?? 1;
    if (!old) {
      // The first start changes nothing that was served.
      [this.#frontDoors, this.#pool] = await this.#startFrontDoors(options, workers);
      this.#frontDoorOptions = options;
      return [];
    }
    const changed = before === workers ? await old.update(options) : undefined;
    if (changed) {
      this.#frontDoorOptions = options;
      return changed;
    }
    // New listeners: started beside the old ones where they can be, so that a change that
    // cannot be served (a port in use, a host not on this machine) leaves the old serving.
    let started: [FrontDoors, PoolRef] | undefined;
    try {
      started = await this.#startFrontDoors(options, workers);
    } catch (error) {
      if (!portInUse(error) || !sharesPort(old, options)) throw error;
    }
    // Requests in flight on the old address get a moment to finish.
    const drain = (): Promise<void> =>
      old.close(new Promise((resolve) => setTimeout(resolve, RESTART_DRAIN_MS)));
    if (!started) {
      // The new listeners need a port the old ones hold: those go first, and come back if
      // the new ones cannot start either.
      this.#frontDoors = undefined;
      this.#pool = undefined;
      await drain();
      try {
        started = await this.#startFrontDoors(options, workers);
      } catch (error) {
        // Back as they were, on the ports they had (an ephemeral one included).
        const previous = this.#frontDoorOptions!;
        const held = portsOf(old);
        [this.#frontDoors, this.#pool] = await this.#startFrontDoors(
          {
            ...previous,
            port: held.http,
            ...(held.grpc !== undefined && { grpc: { port: held.grpc } }),
          },
          before,
        );
        throw error;
      }
      [this.#frontDoors, this.#pool] = started;
    } else {
      [this.#frontDoors, this.#pool] = started;
      await drain();
    }
    this.#frontDoorOptions = options;
    return workers === before ? ["address"] : ["workers"];
  }

  /** Front doors for `options`: this process's, or `workers` processes behind one port. */
  async #startFrontDoors(options: RunOptions, workers: number): Promise<[FrontDoors, PoolRef]> {
    if (workers <= 1)
      return [await startFrontDoors(this.#targets, options, this.metrics), undefined];
    const { startFrontDoorPool } = await import("../runtime/front-door-pool.js");
    // The instance's pools share their ports: a new one starts beside the old one.
    const pool = await startFrontDoorPool(
      [...this.#running.values()].map((r) => r.server.poolApplication()),
      options,
      workers,
      this.metrics,
      this,
    );
    return [
      {
        url: pool.url,
        grpcPort: pool.grpcPort,
        update: (next) => pool.update(next),
        // A worker builds an application's routes when it is told to serve it (#publish).
        mount: async () => undefined,
        close: (force) => pool.close(force ?? Promise.resolve()),
        idle: () => pool.idle(),
      },
      { workers, pool },
    ];
  }

  async #persist(file: string, text: string): Promise<void> {
    // A shutdown began meanwhile: what is saved stays what ran (a restart restores it).
    if (this.#closed) return;
    await this.#options.cluster?.saveConfig({ file: resolve(file), text });
    const dir = this.#options.stateDir;
    if (dir === undefined) return;
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "applied.json"), JSON.stringify({ file: resolve(file), text }));
  }

  /** Restores the last applied configuration from the state directory, if any. */
  async restore(): Promise<DeployResult | undefined> {
    const cluster = this.#options.cluster;
    if (cluster) {
      // A head finds the cluster's config in KV, and adopts the replicas that still run.
      const saved = await cluster.appliedConfig();
      try {
        return saved ? await this.deploy(saved.text, saved.file) : undefined;
      } finally {
        await cluster.dropOrphans();
      }
    }
    let saved: { file: string; text: string };
    const dir = this.#options.stateDir;
    if (dir === undefined) return undefined;
    try {
      saved = JSON.parse(await readFile(join(dir, "applied.json"), "utf8")) as {
        file: string;
        text: string;
      };
    } catch {
      return undefined;
    }
    return this.deploy(saved.text, saved.file);
  }

  /** Every application's status, by name, and the front door's address. */
  async status(): Promise<Record<string, unknown>> {
    const applications: Record<string, unknown> = {};
    for (const [name, running] of this.#running) {
      const status = (await running.server.status()).applications[name];
      applications[name] = {
        ...status,
        lastDeploy: this.#lastDeploys.get(name),
        ...(this.#failedDeploys.has(name) && { lastDeployFailed: this.#failedDeploys.get(name) }),
      };
    }
    return {
      applications,
      ...(this.#options.cluster && { nodes: this.#options.cluster.nodes() }),
      url: this.#frontDoors?.url ?? null,
      ...(this.#frontDoors?.grpcPort !== undefined && { grpcPort: this.#frontDoors.grpcPort }),
      ...(this.#deploying && { deploying: this.#deploying }),
    };
  }

  /** @internal The process ids of the front-door workers that listen (none without `http.workers`). */
  frontDoorPids(): number[] {
    return this.#pool?.pool.pids() ?? [];
  }

  config(): { file: string; text: string } | undefined {
    return this.#applied && { file: this.#applied.file, text: this.#applied.text };
  }

  /** Starts the admin API; returns its address. */
  async listen(): Promise<string> {
    const { url, close } = await startAdminApi(this, {
      host: this.#options.adminHost,
      port: this.#options.adminPort,
      token: this.#options.adminToken,
    });
    this.#admin = close;
    return url;
  }

  /**
   * Drains and stops everything. Safe to call twice.
   *
   * `handOver` (a cluster's head stopped by a signal, as a restart or an upgrade stops it):
   * the head's own front doors stop taking requests and finish those in flight, and the
   * head gives back its lease, but the replicas on the nodes run on, for the next head to
   * adopt; nodes' front doors go on serving meanwhile. `tributary shutdown` stops them.
   */
  close(options: { handOver?: boolean } = {}): Promise<void> {
    const handOver = options.handOver === true && this.#options.cluster !== undefined;
    this.#closed ??= (async () => {
      // Followers of the log first: their open responses would hold the admin API's close.
      this.logs.close();
      await this.#admin?.();
      // The front doors stop taking requests at once; their connections close once the
      // application has drained (bounded by its gracefulShutdownTimeout).
      let drained!: () => void;
      const force = new Promise<void>((resolve) => (drained = resolve));
      const doors = this.#frontDoors?.close(force);
      const running = [...this.#running.values()];
      const longestDrain = Math.max(0, ...running.map((r) => drainMs(r.server.app)));
      let timer: NodeJS.Timeout | undefined;
      if (handOver) {
        // The replicas run on, so this head's calls in flight finish, bounded as a drain
        // is; then no more health checks, autoscaling or replacements: the next head's.
        timer = setTimeout(drained, longestDrain);
        await doors;
        for (const { server } of running) server.detach();
      } else {
        // What the front doors have in flight (a route's own code too) is answered while
        // the replicas still run, bounded by the longest drain; then the applications drain.
        if (this.#frontDoors)
          await withinDeadline(this.#frontDoors.idle(), Date.now() + longestDrain);
        await Promise.all(running.map(({ server }) => server.close()));
        timer = setTimeout(drained, 100);
        await doors;
      }
      clearTimeout(timer);
      await this.#traceExport?.close();
      // A head gives back its lease (a handing-over one keeps the placements: the next head
      // starts at once and adopts the replicas).
      await this.#options.cluster?.close();
      this.#stop();
    })();
    return this.#closed;
  }
}
