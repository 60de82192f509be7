/**
 * The HTTP front door (Fastify): `POST {routePrefix}` runs the graph; the Open Inference
 * Protocol's REST routes live under `/v2`; `/openapi.json` describes both. Every response
 * carries `x-request-id`, and every error is `{ error: { code, message, requestId } }`.
 */
import { randomUUID } from "node:crypto";
import { Readable, Transform, type Duplex } from "node:stream";
import multipart from "@fastify/multipart";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { readFile } from "node:fs/promises";
import { createServer, type Server as HttpServer } from "node:http";
import { extname } from "node:path";
import { assetRoutes, type Application } from "../app/application.js";
import { CancelledError, ServerClosedError, TributaryError } from "../errors.js";
import { CancelScope } from "../data/cancel.js";
import { httpError } from "./http-errors.js";
import { nestsDeeperThan, readInput, tooLarge } from "./body.js";
import { registerOipRoutes } from "./oip-http.js";
import { openApiDocument } from "./openapi.js";
import { jsonReplacer, isTypedArray } from "./tensors.js";
import type { IngressTarget } from "./target.js";
import { isAsyncIterable } from "../values.js";

/** Settings a running front door applies to each new request: changing them drops nothing. */
export interface HttpSettings {
  /** Largest accepted body, in bytes (a multipart body's parts together). */
  bodyLimit: number;
  /** Time allowed to receive a whole request (slow senders are cut off). */
  readTimeoutMs: number;
  /** Time allowed for the pipeline to answer (504 after it). */
  requestTimeoutMs: number | undefined;
  /** Open connections at most; one more is answered 503 TOO_MANY_CONNECTIONS and closed. */
  maxConnections: number;
}

/** The deepest nesting of arrays and objects a JSON body may have. */
export const MAX_JSON_DEPTH = 400;

export interface HttpOptions extends Readonly<HttpSettings> {
  readonly host: string;
  readonly port: number;
  /** Error bodies include stack traces. */
  readonly debug: boolean;
  /** pino level of the request log (`warn` by default: errors and slow shutdowns). */
  readonly logLevel: string;
  /** Where log lines go (standard output by default). */
  readonly logStream?: { write(line: string): void } | undefined;
}

/** An incoming `x-request-id` is kept when it is short printable ASCII; else a new one. */
function requestIdOf(header: string | string[] | undefined): string {
  const value = Array.isArray(header) ? header[0] : header;
  return value && /^[\x21-\x7e]{1,128}$/.test(value) ? value : randomUUID();
}

/** Sends a graph result: bytes as octet-stream, streams as Server-Sent Events, the rest as JSON. */
function sendResult(reply: FastifyReply, result: unknown): FastifyReply {
  if (result instanceof Uint8Array || result instanceof ArrayBuffer) {
    const bytes =
      result instanceof ArrayBuffer
        ? Buffer.from(result)
        : Buffer.from(result.buffer, result.byteOffset, result.byteLength);
    return reply.type("application/octet-stream").send(bytes);
  }
  if (isAsyncIterable(result) && !isTypedArray(result)) {
    async function* events(): AsyncGenerator<string> {
      try {
        for await (const item of result as AsyncIterable<unknown>)
          yield `data: ${JSON.stringify(item, jsonReplacer)}\n\n`;
        yield "event: end\ndata: null\n\n";
      } catch (error) {
        const { body } = httpError(error, reply.request.id, false);
        yield `event: error\ndata: ${JSON.stringify(body)}\n\n`;
      }
    }
    return reply
      .type("text/event-stream")
      .header("cache-control", "no-cache")
      .send(Readable.from(events()));
  }
  return reply
    .type("application/json; charset=utf-8")
    .send(JSON.stringify(result ?? null, jsonReplacer));
}

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".webp": "image/webp",
  ".ico": "image/x-icon",
  ".txt": "text/plain; charset=utf-8",
};

/** The application's static files, read once, answered to GET under the route prefix. */
async function registerAssets(fastify: FastifyInstance, app: Application): Promise<void> {
  for (const [url, file] of Object.entries(assetRoutes(app.routePrefix, app.assets))) {
    const body = await readFile(file);
    const type = CONTENT_TYPES[extname(file).toLowerCase()] ?? "application/octet-stream";
    fastify.get(url, (_request, reply) =>
      reply.type(type).header("x-content-type-options", "nosniff").send(body),
    );
  }
}

