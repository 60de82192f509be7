/**
 * @internal The span of one deployment call, made in the replica that runs it (kind
 * SERVER: the replica serves a call that crossed a thread or process boundary, as an RPC
 * server does). Made there because the replica is where the user's code runs: its spans,
 * and `trace.getActiveSpan()`, see this span as their parent; the replica knows its own
 * name and the call's outcome; and an SDK the user's module registers runs in every
 * replica, since each one imports it. The caller's span is the parent, by the `traceparent`
 * the call message carries. The router's queueing before the call reached a replica is in
 * the caller's span, not this one.
 */
import {
  context,
  contextOf,
  failSpan,
  ROOT_CONTEXT,
  tracingActive,
  SpanKind,
  trace,
  tracer,
  type Attributes,
  type Context,
  type Span,
} from "../tracing.js";

/** How a deployment call ended (`tributary.outcome`). */
export type CallOutcome = "ok" | "error" | "cancelled" | "timeout";

/** Span attribute names of a deployment call. */
export const CALL_ATTRIBUTES = {
  application: "tributary.application",
  deployment: "tributary.deployment",
  method: "tributary.method",
  replica: "tributary.replica",
  outcome: "tributary.outcome",
  requestId: "tributary.request_id",
} as const;

export interface CallSpan {
  /** None while no SDK is registered in this replica. */
  readonly span: Span | undefined;
  /** The context user code runs in: the span active, under the caller's. */
  readonly context: Context | undefined;
  /**
   * The span's `traceparent` when it is known already: with no SDK the span only carries
   * the caller's context, so the caller's string goes on unchanged.
   */
  readonly traceparent: string | undefined;
}

/**
 * Starts the span of a call to `method` of `deployment` on `replica`. `context` is
 * `undefined` when there is nothing to make active (no SDK and no caller's trace): the
 * call then runs without `context.with`, which costs nothing.
 */
export function startCallSpan(
  application: string,
  deployment: string,
  replica: string,
  method: string | undefined,
  requestId: string | undefined,
  traceparent: string | undefined,
): CallSpan {
  // No SDK: no span at all; the caller's context goes on to the calls this one makes.
  if (!tracingActive()) return { span: undefined, context: undefined, traceparent };
  const parent = contextOf(traceparent);
  const name = `${deployment}/${method ?? "call"}`;
  const attributes: Attributes = {
    "rpc.system": "tributary",
    "rpc.service": deployment,
    "rpc.method": method ?? "call",
    [CALL_ATTRIBUTES.application]: application,
    [CALL_ATTRIBUTES.deployment]: deployment,
    [CALL_ATTRIBUTES.method]: method ?? "call",
    [CALL_ATTRIBUTES.replica]: replica,
  };
  if (requestId !== undefined) attributes[CALL_ATTRIBUTES.requestId] = requestId;
  const span = tracer.startSpan(
    name,
    { kind: SpanKind.SERVER, attributes },
    parent ?? ROOT_CONTEXT,
  );
  if (span.isRecording()) {
    return { span, context: trace.setSpan(parent ?? ROOT_CONTEXT, span), traceparent: undefined };
  }
  // A non-recording span (a sampler said no) carries the caller's context: pass it on.
  return { span, context: parent, traceparent: parent ? traceparent : undefined };
}

/** Ends a call's span with its outcome (and the error, recorded, when it failed). */
export function endCallSpan(span: Span, outcome: CallOutcome, error?: unknown): void {
  if (outcome === "ok") {
    if (span.isRecording()) span.setAttribute(CALL_ATTRIBUTES.outcome, outcome);
    span.end();
  } else if (outcome === "error") {
    failSpan(span, error, { [CALL_ATTRIBUTES.outcome]: outcome });
  } else if (outcome === "timeout") {
    failSpan(span, error, { [CALL_ATTRIBUTES.outcome]: outcome });
  } else {
    // The caller went away: not a failure of this deployment (as gRPC servers see CANCELLED).
    if (span.isRecording()) span.setAttribute(CALL_ATTRIBUTES.outcome, outcome);
    span.end();
  }
}

/** Runs `fn` with `callSpan`'s context active (for the user's own spans), when it has one. */
export function runInSpan<T>(callSpan: CallSpan, fn: () => T): T {
  return callSpan.context ? context.with(callSpan.context, fn) : fn();
}
