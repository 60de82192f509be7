/**
 * @internal What every Fastify instance of the front door shares: the root one (which
 * listens, and answers `/v2/…`, `/openapi.json` and unknown routes) and each application's
 * own: body limits checked as bodies stream in, strict JSON, bytes and multipart bodies,
 * `x-request-id`, 503 while closing, zod schemas for routes, and the one error envelope.
 */
import { randomUUID } from "node:crypto";
import { STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import { Transform } from "node:stream";
import multipart from "@fastify/multipart";
import {
  LogController,
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type RequestPayload,
  type FastifyRequest,
} from "fastify";
import { z } from "zod";
import { ServerClosedError, TributaryError, ValidationError } from "../errors.js";
import { nestsDeeperThan, tooLarge } from "./body.js";
import { httpError } from "./http-errors.js";
import { traceRequests } from "./server-spans.js";

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

/** What a multipart body may hold beyond `bodyLimit`: its parts' headers and boundaries. */
export const MULTIPART_FRAMING_BYTES = 256 * 1024;

/** The deepest nesting of arrays and objects a JSON body may have. */
export const MAX_JSON_DEPTH = 400;

/** Fastify's own body limit: the real one is `settings.bodyLimit`, checked as bodies stream. */
export const NO_FASTIFY_LIMIT = Number.MAX_SAFE_INTEGER;

/** An incoming `x-request-id` is kept when it is short printable ASCII; else a new one. */
export function requestIdOf(header: string | string[] | undefined): string {
  const value = Array.isArray(header) ? header[0] : header;
  return value && /^[\x21-\x7e]{1,128}$/.test(value) ? value : randomUUID();
}

/** The state a front door's instances read on every request. */
export interface DoorState {
  readonly settings: Readonly<HttpSettings>;
  readonly debug: boolean;
  /** Sockets refused for going past maxConnections: their requests are not served. */
  readonly refused: WeakSet<object>;
  /** True once the front door is closing: new requests get 503 SERVER_CLOSED. */
  closing(): boolean;
  /** What a closing front door names in its 503. */
  readonly closedLabel: () => string;
}

const REPLY = Symbol("tributary.reply");
type WithReply = { [REPLY]?: FastifyReply };

/**
 * The reply of `request`, for code that has only the request (routes' `app.call`). It is
 * kept on the request, not in a `WeakMap`: a `WeakMap` entry whose value (the reply)
 * references its key (the request) survives every young-generation collection, so each
 * request and reply was promoted to the old generation. Measured with bare Fastify and such
 * a map filled in a hook: scavenges of 8 ms instead of 0.3 ms, and 0.65× the requests/s.
 */
export function replyOf(request: FastifyRequest): FastifyReply | undefined {
  return (request as WithReply)[REPLY];
}

/** The levels a request's logger writes at. */
type Level = "fatal" | "error" | "warn" | "info" | "debug" | "trace";
/** The parts of pino's logger beyond Fastify's base logger that a request's logger passes on. */
type Logger = FastifyBaseLogger & {
  isLevelEnabled(level: string): boolean;
  bindings(): Record<string, unknown>;
  setBindings(bindings: Record<string, unknown>): void;
  flush(callback?: (error?: Error) => void): void;
  readonly levels: unknown;
  readonly levelVal: number;
  readonly msgPrefix: string | undefined;
  readonly version: string;
  readonly customLevels: unknown;
  readonly useLevelLabels: boolean;
};

/**
 * A request's logger, made a real child (with the request id bound) only when it writes a
 * line: pino's `child()` writes its bindings out as JSON at once, about 3 µs of every
 * request (measured on the no-op diamond), and at the default level (`warn`) most requests
 * never log a line. It answers what a pino logger does (the child once it exists, else the
 * parent it would be made from, as a child starts with its parent's level and settings).
 */
class RequestLogger {
  readonly #parent: Logger;
  readonly #bindings: Record<string, unknown>;
  #child: Logger | undefined;

  constructor(parent: Logger, bindings: Record<string, unknown>) {
    this.#parent = parent;
    this.#bindings = bindings;
  }

  #real(): Logger {
    return (this.#child ??= this.#parent.child(this.#bindings) as Logger);
  }

  /** The child if made, else the parent: for what a new child would read from it. */
  get #now(): Logger {
    return this.#child ?? this.#parent;
  }

  #write(level: Level, args: unknown[]): void {
    if (!this.#now.isLevelEnabled(level)) return;
    const child = this.#real();
    Reflect.apply(child[level], child, args);
  }

  get level(): string {
    return this.#now.level;
  }
  set level(level: string) {
    this.#real().level = level;
  }
  get levels(): unknown {
    return this.#now.levels;
  }
  get levelVal(): number {
    return this.#now.levelVal;
  }
  get msgPrefix(): string | undefined {
    return this.#now.msgPrefix;
  }
  get version(): string {
    return this.#now.version;
  }
  get customLevels(): unknown {
    return this.#now.customLevels;
  }
  get useLevelLabels(): boolean {
    return this.#now.useLevelLabels;
  }
  isLevelEnabled(level: string): boolean {
    return this.#now.isLevelEnabled(level);
  }
  bindings(): Record<string, unknown> {
    return this.#real().bindings();
  }
  setBindings(bindings: Record<string, unknown>): void {
    this.#real().setBindings(bindings);
  }
  flush(callback?: (error?: Error) => void): void {
    this.#now.flush(callback);
  }
  fatal(...args: unknown[]): void {
    this.#write("fatal", args);
  }
  error(...args: unknown[]): void {
    this.#write("error", args);
  }
  warn(...args: unknown[]): void {
    this.#write("warn", args);
  }
  info(...args: unknown[]): void {
    this.#write("info", args);
  }
  debug(...args: unknown[]): void {
    this.#write("debug", args);
  }
  trace(...args: unknown[]): void {
    this.#write("trace", args);
  }
  silent(): void {}
  child(bindings: Record<string, unknown>, options?: object): FastifyBaseLogger {
    return this.#real().child(bindings, options);
  }
}

