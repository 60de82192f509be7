/**
 * @internal The server spans of the front doors (OpenTelemetry semantic conventions): one
 * per HTTP request (`{method} {route}`, kind SERVER) and one per gRPC call
 * (`{service}/{method}`, kind SERVER), continuing the trace of an incoming W3C
 * `traceparent` or starting one. The graph's deployment calls carry the span's context.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import {
  context,
  contextOf,
  failSpan,
  inRouteRequest,
  trace,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  traceparentOf,
  tracer,
  tracingActive,
  validTraceparent,
  type Span,
} from "../tracing.js";

/** Each request's server span; with no SDK, the valid `traceparent` it came with, if any. */
const spans = new WeakMap<FastifyRequest, Span | string>();

/** The `traceparent` of `request`'s server span (the graph's calls are its children). */
export function requestTraceparent(request: FastifyRequest | undefined): string | undefined {
  if (!request) return undefined;
  const span = spans.get(request);
  if (span !== undefined) return typeof span === "string" ? span : traceparentOf(span);
  // No span (no SDK when the front door started): the trace that came in goes on.
  return validTraceparent(header(request.headers.traceparent));
}

/** The span of `request` (not the string kept with no SDK). */
function spanOf(request: FastifyRequest): Span | undefined {
  const span = spans.get(request);
  return typeof span === "string" ? undefined : span;
}

const header = (value: string | string[] | undefined): string | undefined =>
  Array.isArray(value) ? value[0] : value;

/**
 * Adds a server span to every request `fastify` answers, when an OpenTelemetry SDK is
 * registered as the front door starts (register yours before `run()`); without one it adds
 * no hook at all, and {@link requestTraceparent} reads the incoming header.
 */
export function traceRequests(fastify: FastifyInstance): void {
  if (!tracingActive()) return;
  fastify.addHook("onRequest", (request, reply, done) => {
    if (!tracingActive()) {
      // No SDK: nothing records, so no span is made; a trace that came in is passed on.
      const incoming = validTraceparent(header(request.headers.traceparent));
      if (incoming !== undefined) spans.set(request, incoming);
      done();
      return;
    }
    const route = request.routeOptions.url;
    const span = tracer.startSpan(
      route === undefined ? request.method : `${request.method} ${route}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          "http.request.method": request.method,
          "url.path": request.url.split("?")[0],
          "url.scheme": "http",
          ...(route !== undefined && { "http.route": route }),
          "tributary.request_id": request.id,
        },
      },
      contextOf(header(request.headers.traceparent)) ?? ROOT_CONTEXT,
    );
    spans.set(request, span);
    // A client that goes away after its body was read fires neither onRequestAbort nor
    // onResponse: the span ends when the connection closes with no answer finished.
    reply.raw.once("close", () => {
      if (reply.raw.writableFinished || spanOf(request) !== span) return;
      spans.delete(request);
      failSpan(span, new Error("the client closed the connection"));
    });
    done();
  });
  fastify.addHook("onError", (request, _reply, error, done) => {
    const span = spanOf(request);
    if (span?.isRecording()) span.recordException(error);
    done();
  });
  fastify.addHook("onResponse", (request, reply, done) => {
    const span = spanOf(request);
    if (span) {
      spans.delete(request);
      const status = reply.statusCode;
      if (span.isRecording()) {
        span.setAttribute("http.response.status_code", status);
        // A server span is an error for 5xx only (4xx is the client's).
        if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      }
      span.end();
    }
    done();
  });
  fastify.addHook("onRequestAbort", (request, done) => {
    const span = spanOf(request);
    if (span) {
      spans.delete(request);
      failSpan(span, new Error("the client closed the connection"));
    }
    done();
  });
}

/** The status codes that make a gRPC server span an error (semantic conventions). */
const GRPC_SERVER_ERRORS = new Set([2, 4, 12, 13, 14, 15]);

/** A gRPC call's span, as the call's code uses it. */
export interface GrpcSpan {
  /** The context the pipeline's calls carry. */
  readonly traceparent: string | undefined;
  /** Sets the span's status code (0: OK) and ends it. */
  end(code: number, error?: unknown): void;
}

/** A gRPC server call's span (none with no SDK: the incoming trace is passed on). */
export function startGrpcSpan(
  service: string,
  method: string,
  traceparent: string | undefined,
): GrpcSpan {
  if (!tracingActive()) return { traceparent: validTraceparent(traceparent), end: () => undefined };
  const span = tracer.startSpan(
    `${service}/${method}`,
    {
      kind: SpanKind.SERVER,
      attributes: { "rpc.system": "grpc", "rpc.service": service, "rpc.method": method },
    },
    contextOf(traceparent) ?? ROOT_CONTEXT,
  );
  return {
    traceparent: traceparentOf(span),
    end(code, error) {
      if (span.isRecording()) span.setAttribute("rpc.grpc.status_code", code);
      if (GRPC_SERVER_ERRORS.has(code)) failSpan(span, error);
      else span.end();
    },
  };
}

/**
 * Runs the handlers of the routes `scope` declares (an application's own, `build({ routes })`)
 * for their request: the handle calls they make carry its id and trace context, and with an
 * SDK the server span is active there (a user's own spans are its children).
 */
export function traceRouteHandlers(scope: FastifyInstance): void {
  scope.addHook("preHandler", (request, _reply, done) => {
    const span = spanOf(request);
    inRouteRequest({ requestId: request.id, traceparent: requestTraceparent(request) }, () =>
      span ? context.with(trace.setSpan(context.active(), span), done) : done(),
    );
  });
}
