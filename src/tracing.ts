/**
 * @internal Trace context across hops, on the OpenTelemetry API only: a user's SDK (or the
 * exporter `tracing: { otlpEndpoint }` sets up, tracing-export.ts) records the spans; with
 * none registered every span is a no-op and only a `traceparent` that came in is carried.
 * The context travels as a W3C `traceparent` string: in a `call` message between a caller
 * and a replica, and from the HTTP and gRPC front doors into the graph.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import {
  context,
  ProxyTracerProvider,
  INVALID_SPANID,
  INVALID_TRACEID,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
} from "@opentelemetry/api";

/** The tracer every Tributary span comes from (its instrumentation scope). */
export const tracer = trace.getTracer("tributary");

export {
  SpanKind,
  SpanStatusCode,
  ROOT_CONTEXT,
  context,
  trace,
  type Attributes,
  type Span,
  type Context,
};

/** What a `ProxyTracerProvider` delegates to while no SDK is registered. */
const NOOP_PROVIDER = new ProxyTracerProvider().getDelegate();

/**
 * Whether an OpenTelemetry SDK is registered in this thread, so that spans record. Without
 * one, Tributary makes no span objects at all and only passes an incoming `traceparent` on.
 */
export function tracingActive(): boolean {
  const provider = trace.getTracerProvider() as Partial<ProxyTracerProvider>;
  return typeof provider.getDelegate !== "function" || provider.getDelegate() !== NOOP_PROVIDER;
}

/** W3C trace context: version, trace id, parent span id, flags (lowercase hex, as the spec says). */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/**
 * The context a W3C `traceparent` names (as the parent of the next span), or `undefined`
 * when there is none or it is malformed (a new trace starts then, as the spec says).
 */
export function contextOf(traceparent: string | undefined): Context | undefined {
  const match = parse(traceparent);
  if (!match) return undefined;
  const [, , traceId, spanId, flags] = match;
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: traceId!,
    spanId: spanId!,
    traceFlags: parseInt(flags!, 16),
    isRemote: true,
  });
}

function parse(traceparent: string | undefined): RegExpExecArray | undefined {
  if (traceparent === undefined) return undefined;
  const match = TRACEPARENT.exec(traceparent);
  if (!match) return undefined;
  const [, version, traceId, spanId, , rest] = match;
  // Version ff is invalid; version 00 has exactly four fields; all-zero ids are invalid.
  if (version === "ff" || (version === "00" && rest !== undefined)) return undefined;
  if (traceId === INVALID_TRACEID || spanId === INVALID_SPANID) return undefined;
  return match;
}

/** `traceparent` when it is a valid W3C trace context, else `undefined`. */
export function validTraceparent(traceparent: string | undefined): string | undefined {
  return parse(traceparent) ? traceparent : undefined;
}

/**
 * The `traceparent` that makes `span` the parent on the other side of a hop, if it has a
 * valid context (ids come from an SDK or from {@link contextOf}, so only their invalid
 * all-zero form is checked: this runs on every call).
 */
export function traceparentOf(span: Span | undefined): string | undefined {
  if (!span) return undefined;
  const { traceId, spanId, traceFlags } = span.spanContext();
  if (traceId === INVALID_TRACEID || spanId === INVALID_SPANID) return undefined;
  if (traceId.length !== 32 || spanId.length !== 16) return undefined;
  return `00-${traceId}-${spanId}-${traceFlags & 1 ? "01" : "00"}`;
}

/** The request a front door's own route handler (`build({ routes })`) runs for. */
export interface RouteRequest {
  readonly requestId: string;
  readonly traceparent: string | undefined;
}

const routeRequests = new AsyncLocalStorage<RouteRequest>();

/**
 * Runs `handler` (and what it awaits) for `request`: handle calls made there carry the
 * request's id and trace context, with an SDK or without one.
 */
export function inRouteRequest<T>(request: RouteRequest, handler: () => T): T {
  return routeRequests.run(request, handler);
}

/** The request of the route handler running now, if any (see {@link inRouteRequest}). */
export function routeRequest(): RouteRequest | undefined {
  return routeRequests.getStore();
}

/**
 * The `traceparent` of the span active in the calling code (a user SDK's context), or else
 * of the request whose route handler runs now, if any.
 */
export function activeTraceparent(): string | undefined {
  return traceparentOf(trace.getSpan(context.active())) ?? routeRequests.getStore()?.traceparent;
}

/** Ends `span` with `error` recorded on it (status ERROR). */
export function failSpan(span: Span, error: unknown, attributes?: Attributes): void {
  if (span.isRecording()) {
    if (attributes) span.setAttributes(attributes);
    const e = error instanceof Error ? error : new Error(String(error));
    span.recordException(e);
    span.setStatus({ code: SpanStatusCode.ERROR, message: e.message });
  }
  span.end();
}