/** The longest path parameter Fastify routes (its default is 100). */
const MAX_PARAM_LENGTH = 1_024;

/** The Fastify options every instance of the front door shares. */
export const sharedFastifyOptions = {
  bodyLimit: NO_FASTIFY_LIMIT,
  genReqId: (req: { headers: Record<string, string | string[] | undefined> }) =>
    requestIdOf(req.headers["x-request-id"]),
  // The request log's lines name the request as the replicas' lines do.
  logController: new LogController({ requestIdLogLabel: "requestId" }),
  // A route's own log options (`logLevel`, `logSerializers`) make a real child at once.
  childLoggerFactory: (
    logger: FastifyBaseLogger,
    bindings: Record<string, unknown>,
    options: object,
  ): FastifyBaseLogger =>
    Object.keys(options).length > 0
      ? logger.child(bindings, options)
      : new RequestLogger(logger as Logger, bindings),
  onProtoPoisoning: "error",
  onConstructorPoisoning: "error",
  // Requests after close() get the documented error body (below), not Fastify's, and
  // idle connections stay until the drain ends so that none is reset mid-request.
  return503OnClosing: false,
  forceCloseConnections: false,
  // A path parameter (an OIP model name or version, a route's :id) up to this long is
  // routed, so that its own check answers it (a version over 128 characters is a 422).
  routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
  // Errors Fastify's router meets before any route: a path that is not valid URL encoding,
  // a parameter past maxParamLength. Answered with the error envelope and request id.
  frameworkErrors: (error: Error, request: FastifyRequest, reply: FastifyReply): void => {
    const message =
      (error as { code?: string }).code === "FST_ERR_MAX_PARAM_LENGTH"
        ? `A part of the path is longer than ${MAX_PARAM_LENGTH} characters.`
        : `The path ${JSON.stringify(request.url.split("?")[0])} is not valid URL encoding.`;
    const { status, body } = httpError(
      new TributaryError("BAD_REQUEST", message),
      request.id,
      false,
      request.url.startsWith("/v2"),
    );
    void reply.header("x-request-id", request.id).code(status).send(body);
  },
  // Requests Node's HTTP parser refuses (headers past 16 KiB, a malformed request, one not
  // received within readTimeout): its status, the error envelope, a request id; then the
  // connection closes, as Node's own answer does.
  clientErrorHandler: (error: Error & { code?: string }, socket: Duplex): void => {
    if (error.code === "ECONNRESET" || socket.destroyed) return;
    // Not into a response already under way (a keep-alive connection's), as Node's own.
    const current = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (socket.writable && !current?.headersSent) {
      const [status, message] =
        error.code === "ERR_HTTP_REQUEST_TIMEOUT"
          ? [408, "The request was not received within the server's readTimeout."]
          : error.code === "HPE_HEADER_OVERFLOW"
            ? [431, "The request's headers are larger than 16 KiB."]
            : [400, `The request is not valid HTTP/1.1 (${error.code ?? error.message}).`];
      const requestId = randomUUID();
      const body = JSON.stringify({ error: { code: "BAD_REQUEST", message, requestId } });
      socket.write(
        `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\n` +
          `x-request-id: ${requestId}\r\nconnection: close\r\n` +
          `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    }
    socket.destroy(error);
  },
} as const;

/** zod issues of one part of a request as validation issues: `params.id`, `query.q`. */
function zodValidator(part: string, schema: z.ZodType) {
  const prefix = part === "querystring" ? "query" : part;
  return (data: unknown): { value?: unknown; error?: Error } => {
    const result = schema.safeParse(data);
    if (result.success) return { value: result.data };
    return {
      error: new ValidationError(
        result.error.issues.map((issue) => ({
          path: [prefix, ...issue.path.map(String)].join("."),
          message: issue.message,
        })),
        `The request's ${prefix} failed its schema`,
      ),
    };
  };
}

