/**
 * @internal One application's part of the HTTP front door: a Fastify instance of its own
 * (it never listens; the front door hands it the requests under its route prefix) with
 * `POST {routePrefix}`, its assets, and the routes the application declared. Each
 * application having its own instance is what lets an instance add, replace and remove
 * applications while the listener and its connections stay.
 */
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { extname } from "node:path";
import { Readable } from "node:stream";
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from "fastify";
import { assetRoutes, type Application } from "../app/application.js";
import type { RouteContext, ZodTypeProvider } from "../app/routes.js";
import type { DeploymentHandle } from "../dag/types.js";
import { CancelledError, NotFoundError, TributaryError } from "../errors.js";
import { CancelScope } from "../data/cancel.js";
import { isAsyncIterable } from "../values.js";
import { headerReader, readInput } from "./body.js";
import {
  configureFastify,
  replyOf,
  sharedFastifyOptions,
  type DoorState,
} from "./fastify-setup.js";
import { httpError } from "./http-errors.js";
import { MODEL_ID_HEADER, modelIdOf } from "./model-id.js";
import { objectShape } from "./oip.js";
import { requestTraceparent, traceRouteHandlers } from "./server-spans.js";
import type { DeclaredRoute, MountedRoutes } from "./openapi.js";
import type { IngressTarget } from "./target.js";
import { isTypedArray, jsonText } from "./tensors.js";

/**
 * Sends a graph result: bytes as octet-stream, streams as Server-Sent Events, the rest as
 * JSON. A stream's headers go with its first item, so a stream that fails before it (a
 * timeout, an error, a replica that died) is answered with that error's status; one that
 * fails later ends with an `event: error` carrying the error body. Returns `reply` (for a
 * stream, before it is sent: an async handler returning it waits for the answer).
 */
export function sendResult(reply: FastifyReply, result: unknown): FastifyReply {
  if (result instanceof Uint8Array || result instanceof ArrayBuffer) {
    const bytes =
      result instanceof ArrayBuffer
        ? Buffer.from(result)
        : Buffer.from(result.buffer, result.byteOffset, result.byteLength);
    return reply.type("application/octet-stream").send(bytes);
  }
  if (isAsyncIterable(result) && !isTypedArray(result)) {
    void sendStream(reply, result);
    return reply;
  }
  return reply.type("application/json; charset=utf-8").send(jsonText(result ?? null));
}

