/**
 * @internal Handles: a Proxy whose every method sends a call through the runtime. A call
 * returns a {@link HandleResponse}: await it for the result, or iterate it with
 * `for await` when the method streams. A response passed as an argument of another handle
 * call is awaited by that call, which sends its value (see call-args.ts).
 */
import { CancelledError, OptionsError, TimeoutError, TributaryError } from "../errors.js";
import { toMilliseconds, type Duration } from "../options.js";
import { isAsyncIterable, isModelId, MAX_MODEL_ID_LENGTH } from "../values.js";
import {
  HANDLE_OF,
  PASSED,
  prepareArguments,
  type HandleOf,
  type PassedResponse,
} from "./call-args.js";
import type { DeploymentHandle } from "./types.js";

/** The result of a handle call: a promise of the result and, for a stream, its items. */
export class HandleResponse
  implements PromiseLike<unknown>, AsyncIterable<unknown>, PassedResponse
{
  readonly #result: Promise<unknown>;
  readonly #label: string;
  readonly [PASSED]: { readonly label: string; readonly result: Promise<unknown> };

  constructor(result: Promise<unknown>, label: string) {
    // A caller that only iterates never attaches a rejection handler to the promise itself.
    result.catch(() => undefined);
    this.#result = result;
    this.#label = label;
    this[PASSED] = { label, result };
  }

  /**
   * An own property, not a method: structured clone throws on a function-valued property,
   * so a response nested in an argument or a result is reported (see call-args.ts) instead
   * of arriving as `{}`.
   */
  readonly then = <A = unknown, B = never>(
    onFulfilled?: ((value: unknown) => A | PromiseLike<A>) | null,
    onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> => this.#result.then(onFulfilled, onRejected);

  catch<B = never>(
    onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<unknown> {
    return this.#result.catch(onRejected);
  }

  [Symbol.asyncIterator](): AsyncIterator<unknown> {
    let inner: AsyncIterator<unknown> | undefined;
    let opening: Promise<AsyncIterator<unknown>> | undefined;
    /** The consumer called return(): the stream is closed once it is open, and no item is taken. */
    let stopped = false;
    const open = (): Promise<AsyncIterator<unknown>> =>
      (opening ??= this.#result.then((value) => {
        if (!isAsyncIterable(value)) {
          throw new TributaryError(
            "EXECUTION_FAILED",
            `${this.#label} did not return a stream; await it instead of iterating.`,
          );
        }
        return (inner = value[Symbol.asyncIterator]());
      }));
    return {
      next: async () => {
        if (stopped) return DONE;
        const items = inner ?? (await open());
        // Stopped while the stream was opening: return() closes it.
        return stopped ? DONE : items.next();
      },
      return: async () => {
        if (stopped) return DONE;
        stopped = true;
        if (inner) return (await inner.return?.()) ?? DONE;
        // Not open yet (the call is under way): closed as soon as it opens, which cancels
        // the producer and frees its replica's slot; a next() waiting for it ends.
        open().then(
          (items) => items.return?.(),
          () => undefined,
        );
        return DONE;
      },
    };
  }
}

const DONE: IteratorResult<unknown> = Object.freeze({ value: undefined, done: true });

/** Options a handle's calls carry (Ray Serve's `handle.options(...)`). */
export interface HandleOptions {
  /**
   * The model the calls are for, read as `requestContext().multiplexedModelId` and by
   * `multiplexed()`; the router prefers replicas that have it loaded.
   */
  readonly multiplexedModelId?: string | undefined;
  /**
   * Fails each call with `TimeoutError` after this long (`"2s"`, or milliseconds), and
   * cancels it in the callee. Inside a replica the request's own deadline and cancellation
   * still apply: whichever comes first.
   */
  readonly timeout?: Duration | undefined;
  /** Aborting it cancels the calls made through the handle (the callee's signal fires). */
  readonly signal?: AbortSignal | undefined;
}

/** A handle's `timeout` in milliseconds (undefined: none); a bad one is an `OptionsError`. */
export function handleTimeoutMs(options: HandleOptions): number | undefined {
  if (options.timeout === undefined) return undefined;
  try {
    return toMilliseconds(options.timeout);
  } catch (error) {
    throw new OptionsError(`withHandleOptions(): timeout ${(error as Error).message}.`);
  }
}

/**
 * Waits for `ready` within `options`' timeout and signal: a `TimeoutError` or
 * `CancelledError` naming `what` when they come first. `left`: the milliseconds of the
 * timeout left for the call itself.
 */
