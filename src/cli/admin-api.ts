/**
 * The admin API of an instance (`tributary start`): deploy, status, config and shutdown,
 * on loopback by default, refusing what a web page could send (admin-guard.ts), and
 * behind a bearer token when one is set.
 */
import { timingSafeEqual } from "node:crypto";
import { isIP } from "node:net";
import Fastify from "fastify";
import { ConfigError } from "../config/load.js";
import { ERROR_CODES, TributaryError } from "../errors.js";
import { isWildcard, refusal } from "./admin-guard.js";
import type { Instance } from "./instance.js";
import { DASHBOARD_PAGE } from "../metrics/dashboard-page.js";
import { DASHBOARD_INTERVAL_MS } from "../metrics/dashboard.js";
import { listenFailed } from "../ingress/listen.js";

/** The largest configuration the admin API accepts. */
const ADMIN_BODY_LIMIT = 4 * 1024 * 1024;

/**
 * The status and code of an admin API error: a config that does not read is 400; a request
 * that is malformed, too large or of another type gets its 4xx; a deploy that failed or
 * conflicts is 409; anything else is 500.
 */
function adminError(error: unknown): { status: number; code: string } {
  if (error instanceof ConfigError) return { status: 400, code: error.code };
  if (error instanceof TributaryError) {
    const status = ERROR_CODES[error.code].httpStatus;
    return { status: status >= 400 && status < 500 ? status : 409, code: error.code };
  }
  const statusCode = (error as { statusCode?: unknown }).statusCode;
  if (typeof statusCode === "number" && statusCode >= 400 && statusCode < 500) {
    const code =
      statusCode === 413
        ? "PAYLOAD_TOO_LARGE"
        : statusCode === 415
          ? "UNSUPPORTED_MEDIA_TYPE"
          : "BAD_REQUEST";
    return { status: statusCode, code };
  }
  return { status: 500, code: "INTERNAL" };
}

/** Compares secrets in constant time. */
function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

export interface AdminApiOptions {
  readonly host: string;
  readonly port: number;
  readonly token: string | undefined;
}

