/**
 * @internal Trace context across hops, on the OpenTelemetry API only: a user's SDK (or the
 * exporter `tracing: { otlpEndpoint }` sets up, tracing-export.ts) records the spans; with
 * none registered every span is a no-op and only a `traceparent` that came in is carried.
 * The context travels as a W3C `traceparent` string: in a `call` message between a caller
 * and a replica, and from the HTTP and gRPC front doors into the graph.
 */
import {
  context,
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

export { SpanKind, SpanStatusCode, ROOT_CONTEXT, context, trace, type Span, type Context };

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/**
 * The context a W3C `traceparent` names (as the parent of the next span), or `undefined`
 * when there is none or it is malformed (a new trace starts then, as the spec says).
 */
export function contextOf(traceparent: string | undefined): Context | undefined {
  if (traceparent === undefined) return undefined;
  const match = TRACEPARENT.exec(traceparent.trim().toLowerCase());
  if (!match) return undefined;
  const [, version, traceId, spanId, flags, rest] = match;
  // Version ff is invalid; version 00 has exactly four fields.
  if (version === "ff" || (version === "00" && rest !== undefined)) return undefined;
  const spanContext = { traceId: traceId!, spanId: spanId!, traceFlags: parseInt(flags!, 16) };
  if (!trace.isSpanContextValid(spanContext)) return undefined;
  return trace.setSpanContext(ROOT_CONTEXT, { ...spanContext, isRemote: true });
}

/** The `traceparent` that makes `span` the parent on the other side of a hop, if it has a valid context. */
export function traceparentOf(span: Span | undefined): string | undefined {
  if (!span) return undefined;
  const { traceId, spanId, traceFlags } = span.spanContext();
  if (!trace.isSpanContextValid({ traceId, spanId, traceFlags })) return undefined;
  return `00-${traceId}-${spanId}-${traceFlags & 1 ? "01" : "00"}`;
}

/** The `traceparent` of the span active in the calling code (a user SDK's context), if any. */
export function activeTraceparent(): string | undefined {
  return traceparentOf(trace.getSpan(context.active()));
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
