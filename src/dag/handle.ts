/**
 * @internal Handles: a Proxy whose every method sends a call through the runtime. A call
 * returns a {@link HandleResponse}: await it for the result, or iterate it with
 * `for await` when the method streams. A response passed as an argument of another handle
 * call is awaited by that call, which sends its value (see call-args.ts).
 */
import { OptionsError, TributaryError } from "../errors.js";
import { toMilliseconds, type Duration } from "../options.js";
import { isAsyncIterable } from "../values.js";
import { PASSED, prepareArguments, type PassedResponse } from "./call-args.js";
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
    const open = async (): Promise<AsyncIterator<unknown>> => {
      const value = await this.#result;
      if (!isAsyncIterable(value)) {
        throw new TributaryError(
          "EXECUTION_FAILED",
          `${this.#label} did not return a stream; await it instead of iterating.`,
        );
      }
      return value[Symbol.asyncIterator]();
    };
    return {
      next: async () => (inner ??= await open()).next(),
      return: async () => {
        if (inner?.return) return inner.return();
        return { value: undefined, done: true };
      },
    };
  }
}

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
    throw new TributaryError(
      "BAD_REQUEST",
      "withHandleOptions(): the first argument is not a handle.",
    );
  }
  handleTimeoutMs(options);
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal))
    throw new OptionsError("withHandleOptions(): signal is not an AbortSignal.");
  return make(options) as DeploymentHandle<C>;
}

/**
 * A handle whose methods call `invoke(method, args, options)`; a copy made by
 * {@link withHandleOptions} passes its options.
 */
export function handleProxy(
  deployment: string,
  invoke: (method: string, args: unknown[], options: HandleOptions) => Promise<unknown>,
  options: HandleOptions = {},
): unknown {
  const methods = new Map<string, (...args: unknown[]) => HandleResponse>();
  const send = (method: string, args: unknown[]): Promise<unknown> => {
    let ready: unknown[] | Promise<unknown[]>;
    try {
      ready = prepareArguments(deployment, method, args);
    } catch (error) {
      return Promise.reject(error);
    }
    return Array.isArray(ready)
      ? invoke(method, ready, options)
      : ready.then((a) => invoke(method, a, options));
  };
  const withOptions = (more: HandleOptions): unknown =>
    handleProxy(deployment, invoke, { ...options, ...more });
  return new Proxy(Object.freeze({}), {
    get(_target, key) {
      if (key === WITH_OPTIONS) return withOptions;
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