function boundedWait<T>(
  ready: Promise<T>,
  options: HandleOptions,
  what: string,
): Promise<{ value: T; left: number | undefined }> {
  const timeoutMs = handleTimeoutMs(options);
  const signal = options.signal;
  const started = performance.now();
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const onAbort = (): void => {
      const reason: unknown = signal!.reason;
      finish();
      reject(
        reason instanceof TributaryError ? reason : new CancelledError(what, { cause: reason }),
      );
    };
    const finish = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    };
    if (timeoutMs !== undefined)
      timer = setTimeout(() => {
        finish();
        reject(new TimeoutError(what, timeoutMs));
      }, timeoutMs);
    ready.then(
      (value) => {
        finish();
        if (timeoutMs === undefined) return resolve({ value, left: undefined });
        const left = timeoutMs - (performance.now() - started);
        if (left < 1) reject(new TimeoutError(what, timeoutMs));
        else resolve({ value, left });
      },
      (error: unknown) => {
        finish();
        reject(error);
      },
    );
    // After the handlers above: a response that fails later is handled, not left unhandled.
    if (signal?.aborted) {
      onAbort();
      return;
    }
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Throws an `OptionsError` for a `multiplexedModelId` that is not a model id (1 to 128
 * printable ASCII characters, as the `x-tributary-model-id` header takes); `undefined` is none.
 */
export function checkModelId(id: unknown, where: string): void {
  if (id === undefined || isModelId(id)) return;
  throw new OptionsError(
    `${where}: multiplexedModelId must be 1 to ${MAX_MODEL_ID_LENGTH} printable ASCII characters (it is ${typeof id === "string" ? JSON.stringify(id.slice(0, 40)) : `a ${typeof id}`}).`,
  );
}

/** The key under which a served handle makes a copy of itself with options. */
const WITH_OPTIONS = Symbol("tributary.withOptions");

/**
 * A handle like `handle` whose calls carry `options`: Ray Serve's
 * `handle.options(multiplexed_model_id=…)`, as a function so that no method name of the
 * class is taken; a `timeout` or `signal` bounds each call (inside a replica, within the
 * request's own deadline). A handle under `node.execute()` calls the instance directly:
 * there the options have no request context to reach, and `multiplexed()` needs the id
 * passed. A `timeout` that is not a duration, or a `signal` that is not an `AbortSignal`,
 * is an `OptionsError` here.
 *
 * @example
 * const model = withHandleOptions(this.classifier, { multiplexedModelId: "en-v2" });
 * await model.forward(x);
 * const quick = withHandleOptions(this.ranker, { timeout: "200ms" });
 */
export function withHandleOptions<C>(
  handle: DeploymentHandle<C>,
  options: HandleOptions,
): DeploymentHandle<C> {
  const make = (handle as { [WITH_OPTIONS]?: (options: HandleOptions) => unknown })[WITH_OPTIONS];
  if (typeof make !== "function") {
    throw new OptionsError("withHandleOptions(): the first argument is not a handle.");
  }
  handleTimeoutMs(options);
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal))
    throw new OptionsError("withHandleOptions(): signal is not an AbortSignal.");
  checkModelId(options.multiplexedModelId, "withHandleOptions()");
  return make(options) as DeploymentHandle<C>;
}

/**
 * A handle whose methods call `invoke(method, args, options, caller)`; a copy made by
 * {@link withHandleOptions} passes its options. `local`: its calls stay in this process
 * (`node.execute()`), so a handle passed as an argument is passed as it is. `callerOf`:
 * what `invoke` is told of the code that made the call (in a replica, its request), read
 * when the call is made: a call that first waits for responses passed on to it is sent
 * later, from a promise's callback.
 */
export function handleProxy(
  deployment: string,
  invoke: (
    method: string,
    args: unknown[],
    options: HandleOptions,
    caller: unknown,
  ) => Promise<unknown>,
  options: HandleOptions = {},
  local = false,
  callerOf?: () => unknown,
): unknown {
  const methods = new Map<string, (...args: unknown[]) => HandleResponse>();
  const send = (method: string, args: unknown[]): Promise<unknown> => {
    const caller = callerOf?.();
    let ready: unknown[] | Promise<unknown[]>;
    try {
      ready = prepareArguments(deployment, method, args, !local);
    } catch (error) {
      return Promise.reject(error);
    }
    if (Array.isArray(ready)) return invoke(method, ready, options, caller);
    if (options.timeout === undefined && options.signal === undefined)
      return ready.then((a) => invoke(method, a, options, caller));
    // The handle's timeout and signal bound the wait for the responses passed on too.
    return boundedWait(ready, options, `${deployment}.${method}()`).then(({ value, left }) =>
      invoke(method, value, left === undefined ? options : { ...options, timeout: left }, caller),
    );
  };
  const withOptions = (more: HandleOptions): unknown =>
    handleProxy(deployment, invoke, { ...options, ...more }, local, callerOf);
  const handle: HandleOf = {
    deployment,
    configured: Object.values(options).some((value) => value !== undefined),
  };
  return new Proxy(Object.freeze({}), {
    get(_target, key) {
      if (key === WITH_OPTIONS) return withOptions;
      if (key === HANDLE_OF) return handle;
      // Not methods: `await handle` and JSON.stringify(handle) must not call the deployment.
      if (typeof key !== "string" || key === "then" || key === "toJSON") return undefined;
      let method = methods.get(key);
      if (!method) {
        const label = `${deployment}.${key}()`;
        method = (...args: unknown[]) => new HandleResponse(send(key, args), label);
        methods.set(key, method);
      }
      return method;
    },
  });
}
