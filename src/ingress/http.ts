/**
 * The HTTP front door (Fastify). One listener serves every application: a request under an
 * application's route prefix (the longest that matches) goes to that application's own
 * Fastify instance (app-door.ts: `POST {routePrefix}`, its assets and its own routes); the
 * Open Inference Protocol's REST routes under `/v2`, `/openapi.json` and unknown routes are
 * answered here. Every response carries `x-request-id`, and every error is
 * `{ error: { code, message, requestId } }`.
 */
import { randomUUID } from "node:crypto";
import type { Duplex } from "node:stream";
import Fastify, { type FastifyReply, type FastifyRequest } from "fastify";
import { createServer, type Server as HttpServer } from "node:http";
import { doorFits, mountApplication, type AppDoor } from "./app-door.js";
import {
  configureFastify,
  sharedFastifyOptions,
  type DoorState,
  type HttpSettings,
} from "./fastify-setup.js";
import { registerOipRoutes } from "./oip-http.js";
import { openApiDocument } from "./openapi.js";
import type { IngressTarget, IngressTargets } from "./target.js";
import type { FrontDoorMetrics } from "../metrics/metrics.js";
import { listenFailed, PORT_SETTINGS } from "./listen.js";
import { httpStatusOf, NotFoundError } from "../errors.js";
import { httpError } from "./http-errors.js";

/** The methods a 405's Allow header may name. */
const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] as const;

export { MAX_JSON_DEPTH, type HttpSettings } from "./fastify-setup.js";

export interface HttpOptions extends Readonly<HttpSettings> {
  readonly host: string;
  readonly port: number;
  /** Error bodies include stack traces. */
  readonly debug: boolean;
  /** pino level of the request log (`warn` by default: errors and slow shutdowns). */
  readonly logLevel: string;
  /** Where log lines go (standard output by default). */
  readonly logStream?: { write(line: string): void } | undefined;
  /** Counts every request and answers `GET /metrics`; without it `/metrics` is a 404. */
  readonly metrics?: FrontDoorMetrics | undefined;
}

/** A running HTTP front door. */
export interface HttpFrontDoor {
  readonly server: HttpServer;
  /** The settings in force; `apply` changes them for the requests that follow. */
  readonly settings: Readonly<HttpSettings>;
  apply(settings: HttpSettings): void;
  /**
   * Builds the routes of an application (again, if its prefix, routes or assets changed),
   * before it is listed among the targets. Rejects when its routes cannot be declared.
   * Routes of applications no longer listed go, except those in `keep` (others mounted in
   * the same change, not listed yet either).
   */
  mount(target: IngressTarget, keep?: ReadonlySet<IngressTarget>): Promise<void>;
  /**
   * Stops listening and answers new requests with 503 SERVER_CLOSED; requests in flight
   * finish until `force` resolves, then every connection is closed.
   */
  close(force?: Promise<void>): Promise<void>;
  /** Resolves once no request is in flight (after `close`, none comes any more). */
  idle(): Promise<void>;
}

/** How often a closing front door closes the connections that have gone idle. */
const IDLE_SWEEP_MS = 50;

/** Paths the front door itself answers, whatever the applications' prefixes. */
const isReserved = (path: string): boolean =>
  path === "/openapi.json" || path === "/metrics" || path === "/v2" || path.startsWith("/v2/");

/** Whether `path` lies under `prefix` (at a segment boundary). */
function under(path: string, prefix: string): boolean {
  const bare = prefix.endsWith("/") ? prefix.replace(/\/+$/, "") : prefix;
  return bare === "" || path === bare || (path.startsWith(bare) && path[bare.length] === "/");
}

/** The application whose route prefix is the longest that `path` lies under. */
function targetFor(targets: IngressTargets, path: string): IngressTarget | undefined {
  let best: IngressTarget | undefined;
  for (const target of targets.list()) {
    const prefix = target.app.routePrefix;
    if (under(path, prefix) && (!best || prefix.length > best.app.routePrefix.length))
      best = target;
  }
  return best;
}

