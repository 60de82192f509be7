/**
 * The HTTP front door (Fastify): `POST {routePrefix}` runs the graph; the Open Inference
 * Protocol's REST routes live under `/v2`; `/openapi.json` describes both. Every response
 * carries `x-request-id`, and every error is `{ error: { code, message, requestId } }`.
 */
import { randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import multipart from "@fastify/multipart";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { extname } from "node:path";
import { assetRoutes, type Application } from "../app/application.js";
import { CancelledError, TributaryError } from "../errors.js";
import { CancelScope } from "../runtime/cancel.js";
import { httpError } from "./http-errors.js";
import { registerOipRoutes } from "./oip-http.js";
import { openApiDocument } from "./openapi.js";
import { jsonReplacer, isTypedArray } from "./tensors.js";
import type { IngressTarget } from "./target.js";
import { isAsyncIterable } from "../values.js";

export interface HttpOptions {
  readonly host: string;
  readonly port: number;
  /** Largest accepted body, in bytes. */
  readonly bodyLimit: number;
  /** Time allowed to receive a whole request (slow senders are cut off). */
  readonly readTimeoutMs: number;
  /** Time allowed for the pipeline to answer (504 after it). */
  readonly requestTimeoutMs: number | undefined;
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

/** Reads the request into the graph's input: JSON, raw bytes, or multipart fields. */
async function readInput(
  request: FastifyRequest,
  bytesField: string | undefined,
): Promise<unknown> {
  if (request.isMultipart()) {
    const fields: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
    try {
      for await (const part of request.parts()) {
        if (part.fieldname === "__proto__" || part.fieldname === "constructor") continue;
        fields[part.fieldname] =
          part.type === "file" ? new Uint8Array(await part.toBuffer()) : part.value;
      }
    } catch (error) {
      const e = error as { statusCode?: number; message?: string };
      if (e.statusCode === 413) throw error;
      throw new TributaryError(
        "BAD_REQUEST",
        `Malformed multipart body: ${e.message ?? String(error)}`,
      );
    }
    return { ...fields };
  }
  const body = request.body;
  if (body instanceof Uint8Array) return bytesField === undefined ? body : { [bytesField]: body };
  return body;
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

export async function startHttp(
  target: IngressTarget,
  options: HttpOptions,
): Promise<FastifyInstance> {
  const fastify = Fastify({
    logger: { level: options.logLevel, ...(options.logStream && { stream: options.logStream }) },
    bodyLimit: options.bodyLimit,
    // Node checks these deadlines every connectionsCheckingInterval (30 s by default), so a
    // slow sender (slowloris) is cut off about readTimeout after it connected.
    serverFactory: (handler) =>
      createServer(
        {
          requestTimeout: options.readTimeoutMs,
          headersTimeout: options.readTimeoutMs,
          connectionsCheckingInterval: Math.min(1_000, Math.max(100, options.readTimeoutMs / 2)),
        },
        handler,
      ),
    connectionTimeout: options.readTimeoutMs,
    genReqId: (req) => requestIdOf(req.headers["x-request-id"]),
    onProtoPoisoning: "error",
    onConstructorPoisoning: "error",
    return503OnClosing: true,
  });
  await fastify.register(multipart, {
    limits: { fileSize: options.bodyLimit, fieldSize: options.bodyLimit, parts: 1000 },
  });
  // JSON must be valid UTF-8 (no silent replacement characters), in no other charset.
  const parseJson = fastify.getDefaultJsonParser("error", "error");
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  fastify.addContentTypeParser(
    "application/json",
    { parseAs: "buffer", bodyLimit: options.bodyLimit },
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
      void parseJson(request, text, done);
    },
  );
  const bytes = { parseAs: "buffer" as const, bodyLimit: options.bodyLimit };
  const asBytes = (
    _req: FastifyRequest,
    body: Buffer,
    done: (err: Error | null, body?: unknown) => void,
  ): void => done(null, new Uint8Array(body.buffer, body.byteOffset, body.byteLength));
  fastify.addContentTypeParser("application/octet-stream", bytes, asBytes);
  fastify.addContentTypeParser(/^image\//, bytes, asBytes);

  fastify.addHook("onRequest", (request, reply, done) => {
    void reply.header("x-request-id", request.id);
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
    void reply.code(status).send(body);
  });
  fastify.setNotFoundHandler((request, reply) => {
    const message = `No route ${request.method} ${request.url.split("?")[0]}; this server answers POST ${target.app.routePrefix}, /v2/… and GET /openapi.json.`;
    void reply.code(404).send({ error: { code: "NOT_FOUND", message, requestId: request.id } });
  });

  const bytesField = target.bytesField;
  fastify.post(target.app.routePrefix, async (request, reply) => {
    const input = await readInput(request, bytesField);
    const cancel = new CancelScope();
    reply.raw.on("close", () => {
      if (!reply.raw.writableFinished) cancel.cancel(new CancelledError(`Request ${request.id}`));
    });
    const result = await target.call(input, {
      requestId: request.id,
      cancel,
      ...(options.requestTimeoutMs !== undefined && { timeout: options.requestTimeoutMs }),
    });
    return sendResult(reply, result);
  });
  await registerAssets(fastify, target.app);
  registerOipRoutes(fastify, target, options);
  const document = openApiDocument(target);
  fastify.get("/openapi.json", async () => document);

  await fastify.listen({ host: options.host, port: options.port });
  return fastify;
}