/** Starts the admin API of `instance`; resolves with its address and how to stop it. */
export async function startAdminApi(
  instance: Pick<
    Instance,
    "deploy" | "status" | "config" | "close" | "metrics" | "dashboard" | "logs"
  >,
  options: AdminApiOptions,
): Promise<{ url: string; close: () => Promise<void> }> {
  const admin = Fastify({ logger: false, bodyLimit: ADMIN_BODY_LIMIT });
  // JSON only: Fastify's text/plain parser would take the bodies a web page can send.
  admin.removeAllContentTypeParsers();
  admin.addContentTypeParser(
    "application/json",
    { parseAs: "string" },
    admin.getDefaultJsonParser("error", "error"),
  );
  const token = options.token;
  const bound = options.host.toLowerCase();
  // A wildcard address has no one name to check against; a token is required there.
  const allowedHosts = isWildcard(bound) ? undefined : new Set([bound, "localhost"]);
  admin.addHook("onRequest", async (request, reply) => {
    void reply.header("x-request-id", request.id);
    const refused = refusal(request.headers, request.method, allowedHosts);
    if (refused) {
      return reply.code(refused.status).send({
        error: { code: refused.code, message: refused.message, requestId: request.id },
      });
    }
    if (token && !sameSecret(request.headers.authorization ?? "", `Bearer ${token}`)) {
      return reply.code(401).send({
        error: {
          code: "UNAUTHORIZED",
          message: "This admin API needs the instance's token.",
          requestId: request.id,
        },
      });
    }
    return undefined;
  });
  admin.setErrorHandler((error, request, reply) => {
    const { status, code } = adminError(error);
    const e = error as Error & { problems?: unknown };
    void reply.code(status).send({
      error: { code, message: e.message, requestId: request.id, problems: e.problems },
    });
  });
  admin.setNotFoundHandler((request, reply) =>
    reply.code(404).send({
      error: {
        code: "NOT_FOUND",
        message: `No route ${request.method} ${request.url.split("?")[0]}; the admin API answers GET /, GET /api/status, GET /api/config, PUT /api/deploy, GET /api/logs, GET /api/dashboard, GET /metrics and POST /api/shutdown.`,
        requestId: request.id,
      },
    }),
  );
  admin.put<{ Body: { file?: string; text?: string } }>("/api/deploy", async (request) => {
    const { file, text } = request.body ?? {};
    if (typeof text !== "string")
      throw new TributaryError("BAD_REQUEST", "A deploy needs { file, text }.");
    return instance.deploy(text, typeof file === "string" ? file : "serve.yaml");
  });
  admin.get("/api/status", async () => instance.status());
  admin.get(
    "/api/config",
    async (_request, reply) =>
      instance.config() ??
      reply.code(404).send({
        error: { code: "NOT_FOUND", message: "Nothing is deployed yet.", requestId: _request.id },
      }),
  );
  admin.get("/metrics", async (_request, reply) => {
    const { contentType, text } = await instance.metrics.exposition();
    return reply.type(contentType).send(text);
  });
  admin.get("/", (_request, reply) =>
    reply
      .type("text/html; charset=utf-8")
      .header(
        "content-security-policy",
        "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
      )
      .header("x-frame-options", "DENY")
      .send(DASHBOARD_PAGE),
  );
  admin.get("/api/dashboard", async () => instance.dashboard.view());
  // Server-sent events: the dashboard's view every second until the page goes away.
  const streams = new Set<() => void>();
  admin.get("/api/dashboard/events", (request, reply) => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
      connection: "keep-alive",
    });
    const push = (): void => {
      res.write(`data: ${JSON.stringify(instance.dashboard.view())}\n\n`);
    };
    push();
    const timer = setInterval(push, DASHBOARD_INTERVAL_MS);
    const end = (): void => {
      clearInterval(timer);
      streams.delete(end);
      res.end();
    };
    streams.add(end);
    request.raw.on("close", end);
  });
  // Recent log lines as NDJSON; with follow=true the response stays open and streams new ones.
  admin.get<{ Querystring: Record<string, string | undefined> }>(
    "/api/logs",
    async (request, reply) => {
      const { deployment, application, lines, follow } = request.query;
      const count = lines === undefined ? undefined : Number(lines);
      if (count !== undefined && (!Number.isInteger(count) || count < 0))
        throw new TributaryError("BAD_REQUEST", `lines must be a whole number (it is "${lines}").`);
      const filter = { deployment, application };
      const recent = instance.logs.recent(filter, count);
      if (recent.length === 0 && (deployment !== undefined || application !== undefined)) {
        // Nothing logged: a name served now (quiet so far), or one that is not (a typo).
        const served = (await instance.status()).applications as Record<
          string,
          { deployments?: Record<string, unknown> }
        >;
        const apps = Object.keys(served);
        const deployments = [
          ...new Set(Object.values(served).flatMap((a) => Object.keys(a.deployments ?? {}))),
        ];
        if (application !== undefined && !apps.includes(application))
          throw new TributaryError(
            "NOT_FOUND",
            `no application "${application}" runs here (running: ${apps.join(", ") || "none"}).`,
          );
        if (deployment !== undefined && !deployments.includes(deployment))
          throw new TributaryError(
            "NOT_FOUND",
            `no deployment "${deployment}" runs here (running: ${deployments.join(", ") || "none"}).`,
          );
      }
      if (follow !== "true" && follow !== "1")
        return reply.type("application/x-ndjson").send(recent.map((line) => `${line}\n`).join(""));
      reply.hijack();
      const raw = reply.raw;
      raw.writeHead(200, { "content-type": "application/x-ndjson", "cache-control": "no-cache" });
      for (const line of recent) raw.write(`${line}\n`);
      const stop = instance.logs.follow(
        filter,
        (line) => raw.write(`${line}\n`),
        () => raw.end(),
      );
      request.raw.on("close", stop);
      return reply;
    },
  );
  admin.post("/api/shutdown", async () => {
    setImmediate(() => void instance.close());
    return { shuttingDown: true };
  });
  await admin
    .listen({ host: options.host, port: options.port })
    .catch((error: unknown) =>
      listenFailed(error, "admin API", options.host, options.port, "--admin-port"),
    );
  const address = admin.server.address();
  const port = typeof address === "object" && address ? address.port : options.port;
  const host = isIP(options.host) === 6 ? `[${options.host}]` : options.host;
  return {
    url: `http://${host}:${port}`,
    close: () => {
      for (const end of [...streams]) end();
      return admin.close();
    },
  };
}