/**
 * An error as the request log writes it. pino's serializer adds each cause's message to
 * the error's, which a `GraphExecutionError` already quotes ("failed in run(): boom: boom"):
 * the cause is written beside it instead, as `causedBy`.
 */
function loggedError(error: unknown): unknown {
  if (!(error instanceof Error) || !(error.cause instanceof Error)) return error;
  const { cause } = error;
  return {
    type: error.name,
    message: error.message,
    ...((error as { code?: unknown }).code !== undefined && {
      code: (error as { code?: unknown }).code,
    }),
    stack: error.stack,
    // Not `cause`: pino's serializer would append its message to this one again.
    causedBy: { type: cause.name, message: cause.message, stack: cause.stack },
  };
}

/** A 415 that says what was sent and what this server's content type parsers read. */
const unsupportedType = (request: FastifyRequest): TributaryError =>
  new TributaryError(
    "UNSUPPORTED_MEDIA_TYPE",
    `Unsupported content type ${JSON.stringify(request.headers["content-type"] ?? "")}: this server reads application/json (UTF-8), application/octet-stream, image/* and multipart/form-data.`,
  );

/**
 * `payload`, refused when its declared length is past `limit`, or counted as it streams in
 * when it has none (chunked); throws for a compressed body.
 */
function boundedBody(
  request: FastifyRequest,
  payload: RequestPayload,
  limit: number,
): RequestPayload {
  // A compressed body would be read as what it is not ("not valid UTF-8", bytes as given).
  const encoding = request.headers["content-encoding"];
  if (encoding !== undefined && encoding.trim().toLowerCase() !== "identity")
    throw new TributaryError(
      "UNSUPPORTED_MEDIA_TYPE",
      `Content-Encoding ${JSON.stringify(encoding)} is not supported: send the body uncompressed.`,
    );
  const declared = request.headers["content-length"];
  // (isMultipart() is not known yet: the content type parser runs after this hook.) A
  // multipart body's parts are counted together as the default route reads them (body.ts);
  // a route of one's own reads them itself, so the whole body's declared length is checked
  // here too, with room for the parts' headers and boundaries.
  if (/^multipart\//i.test(request.headers["content-type"] ?? "")) {
    if (Number(declared) > limit + MULTIPART_FRAMING_BYTES) throw tooLarge(limit);
    return payload;
  }
  if (Number(declared) > limit) throw tooLarge(limit);
  // A body with a Content-Length (and no Transfer-Encoding) is exactly that long: Node's
  // parser reads no more. Only a chunked body is counted as it streams in.
  if (declared !== undefined && request.headers["transfer-encoding"] === undefined) return payload;
  let seen = 0;
  const counted = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      seen += chunk.length;
      callback(seen > limit ? tooLarge(limit) : null, chunk);
    },
  });
  payload.on("error", (error: Error) => counted.destroy(error));
  return payload.pipe(counted);
}

export async function configureFastify(fastify: FastifyInstance, state: DoorState): Promise<void> {
  const { settings } = state;
  await fastify.register(multipart, {
    limits: { fileSize: settings.bodyLimit, fieldSize: settings.bodyLimit, parts: 1000 },
  });
  // Route schemas are zod schemas (a JSON schema is not checked).
  fastify.setValidatorCompiler(({ schema, httpPart }) =>
    schema instanceof z.ZodType ? zodValidator(httpPart ?? "body", schema) : () => true,
  );
  // Response schemas document and type a route; the answer is JSON as written.
  fastify.setSerializerCompiler(() => (data) => JSON.stringify(data));
  // Only the types this server reads: a text/plain body is a 415, not a schema violation.
  fastify.removeContentTypeParser("text/plain");
  // Bodies are bounded by the bodyLimit in force when they arrive, as they stream in.
  // A callback, not an async function: one promise less on every request.
  fastify.addHook("preParsing", (request, _reply, payload, done) => {
    let checked: RequestPayload;
    try {
      checked = boundedBody(request, payload, settings.bodyLimit);
    } catch (error) {
      done(error as Error);
      return;
    }
    done(null, checked);
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
    if (state.refused.has(request.raw.socket)) {
      reply.hijack(); // already answered with 503 TOO_MANY_CONNECTIONS
      request.raw.socket.destroy();
      return;
    }
    (request as WithReply)[REPLY] = reply;
    void reply.header("x-request-id", request.id);
    if (state.closing()) {
      void reply.header("connection", "close");
      done(new ServerClosedError(state.closedLabel()));
      return;
    }
    done();
  });
  // After the hook above: a refused or closing request gets no span.
  traceRequests(fastify);
  fastify.setErrorHandler((error, request, reply) => {
    const { status, body, retryAfter } = httpError(
      (error as { code?: unknown }).code === "FST_ERR_CTP_INVALID_MEDIA_TYPE"
        ? unsupportedType(request)
        : error,
      request.id,
      state.debug,
      request.url.startsWith("/v2"),
      // A route's reply.code(409).send(error) keeps its status, as in Fastify.
      reply.statusCode,
    );
    if (status === 500) request.log.error({ err: loggedError(error) }, "request failed");
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
}
