/**
 * The context of the request a replica is handling, for user code: its id, the deployment
 * and replica, and an `AbortSignal` that fires when the caller cancels or times out.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { CancelScope } from "./cancel.js";
import { endCallSpan, type CallOutcome, type CallSpan } from "./call-span.js";
import { activeTraceparent, traceparentOf } from "../tracing.js";

export interface RequestContext {
  /** The id of the request (the `x-request-id` of an HTTP request), when the caller gave one. */
  readonly requestId: string | undefined;
  readonly deployment: string;
  readonly replica: string;
  /**
   * The model the request is for (multiplexing): the `x-tributary-model-id` header, the
   * OIP model version, or a handle's `multiplexedModelId`; `undefined` when none is named.
   */
  readonly multiplexedModelId: string | undefined;
  /** Fires when the caller cancels the request or it times out. */
  readonly signal: AbortSignal;
  /**
   * The W3C `traceparent` of this call's trace (the active span's, when an OpenTelemetry SDK
   * is registered; else the one the request came with), for code that calls other services.
   */
  readonly traceparent: string | undefined;
}

/** @internal One request running in a replica; the signal is made on first use. */
export class ActiveRequest implements RequestContext {
  readonly requestId: string | undefined;
  readonly deployment: string;
  readonly replica: string;
  readonly multiplexedModelId: string | undefined;
  /** When the call arrived (`performance.now()`), for its processing time; 0: not timed. */
  startedAt = 0;
  /** The method called (`undefined`: a function deployment), for the reason of a cancel. */
  method: string | undefined;
  #controller: AbortController | undefined;
  #reason: Error | undefined;
  #onCancel: (() => void)[] | undefined;
  #scope: CancelScope | undefined;
  /** The span of this call (call-span.ts), ended once with its outcome. */
  readonly #span: CallSpan | undefined;
  #spanEnded = false;
  /** The span's `traceparent`, once asked for (`null`: it has none). */
  #traceparent: string | null | undefined;

  constructor(
    requestId: string | undefined,
    deployment: string,
    replica: string,
    multiplexedModelId?: string,
    span?: CallSpan,
  ) {
    this.requestId = requestId;
    this.deployment = deployment;
    this.replica = replica;
    this.multiplexedModelId = multiplexedModelId;
    this.#span = span;
  }

  /**
   * The trace context the handle calls this request makes carry: the span active in the
   * user's code (its own, under a context manager its SDK registered), else this call's.
   */
  get traceparent(): string | undefined {
    const active = activeTraceparent();
    if (active !== undefined) return active;
    this.#traceparent ??= this.#span?.traceparent ?? traceparentOf(this.#span?.span) ?? null;
    return this.#traceparent ?? undefined;
  }