async function sendStream(reply: FastifyReply, stream: AsyncIterable<unknown>): Promise<void> {
  const iterator = stream[Symbol.asyncIterator]();
  /** Set once the stream has ended, or was stopped: it is returned at most once. */
  let over = false;
  const stop = (): void => {
    if (over) return;
    over = true;
    void Promise.resolve()
      .then(() => iterator.return?.())
      .catch(() => undefined);
  };
  // The client going away stops the deployment's stream (and its call ends), whenever it
  // goes: before the first item too, when no body is being sent yet.
  reply.raw.once("close", () => {
    if (!reply.raw.writableFinished) stop();
  });
  let first: IteratorResult<unknown>;
  try {
    first = await iterator.next();
  } catch (error) {
    over = true;
    reply.send(error instanceof Error ? error : new Error(String(error)));
    return;
  }
  if (over || reply.raw.destroyed) {
    stop();
    return;
  }
  async function* events(): AsyncGenerator<string> {
    try {
      for (let next = first; !next.done; next = await iterator.next())
        yield `data: ${jsonText(next.value)}\n\n`;
      over = true;
      yield "event: end\ndata: null\n\n";
    } catch (error) {
      over = true;
      const { body } = httpError(error, reply.request.id, false);
      yield `event: error\ndata: ${JSON.stringify(body)}\n\n`;
    } finally {
      // The client went away mid-stream: the deployment's stream stops (and its call ends).
      stop();
    }
  }
  reply.type("text/event-stream").header("cache-control", "no-cache").send(Readable.from(events()));
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

/** A route prefix as Fastify's plugin prefix: `/` is none. */
const pluginPrefix = (routePrefix: string): string => routePrefix.replace(/\/+$/, "");

/** A scope cancelled when the client goes away before its answer was sent. */
export function cancelOnClose(
  request: FastifyRequest,
  reply: FastifyReply | undefined,
): CancelScope {
  const cancel = new CancelScope();
  reply?.raw.on("close", () => {
    if (!reply.raw.writableFinished) cancel.cancel(new CancelledError(`Request ${request.id}`));
  });
  return cancel;
}

/** A mounted application: its Fastify instance and what it declared. */
export interface AppDoor extends MountedRoutes {
  readonly fastify: FastifyInstance;
  /** What it was built from: a change of any of them needs a new door. */
  readonly app: Application;
}

/** Whether `door` still fits its target's application (same prefix, routes and assets). */
export const doorFits = (door: AppDoor, app: Application): boolean =>
  door.app.routePrefix === app.routePrefix &&
  door.app.routes === app.routes &&
  door.app.assets === app.assets;

export async function mountApplication(
  target: IngressTarget,
  state: DoorState,
  logger: FastifyBaseLogger,
  notFound: (request: FastifyRequest, reply: FastifyReply) => void,
): Promise<AppDoor> {
  const app = target.app;
  const { settings } = state;
  // Its request log lines name the application, as the replicas' lines do.
  const fastify = Fastify({
    ...sharedFastifyOptions,
    loggerInstance: logger.child({ application: app.name }),
  });
  await configureFastify(fastify, state);
  fastify.setNotFoundHandler(notFound);
  const prefix = pluginPrefix(app.routePrefix);
  const routes: DeclaredRoute[] = [];
  let takesPost = false;
  if (app.routes) {
    const routesOf = app.routes;
    const context: RouteContext = {
      get name() {
        return target.app.name;
      },
      call: (input, request) =>
        target.call(input, {
          requestId: request?.id ?? randomUUID(),
          multiplexedModelId: request && modelIdOf(request.headers[MODEL_ID_HEADER]),
          traceparent: requestTraceparent(request),
          ...(request && {
            cancel: cancelOnClose(request, replyOf(request)),
            header: headerReader(request),
          }),
          ...(settings.requestTimeoutMs !== undefined && { timeout: settings.requestTimeoutMs }),
        }),
      getHandle: <T>(deployment: string): DeploymentHandle<T> => {
        if (!target.getHandle)
          throw new NotFoundError(`Application "${target.app.name}" gives no handles.`);
        return target.getHandle(deployment) as DeploymentHandle<T>;
      },
      respond: (reply, result) => sendResult(reply, result),
    };
    await fastify.register(
      async (scope) => {
        scope.addHook("onRoute", (route) => {
          const methods = Array.isArray(route.method) ? route.method : [route.method];
          for (const method of methods) {
            const url = route.url;
            if (method === "POST" && (url === prefix || url === `${prefix}/` || url === "/"))
              takesPost = true;
            routes.push({
              method,
              url,
              schema: route.schema as Readonly<Record<string, unknown>> | undefined,
            });
          }
        });
        traceRouteHandlers(scope);
        await routesOf(scope.withTypeProvider<ZodTypeProvider>(), context);
      },
      { prefix },
    );
  }
  if (!takesPost) {
    const bytesField = target.bytesField;
    const answer = async (request: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
      const input = await readInput(request, bytesField, settings.bodyLimit);
      if (input instanceof Uint8Array && bytesField === undefined) {
        // Raw bytes, for an input that is an object with no bytes field to put them in.
        const shape = objectShape(target.app.graph.input?.schema);
        if (shape)
          throw new TributaryError(
            "UNSUPPORTED_MEDIA_TYPE",
            `Application "${target.app.name}" takes a JSON object (${Object.keys(shape).join(", ")}) ` +
              `with no bytes field to hold the body (${request.headers["content-type"] ?? "raw bytes"}): send ` +
              `application/json, or give the input one bytes field (z.instanceof(Uint8Array)).`,
          );
      }
      const result = await target.call(input, {
        requestId: request.id,
        owned: true,
        multiplexedModelId: modelIdOf(request.headers[MODEL_ID_HEADER]),
        traceparent: requestTraceparent(request),
        cancel: cancelOnClose(request, reply),
        header: headerReader(request),
        ...(settings.requestTimeoutMs !== undefined && { timeout: settings.requestTimeoutMs }),
      });
      return sendResult(reply, result);
    };
    fastify.post(app.routePrefix, answer);
    // With a trailing slash too, as Ray Serve's proxy matches it.
    if (app.routePrefix !== "/") fastify.post(`${app.routePrefix}/`, answer);
  }
  await registerAssets(fastify, app);
  await fastify.ready();
  return { fastify, app, routes, defaultRoute: !takesPost };
}
