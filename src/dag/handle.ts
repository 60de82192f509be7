/**
 * @internal Handles: a Proxy whose every method sends a call through the runtime. A call
 * returns a {@link HandleResponse}: await it for the result, or iterate it with
 * `for await` when the method streams. A response passed as an argument of another handle
 * call is awaited by that call, which sends its value (see call-args.ts).
 */
import { TributaryError } from "../errors.js";
import { isAsyncIterable } from "../values.js";
import { PASSED, prepareArguments, type PassedResponse } from "./call-args.js";

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

/** A handle whose methods call `invoke(method, args)`. */
export function handleProxy(
  deployment: string,
  invoke: (method: string, args: unknown[]) => Promise<unknown>,
): unknown {
  const methods = new Map<string, (...args: unknown[]) => HandleResponse>();
  const send = (method: string, args: unknown[]): Promise<unknown> => {
    let ready: unknown[] | Promise<unknown[]>;
    try {
      ready = prepareArguments(deployment, method, args);
    } catch (error) {
      return Promise.reject(error);
    }
    return Array.isArray(ready) ? invoke(method, ready) : ready.then((a) => invoke(method, a));
  };
  return new Proxy(Object.freeze({}), {
    get(_target, key) {
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