  /** Ends this call's span with `outcome` (the first time only). */
  endSpan(outcome: CallOutcome, error?: unknown): void {
    const span = this.#span?.span;
    if (!span || this.#spanEnded) return;
    this.#spanEnded = true;
    endCallSpan(span, outcome, error);
  }

  get signal(): AbortSignal {
    this.#controller ??= new AbortController();
    if (this.#reason && !this.#controller.signal.aborted) this.#controller.abort(this.#reason);
    return this.#controller.signal;
  }

  /** Cancelled with this request: the handle calls it makes carry it. */
  get scope(): CancelScope {
    this.#scope ??= new CancelScope();
    if (this.#reason) this.#scope.cancel(this.#reason);
    return this.#scope;
  }

  get cancelled(): boolean {
    return this.#reason !== undefined;
  }

  cancel(reason: Error): void {
    if (this.#reason) return;
    this.#reason = reason;
    this.#controller?.abort(reason);
    this.#scope?.cancel(reason);
    for (const listener of this.#onCancel ?? []) listener();
  }

  /**
   * Runs `listener` when this request is cancelled (nested handle calls use it); returns
   * a function that forgets it.
   */
  onCancel(listener: () => void): () => void {
    if (this.#reason) {
      listener();
      return noop;
    }
    (this.#onCancel ??= []).push(listener);
    return () => {
      const index = this.#onCancel?.indexOf(listener) ?? -1;
      if (index >= 0) this.#onCancel!.splice(index, 1);
    };
  }

  /**
   * The request a `batch()` list function runs in: the first item's (its id, model, trace
   * and deployment), but cancelled only once every item's request is, so that one caller's
   * timeout or hang-up does not cancel, through the signal or the handle calls the batch
   * makes, the calls of the others. An item with no request (outside a replica) never is.
   */
  static ofBatch(requests: readonly (ActiveRequest | undefined)[]): {
    request: ActiveRequest | undefined;
    /** Forgets the listeners it left on the items' requests (once the batch is over). */
    done: () => void;
  } {
    const first = requests[0];
    if (!first || requests.length === 1) return { request: first, done: noop };
    const batch = new ActiveRequest(
      first.requestId,
      first.deployment,
      first.replica,
      first.multiplexedModelId,
      first.#span,
    );
    batch.method = first.method;
    batch.startedAt = first.startedAt;
    let left = requests.length;
    const forget = requests.map((request) =>
      request?.onCancel(() => {
        if (--left === 0) batch.cancel(request.#reason!);
      }),
    );
    return { request: batch, done: () => forget.forEach((f) => f?.()) };
  }
}

function noop(): void {}

/** @internal */
export const requestStorage = new AsyncLocalStorage<ActiveRequest>();

/**
 * Whether this Node.js carries an `AsyncLocalStorage`'s store with async_hooks (Node 20, and
 * 22 unless started with `--experimental-async-context-frame`): from the store's first use
 * on, every promise and async resource the thread makes runs an init hook, for every call,
 * whether its code reads the store or not. Measured with the no-op HTTP diamond on Node 20
 * (2 cores): 0.63× the requests/s with the hook on in the replicas, their threads' and V8's
 * GC threads' CPU per request about doubled. Node 24's AsyncContextFrame has no such cost
 * (and its class no `_enable`).
 */
const HOOKED = "_enable" in AsyncLocalStorage.prototype;

/** The request whose code runs synchronously now (see {@link runForRequest}). */
let syncRequest: ActiveRequest | undefined;
/** Calls and streams whose code runs with the store carried across its awaits. */
let carrying = 0;
/**
 * Set once a method of this replica has returned a promise or a stream: its calls are
 * carried from then on, and code they leave running (a promise not awaited, a timer) keeps
 * its request, so the store stays on, as before. Only a replica whose methods all return
 * plain values has it switched off.
 */
let awaits = false;
/** How long the store stays on once nothing is carried, before it is switched off. */
const DISABLE_AFTER_MS = 1_000;
let disableTimer: ReturnType<typeof setTimeout> | undefined;
/** When the last carried code ended (`performance.now()`). */
let idleSince = 0;

/** @internal The request the calling code runs for, in a replica; `undefined` outside one. */
export function currentRequest(): ActiveRequest | undefined {
  return syncRequest ?? requestStorage.getStore();
}

/**
 * @internal Runs `fn` for `request`. Code that reads the request while `fn` runs (its
 * synchronous part) gets it either way; with `carry`, what `fn` awaits gets it too, through
 * {@link requestStorage}, and {@link uncarry} must follow once that code has ended (unless
 * `fn` throws: its code has ended then, and is uncarried here).
 */
export function runForRequest<T>(request: ActiveRequest, carry: boolean, fn: () => T): T {
  const outer = syncRequest;
  syncRequest = request;
  try {
    if (!carry) return fn();
    carrying++;
    try {
      return requestStorage.run(request, fn);
    } catch (error) {
      uncarry();
      throw error;
    }
  } finally {
    syncRequest = outer;
  }
}

/**
 * @internal The code of a call run with `carry` has ended. With async_hooks, once none has
 * been carried for a second (and no method awaits), the store is switched off, so that the
 * thread's promises stop paying for it.
 */
export function uncarry(): void {
  if (carrying > 0) carrying--;
  if (carrying > 0 || !HOOKED || awaits) return;
  idleSince = performance.now();
  disableTimer ??= setTimeout(switchOff, DISABLE_AFTER_MS).unref();
}

function switchOff(): void {
  disableTimer = undefined;
  if (carrying > 0 || awaits) return;
  const left = idleSince + DISABLE_AFTER_MS - performance.now();
  if (left > 1) disableTimer = setTimeout(switchOff, left).unref();
  else requestStorage.disable();
}

/** The most methods whose kind a replica records (a Proxy could name any number). */
const MAX_METHODS = 1_000;
/** What each method of this replica returned, by name: true, a promise or stream; false, a value. */
const returnsLater = new Map<string, boolean>();

/**
 * @internal Whether a call of `method` must carry its request across awaits: unless the
 * method has returned a plain value before (its code had ended when it returned), and no
 * method of this replica a promise or a stream (the store is on for good then, so every call
 * is carried, as before); a method not called yet is carried (it could be async). Where
 * carrying costs nothing (see {@link HOOKED}), always.
 */
export function carries(method: string): boolean {
  return !HOOKED || awaits || (returnsLater.get(method) ?? true);
}

/**
 * @internal Records what a call of `method` returned: once it has returned a promise or a
 * stream, its calls carry their request from then on.
 */
export function returned(method: string, later: boolean): void {
  if (later) awaits = true;
  if (returnsLater.get(method) === true) return;
  if (returnsLater.size < MAX_METHODS || returnsLater.has(method)) returnsLater.set(method, later);
}

/**
 * The request the calling code is handling, inside a deployment served by `run()`;
 * `undefined` outside one (for example under `node.execute()`).
 *
 * @example
 * async forward(x: Float32Array) {
 *   const { signal } = requestContext()!;
 *   for (const chunk of chunks(x)) { signal.throwIfAborted(); await step(chunk); }
 * }
 */
export function requestContext(): RequestContext | undefined {
  return currentRequest();
}