/** The application an Open Inference Protocol path names (`/v2/models/{app}/…`), if served. */
function oipApplication(targets: IngressTargets, path: string): string {
  const match = /^\/v2\/models\/([^/]+)/.exec(path);
  if (!match) return "";
  let name: string;
  try {
    name = decodeURIComponent(match[1]!);
  } catch {
    return "";
  }
  return targets.list().some((t) => t.app.name === name) ? name : "";
}

/** How long a replaced application's routes stay, for the requests they still serve. */
const RETIRE_MS = 30_000;

/** The code a request whose client closed its connection before the answer counts under. */
const CLIENT_CLOSED = 499;
const TOO_MANY_CONNECTIONS = httpStatusOf("TOO_MANY_CONNECTIONS");

export async function startHttp(
  targets: IngressTargets,
  options: HttpOptions,
): Promise<HttpFrontDoor> {
  const settings: HttpSettings = {
    bodyLimit: options.bodyLimit,
    readTimeoutMs: options.readTimeoutMs,
    requestTimeoutMs: options.requestTimeoutMs,
    maxConnections: options.maxConnections,
  };
  let closing = false;
  let connections = 0;
  const state: DoorState = {
    settings,
    debug: options.debug,
    refused: new WeakSet(),
    closing: () => closing,
    closedLabel: () => {
      const list = targets.list();
      return list.length === 1 ? `Application "${list[0]!.app.name}"` : "The server";
    },
  };
  const doors = new Map<IngressTarget, AppDoor>();
  const dispatch = (path: string): AppDoor | undefined => {
    if (isReserved(path)) return undefined;
    const target = targetFor(targets, path);
    return target && doors.get(target);
  };
  const metrics = options.metrics;
  /** Requests whose answer has not ended, and who waits for there to be none. */
  let inFlight = 0;
  const whenIdle: (() => void)[] = [];
  const fastify = Fastify({
    ...sharedFastifyOptions,
    logger: { level: options.logLevel, ...(options.logStream && { stream: options.logStream }) },
    // Node checks these deadlines every connectionsCheckingInterval (30 s by default), so a
    // slow sender (slowloris) is cut off about readTimeout after it connected.
    serverFactory: (handler) => {
      const server = createServer(
        {
          requestTimeout: options.readTimeoutMs,
          headersTimeout: options.readTimeoutMs,
          connectionsCheckingInterval: Math.min(1_000, Math.max(100, options.readTimeoutMs / 2)),
        },
        (req, res) => {
          inFlight++;
          const path = (req.url ?? "/").split("?")[0]!;
          const door = dispatch(path);
          // The application is known before routing; the answer's code once it is sent. A
          // client that went away before its answer was sent counts as 499 (the code of
          // CANCELLED, nginx's "client closed request"); one past maxConnections, as the
          // 503 it was written.
          const application = !metrics
            ? ""
            : door
              ? door.app.name
              : path.startsWith("/v2/")
                ? oipApplication(targets, path)
                : "";
          const start = metrics ? performance.now() : 0;
          // One listener for both (each `once` costs a wrapper and its removal).
          res.on("close", () => {
            if (metrics)
              metrics.http(
                application,
                res.writableFinished
                  ? res.statusCode
                  : state.refused.has(req.socket)
                    ? TOO_MANY_CONNECTIONS
                    : CLIENT_CLOSED,
                (performance.now() - start) / 1000,
              );
            if (--inFlight === 0) for (const resolve of whenIdle.splice(0)) resolve();
          });
          if (door) door.fastify.routing(req, res);
          else handler(req, res);
        },
      );
      // Past maxConnections a connection is told why (503 with the error body) and closed,
      // instead of being reset or exhausting the process's file descriptors.
      server.prependListener("connection", (socket: Duplex) => {
        connections++;
        socket.once("close", () => connections--);
        if (connections <= settings.maxConnections) return;
        state.refused.add(socket);
        const requestId = randomUUID();
        const body = JSON.stringify({
          error: {
            code: "TOO_MANY_CONNECTIONS",
            message: `The server has ${settings.maxConnections} connections open (its maxConnections); retry later.`,
            requestId,
          },
        });
        socket.on("error", () => undefined);
        socket.end(
          `HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json; charset=utf-8\r\n` +
            `x-request-id: ${requestId}\r\nretry-after: 1\r\nconnection: close\r\n` +
            `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
        );
        setTimeout(() => socket.destroy(), 1_000).unref();
      });
      return server;
    },
  });
  await configureFastify(fastify, state);
  const notFound = (request: FastifyRequest, reply: FastifyReply): void => {
    const path = request.url.split("?")[0]!;
    // Under /v2 in the inference protocol's envelope, as its other errors are.
    const answer = (error: Error): void => {
      const { status, body } = httpError(error, request.id, false, path.startsWith("/v2"));
      void reply.code(status).send(body);
    };
    // A path that another method takes (a fixed one: the application's POST, its own routes
    // without parameters, /v2's): 405 with Allow, as RFC 9110 and Ray Serve's proxy answer.
    const owner = dispatch(path)?.fastify ?? fastify;
    const allow = METHODS.filter((method) => owner.hasRoute({ method, url: path }));
    if (allow.length > 0) {
      void reply.header("allow", allow.join(", "));
      const text = `${request.method} ${path} is not allowed; it takes ${allow.join(", ")}.`;
      answer(Object.assign(new Error(text), { statusCode: 405 }));
      return;
    }
    const routes = targets
      .list()
      .map((t) => {
        const door = doors.get(t);
        const own = door?.routes.map((r) => `${r.method} ${r.url}`) ?? [];
        return [...(door?.defaultRoute === false ? [] : [`POST ${t.app.routePrefix}`]), ...own];
      })
      .flat()
      .filter((route, i, all) => !route.startsWith("HEAD ") && all.indexOf(route) === i);
    answer(
      new NotFoundError(
        `No route ${request.method} ${path}; this server answers ${[...routes, "/v2/…", "GET /openapi.json", ...(metrics ? ["GET /metrics"] : [])].join(", ")}.`,
      ),
    );
  };
  fastify.setNotFoundHandler(notFound);
  registerOipRoutes(fastify, targets, settings);
  fastify.get("/openapi.json", async () => openApiDocument(targets, (t) => doors.get(t)));
  if (metrics) {
    fastify.get("/metrics", async (_request, reply) => {
      const { contentType, text } = await metrics.exposition();
      return reply.type(contentType).send(text);
    });
  }

  const mount = async (target: IngressTarget, keep?: ReadonlySet<IngressTarget>): Promise<void> => {
    const current = doors.get(target);
    if (!current || !doorFits(current, target.app)) {
      doors.set(target, await mountApplication(target, state, fastify.log, notFound));
      if (current) setTimeout(() => void current.fastify.close(), RETIRE_MS).unref();
    }
    // Applications no longer served: their routes go (after the requests they still serve).
    const served = new Set(targets.list());
    for (const [old, door] of doors) {
      if (old === target || served.has(old) || keep?.has(old)) continue;
      doors.delete(old);
      setTimeout(() => void door.fastify.close(), RETIRE_MS).unref();
    }
  };
  for (const target of targets.list()) await mount(target);

  await fastify
    .listen({ host: options.host, port: options.port })
    .catch((error: unknown) =>
      listenFailed(error, "HTTP", options.host, options.port, PORT_SETTINGS.HTTP),
    );
  const server = fastify.server;
  let closed: Promise<void> | undefined;
  return {
    server,
    settings,
    mount,
    apply(next) {
      Object.assign(settings, next);
      // Receiving a request only: no idle timeout on the socket, which would also cut off a
      // call that runs longer than readTimeout (requestTimeout bounds those).
      server.requestTimeout = next.readTimeoutMs;
      server.headersTimeout = next.readTimeoutMs;
    },
    close(force = Promise.resolve()) {
      closed ??= (async () => {
        closing = true;
        const stopped = fastify.close();
        // Node closes the connections idle when it stops listening; one whose answer ends
        // later would stay open until its keep-alive timeout: each is closed once idle.
        const idler = setInterval(() => server.closeIdleConnections(), IDLE_SWEEP_MS);
        await Promise.race([stopped, force]);
        clearInterval(idler);
        server.closeAllConnections();
        await stopped;
        await Promise.all([...doors.values()].map((door) => door.fastify.close()));
      })();
      return closed;
    },
    idle: () =>
      inFlight === 0 ? Promise.resolve() : new Promise<void>((resolve) => whenIdle.push(resolve)),
  };
}