/** A running HTTP front door. */
export interface HttpFrontDoor {
  readonly server: HttpServer;
  /** The settings in force; `apply` changes them for the requests that follow. */
  readonly settings: Readonly<HttpSettings>;
  apply(settings: HttpSettings): void;
  /**
   * Stops listening and answers new requests with 503 SERVER_CLOSED; requests in flight
   * finish until `force` resolves, then every connection is closed.
   */
  close(force?: Promise<void>): Promise<void>;
}

/** Sockets refused for going past maxConnections: their requests are not served. */
const refused = new WeakSet<object>();

/** Fastify's own body limit: the real one is `settings.bodyLimit`, checked as bodies stream. */
const NO_FASTIFY_LIMIT = Number.MAX_SAFE_INTEGER;

export async function startHttp(
  target: IngressTarget,
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
  const fastify = Fastify({
    logger: { level: options.logLevel, ...(options.logStream && { stream: options.logStream }) },
    bodyLimit: NO_FASTIFY_LIMIT,
    // Node checks these deadlines every connectionsCheckingInterval (30 s by default), so a
    // slow sender (slowloris) is cut off about readTimeout after it connected.
    serverFactory: (handler) => {
      const server = createServer(
        {
          requestTimeout: options.readTimeoutMs,
          headersTimeout: options.readTimeoutMs,
          connectionsCheckingInterval: Math.min(1_000, Math.max(100, options.readTimeoutMs / 2)),
        },
        handler,
      );
      // Past maxConnections a connection is told why (503 with the error body) and closed,
      // instead of being reset or exhausting the process's file descriptors.
      server.prependListener("connection", (socket: Duplex) => {
        connections++;
        socket.once("close", () => connections--);
        if (connections <= settings.maxConnections) return;
        refused.add(socket);
        const body = JSON.stringify({
          error: {
            code: "TOO_MANY_CONNECTIONS",
            message: `The server has ${settings.maxConnections} connections open (its maxConnections); retry later.`,
            requestId: randomUUID(),
          },
        });
        socket.on("error", () => undefined);
        socket.end(
          `HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json; charset=utf-8\r\n` +
            `retry-after: 1\r\nconnection: close\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
        );
        setTimeout(() => socket.destroy(), 1_000).unref();
      });
      return server;
    },
    connectionTimeout: options.readTimeoutMs,
    genReqId: (req) => requestIdOf(req.headers["x-request-id"]),
    onProtoPoisoning: "error",
    onConstructorPoisoning: "error",
    // Requests after close() get the documented error body (below), not Fastify's, and
    // idle connections stay until the drain ends so that none is reset mid-request.
    return503OnClosing: false,
    forceCloseConnections: false,
  });
  await fastify.register(multipart, {
    limits: { fileSize: options.bodyLimit, fieldSize: options.bodyLimit, parts: 1000 },
  });
  // Only the types this server reads: a text/plain body is a 415, not a schema violation.
  fastify.removeContentTypeParser("text/plain");
  // Bodies are bounded by the bodyLimit in force when they arrive, as they stream in.
  fastify.addHook("preParsing", async (request, _reply, payload) => {
    // (isMultipart() is not known yet: the content type parser runs after this hook.)
    if (/^multipart\//i.test(request.headers["content-type"] ?? "")) return payload; // counted part by part in readInput
    const limit = settings.bodyLimit;
    if (Number(request.headers["content-length"]) > limit) throw tooLarge(limit);
    let seen = 0;
    const counted = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        seen += chunk.length;
        callback(seen > limit ? tooLarge(limit) : null, chunk);
      },
    });
    payload.on("error", (error) => counted.destroy(error));
    return payload.pipe(counted);
  });
  // JSON must be valid UTF-8 (no silent replacement characters), in no other charset.
  const parseJson = fastify.getDefaultJsonParser("error", "error");
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  fastify.addContentTypeParser(
    "application/json",
    { parseAs: "buffer", bodyLimit: NO_FASTIFY_LIMIT },
    (request, body, done) => {
      const type = request.headers["content-type"] ?? "";
      const charset = /charset=([^;]+)/i.exec(type)?.[1]?.trim().toLowerCase();
      if (charset && charset !== "utf-8" && charset !== "utf8") {
        done(new TributaryError("UNSUPPORTED_MEDIA_TYPE", `JSON must be UTF-8, not ${charset}.`));
        return;
      }
      let text: string;
      try {
        text = utf8.decode(body as Buffer);
      } catch {
        done(new TributaryError("BAD_REQUEST", "The JSON body is not valid UTF-8."));
        return;
      }
      if (nestsDeeperThan(text, MAX_JSON_DEPTH)) {
        done(
          new TributaryError(
            "BAD_REQUEST",
            `The JSON body nests arrays and objects more than ${MAX_JSON_DEPTH} deep.`,
          ),
        );
        return;
      }
      void parseJson(request, text, done);
    },
  );
  const bytes = { parseAs: "buffer" as const, bodyLimit: NO_FASTIFY_LIMIT };
  const asBytes = (
    _req: FastifyRequest,
    body: Buffer,
    done: (err: Error | null, body?: unknown) => void,
  ): void => done(null, new Uint8Array(body.buffer, body.byteOffset, body.byteLength));
  fastify.addContentTypeParser("application/octet-stream", bytes, asBytes);
  fastify.addContentTypeParser(/^image\//, bytes, asBytes);

  fastify.addHook("onRequest", (request, reply, done) => {
    if (refused.has(request.raw.socket)) {
      reply.hijack(); // already answered with 503 TOO_MANY_CONNECTIONS
      request.raw.socket.destroy();
      return;
    }
    void reply.header("x-request-id", request.id);
    if (closing) {
      void reply.header("connection", "close");
      done(new ServerClosedError(`Application "${target.app.name}"`));
      return;
    }
    done();
  });
  fastify.setErrorHandler((error, request, reply) => {
    const { status, body, retryAfter } = httpError(
      error,
      request.id,
      options.debug,
      request.url.startsWith("/v2"),
    );
    if (status === 500) request.log.error({ err: error }, "request failed");
    else if (status >= 500)
      request.log.warn(
        { code: (body.error as { code?: string })?.code ?? body.code },
        "request refused",
      );
    if (retryAfter) void reply.header("retry-after", String(retryAfter));
    // The rest of a body too large is read and dropped, not kept (closing the connection
    // at once would reset it, and the client could lose this answer); readTimeout bounds it.
    if (status === 413) {
      request.raw.unpipe();
      request.raw.resume();
    }
    void reply.code(status).send(body);
  });
  fastify.setNotFoundHandler((request, reply) => {
    const message = `No route ${request.method} ${request.url.split("?")[0]}; this server answers POST ${target.app.routePrefix}, /v2/… and GET /openapi.json.`;
    void reply.code(404).send({ error: { code: "NOT_FOUND", message, requestId: request.id } });
  });

  const bytesField = target.bytesField;
  fastify.post(target.app.routePrefix, async (request, reply) => {
    const input = await readInput(request, bytesField, settings.bodyLimit);
    const cancel = new CancelScope();
    reply.raw.on("close", () => {
      if (!reply.raw.writableFinished) cancel.cancel(new CancelledError(`Request ${request.id}`));
    });
    const result = await target.call(input, {
      requestId: request.id,
      cancel,
      ...(settings.requestTimeoutMs !== undefined && { timeout: settings.requestTimeoutMs }),
    });
    return sendResult(reply, result);
  });
  await registerAssets(fastify, target.app);
  registerOipRoutes(fastify, target, settings);
  const document = openApiDocument(target);
  fastify.get("/openapi.json", async () => document);

  await fastify.listen({ host: options.host, port: options.port });
  const server = fastify.server;
  let closed: Promise<void> | undefined;
  return {
    server,
    settings,
    apply(next) {
      Object.assign(settings, next);
      server.requestTimeout = next.readTimeoutMs;
      server.headersTimeout = next.readTimeoutMs;
      server.setTimeout(next.readTimeoutMs);
    },
    close(force = Promise.resolve()) {
      closed ??= (async () => {
        closing = true;
        const stopped = fastify.close();
        await Promise.race([stopped, force]);
        server.closeAllConnections();
        await stopped;
      })();
      return closed;
    },
  };
}
