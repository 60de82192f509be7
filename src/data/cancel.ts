/**
 * @internal A light cancellation scope, one per request and shared by every call the
 * request makes. Cheaper than an AbortSignal per call (EventTarget listeners cost more
 * than the rest of a call), and built from the caller's AbortSignal and timeout once.
 */
import { CancelledError, TimeoutError, TributaryError } from "../errors.js";

export class CancelScope {
  #reason: Error | undefined;
  #listeners: Set<(reason: Error) => void> | undefined;

  get reason(): Error | undefined {
    return this.#reason;
  }

  cancel(reason: Error): void {
    if (this.#reason) return;
    this.#reason = reason;
    const listeners = this.#listeners;
    this.#listeners = undefined;
    for (const listener of listeners ?? []) listener(reason);
  }

  /** Calls `listener` on cancellation (now, if already cancelled); returns an unsubscribe. */
  subscribe(listener: (reason: Error) => void): () => void {
    if (this.#reason) {
      listener(this.#reason);
      return noop;
    }
    (this.#listeners ??= new Set()).add(listener);
    return () => this.#listeners?.delete(listener);
  }
}

function noop(): void {}

/** A request with neither a signal nor a timeout (most handle calls): nothing to allocate. */
const NO_SCOPE = Object.freeze({ scope: undefined, dispose: noop });

/**
 * A scope inside `parent` (cancelled with it) that `signal` and `timeoutMs` also cancel: a
 * replica's handle call given a timeout or signal of its own, within the request's. With
 * neither, `parent` itself.
 */
export function innerScope(
  what: string,
  parent: CancelScope | undefined,
  signal: AbortSignal | undefined,
  timeoutMs: number | undefined,
): { scope: CancelScope | undefined; dispose: () => void } {
  if (!signal && timeoutMs === undefined)
    return parent ? { scope: parent, dispose: noop } : NO_SCOPE;
  const own = new CancelScope();
  const unsubscribe = parent?.subscribe((reason) => own.cancel(reason)) ?? noop;
  const inner = requestScope(what, signal, timeoutMs, own);
  return {
    scope: own,
    dispose: () => {
      unsubscribe();
      inner.dispose();
    },
  };
}

/**
 * The scope of one request from a caller's `signal` (or several: any of them cancels it)
 * and `timeoutMs` (`undefined` when it has neither). `dispose()` releases the timer and the
 * signal listeners.
 */
export function requestScope(
  what: string,
  signal: AbortSignal | readonly AbortSignal[] | undefined,
  timeoutMs: number | undefined,
  scope?: CancelScope,
): { scope: CancelScope | undefined; dispose: () => void } {
  const signals: readonly AbortSignal[] =
    signal === undefined ? [] : signal instanceof AbortSignal ? [signal] : signal;
  if (signals.length === 0 && timeoutMs === undefined)
    return scope ? { scope, dispose: noop } : NO_SCOPE;
  const own = scope ?? new CancelScope();
  const timer =
    timeoutMs === undefined
      ? undefined
      : setTimeout(() => own.cancel(new TimeoutError(what, timeoutMs)), timeoutMs);
  const listeners = signals.map((one) => {
    const onAbort = (): void => {
      const reason: unknown = one.reason;
      own.cancel(
        reason instanceof TributaryError ? reason : new CancelledError(what, { cause: reason }),
      );
    };
    if (one.aborted) onAbort();
    else one.addEventListener("abort", onAbort, { once: true });
    return [one, onAbort] as const;
  });
  return {
    scope: own,
    dispose: () => {
      if (timer) clearTimeout(timer);
      for (const [one, onAbort] of listeners) one.removeEventListener("abort", onAbort);
    },
  };
}
