/**
 * @internal The HTTP (and, when asked, gRPC) front doors of a target. Settings that need no
 * new listener (`requestTimeout`, `readTimeout`, `bodyLimit`, `maxConnections`) are applied
 * to a running front door without dropping a connection.
 */
import { toMilliseconds } from "../options.js";
import type { HttpFrontDoor, HttpSettings } from "../ingress/http.js";
import type { GrpcFrontDoor } from "../ingress/grpc.js";
import { singleTarget, type IngressTarget, type IngressTargets } from "../ingress/target.js";
import type { RunOptions } from "./server.js";
import { requirePackages } from "../optional-package.js";
import type { FrontDoorMetrics } from "../metrics/metrics.js";

/**
 * Throws MISSING_PACKAGE unless the gRPC front door's optional peer dependencies are
 * installed (`run()` asks before any replica starts).
 */
export function requireGrpcPackages(): void {
  requirePackages("gRPC (the grpc option)", ["@grpc/grpc-js", "@grpc/proto-loader"]);
}

/** Where the front doors listen unless told (`run()`'s and the YAML's defaults). */
export const LISTEN_DEFAULTS = { host: "127.0.0.1", port: 8000, grpcPort: 9000 } as const;

/** The defaults of the front doors' limits (README, "Limits"). */
export const FRONT_DOOR_DEFAULTS = {
  bodyLimit: 16 * 1024 * 1024,
  readTimeout: "30s",
  /** Below the usual 1,024 file descriptors, leaving room for replicas, logs and gRPC. */
  maxConnections: 900,
} as const;

export interface FrontDoors {
  readonly url: string;
  readonly grpcPort: number | undefined;
  /**
   * Applies `options` in place. Resolves with the names of the settings that changed, or
   * `undefined` when the listeners themselves must change (host, port or gRPC port): then
   * nothing was applied.
   */
  update(options: RunOptions): Promise<string[] | undefined>;
  /**
   * Builds an application's HTTP routes before it is listed among the targets (see
   * http.ts); `keep`: others mounted in the same change, not listed yet either.
   */
  mount(target: IngressTarget, keep?: ReadonlySet<IngressTarget>): Promise<void>;
  /** Stops taking requests; closes the connections once `force` resolves. */
  close(force?: Promise<void>): Promise<void>;
  /**
   * Resolves once no HTTP request is in flight (a route's own code included). A shutdown
   * waits for it, bounded, before it stops the replicas; gRPC calls run the graph, which
   * the shutdown waits for anyway (an idle gRPC stream is not waited for).
   */
  idle(): Promise<void>;
}

function httpSettings(options: RunOptions): HttpSettings {
  return {
    bodyLimit: options.bodyLimit ?? FRONT_DOOR_DEFAULTS.bodyLimit,
    readTimeoutMs: toMilliseconds(options.readTimeout ?? FRONT_DOOR_DEFAULTS.readTimeout),
    requestTimeoutMs:
      options.requestTimeout === undefined ? undefined : toMilliseconds(options.requestTimeout),
    maxConnections: options.maxConnections ?? FRONT_DOOR_DEFAULTS.maxConnections,
  };
}

/** What the listeners are: a change here needs new ones. */
const listenerKey = (options: RunOptions): string =>
  JSON.stringify([
    options.host ?? LISTEN_DEFAULTS.host,
    options.port ?? LISTEN_DEFAULTS.port,
    options.grpc?.port ?? null,
  ]);

const SETTING_NAMES: Record<keyof HttpSettings, string> = {
  bodyLimit: "bodyLimit",
  readTimeoutMs: "readTimeout",
  requestTimeoutMs: "requestTimeout",
  maxConnections: "maxConnections",
};

export async function startFrontDoors(
  served: IngressTarget | IngressTargets,
  options: RunOptions,
  metrics?: FrontDoorMetrics,
): Promise<FrontDoors> {
  const targets = "list" in served ? served : singleTarget(served);
  const host = options.host ?? LISTEN_DEFAULTS.host;
  const initial = httpSettings(options);
  // The front doors load only where they serve: replicas import this module too.
  const { startHttp } = await import("../ingress/http.js");
  const http: HttpFrontDoor = await startHttp(targets, {
    host,
    port: options.port ?? LISTEN_DEFAULTS.port,
    ...initial,
    debug: options.debug ?? false,
    logLevel: options.logLevel ?? "warn",
    logStream: options.logStream,
    metrics,
  });
  const address = http.server.address();
  const port = typeof address === "object" && address ? address.port : options.port;
  const key = listenerKey(options);
  let grpc: GrpcFrontDoor | undefined;
  try {
    if (options.grpc) {
      requireGrpcPackages();
      const { startGrpc } = await import("../ingress/grpc.js");
      grpc = await startGrpc(targets, {
        host,
        port: options.grpc.port ?? LISTEN_DEFAULTS.grpcPort,
        maxMessageBytes: initial.bodyLimit,
        requestTimeoutMs: () => http.settings.requestTimeoutMs,
        metrics,
      });
    }
  } catch (error) {
    await http.close();
    throw error;
  }
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${port}`,
    grpcPort: grpc?.port,
    mount: (target, keep) => http.mount(target, keep),
    async update(next) {
      if (listenerKey(next) !== key) return undefined;
      const settings = httpSettings(next);
      const changed = (Object.keys(settings) as (keyof HttpSettings)[])
        .filter((name) => settings[name] !== http.settings[name])
        .map((name) => SETTING_NAMES[name]);
      http.apply(settings);
      // The gRPC listener stays: its calls from now on take the new message limit.
      grpc?.setMaxMessageBytes(settings.bodyLimit);
      return changed;
    },
    close: async (force) => {
      await Promise.all([http.close(force), grpc?.close(force)]);
    },
    idle: () => http.idle(),
  };
}
