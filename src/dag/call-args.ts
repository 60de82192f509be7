/**
 * @internal The arguments of a handle call, before they leave the caller. As in Ray Serve,
 * the result of another handle call passed (un-awaited) as an argument of its own is
 * awaited by the handle and its value is sent; a call whose arguments cannot cross to a
 * replica (a promise, a function, a symbol) rejects at once with a `ValidationError` that
 * names the deployment, the method and the argument.
 */
import { ValidationError } from "../errors.js";
import { isAsyncIterable, isPlainObject, isPromiseLike, stopStream } from "../values.js";
import { HANDLE_REF } from "../wire/protocol.js";

/** What a handle call's response is, seen from an argument: its label and its result. */
interface Passed {
  /** `deployment.method()`, for messages. */
  readonly label: string;
  /** The call's result (a stream's reader for a streaming method). */
  readonly result: Promise<unknown>;
}

/**
 * The key under which a handle call's response carries its {@link Passed}: a symbol, so
 * structured clone skips it, and cheaper per call than a WeakMap entry.
 */
export const PASSED: unique symbol = Symbol("tributary.passed");

/** What a handle call's response carries under {@link PASSED}. */
export interface PassedResponse {
  readonly [PASSED]: Passed;
}

/**
 * The key under which a deployment handle answers what it is a handle to (see
 * `handleProxy`): a handle passed as an argument of its own travels as a reference the
 * replica turns back into a handle, as a graph's bound class node does.
 */
export const HANDLE_OF: unique symbol = Symbol("tributary.handleOf");

/** What a handle answers under {@link HANDLE_OF}. */
export interface HandleOf {
  readonly deployment: string;
  /** It was given options (withHandleOptions): a timeout or signal cannot travel with it. */
  readonly configured: boolean;
}

function handleOf(value: unknown): HandleOf | undefined {
  return typeof value === "object" && value !== null
    ? (value as { [HANDLE_OF]?: HandleOf })[HANDLE_OF]
    : undefined;
}

function passedOf(value: unknown): Passed | undefined {
  return typeof value === "object" && value !== null
    ? (value as Partial<PassedResponse>)[PASSED]
    : undefined;
}

function invalid(deployment: string, method: string, path: string, why: string): ValidationError {
  return new ValidationError(
    [{ path, message: why }],
    `A call of ${deployment}.${method}() has an argument that cannot be sent to deployment "${deployment}"`,
  );
}

/** Why a top-level argument cannot be sent, or `undefined` when it may. */
function whyNot(value: unknown): string | undefined {
  const handle = handleOf(value);
  if (handle) {
    return (
      `it is a handle to deployment "${handle.deployment}", nested in a value; ` +
      `pass it as an argument of its own`
    );
  }
  if (typeof value === "function") return "it is a function; only data crosses to a replica";
  if (typeof value === "symbol") return `it is a symbol (${String(value)}); only data crosses`;
  if (isPromiseLike(value)) {
    return "it is a Promise (or another thenable); await it and pass its value";
  }
  if (value instanceof WeakMap || value instanceof WeakSet || value instanceof WeakRef) {
    return `it is a ${value.constructor.name}, which cannot be copied; only data crosses`;
  }
  if (isDetached(value)) {
    return (
      "its buffer was moved to a thread replica by an earlier call (typed arrays move, " +
      "they are not copied); pass x.slice() to keep a copy"
    );
  }
  return undefined;
}

/** Whether `value` is a typed array or `ArrayBuffer` whose buffer has moved to another thread. */
function isDetached(value: unknown): boolean {
  const buffer =
    value instanceof ArrayBuffer ? value : ArrayBuffer.isView(value) ? value.buffer : undefined;
  if (!(buffer instanceof ArrayBuffer) || buffer.byteLength > 0) return false;
  // (Node 20 has no `ArrayBuffer.prototype.detached`; an empty buffer clones, a detached one not.)
  try {
    structuredClone(buffer);
    return false;
  } catch {
    return true;
  }
}

/**
 * The arguments to send for a call of `deployment`'s `method`: the same array
 * when no argument is a response (the common case, checked without allocating), else a
 * promise of a copy with each response replaced by its value. Throws a `ValidationError`
 * for an argument that cannot be sent; a response that rejects rejects the call with its
 * error. A handle passed as an argument of its own travels as a reference when
 * `handlesAsRefs` (to a replica), else as it is (a call in this process).
 */
export function prepareArguments(
  deployment: string,
  method: string,
  args: unknown[],
  handlesAsRefs = true,
): unknown[] | Promise<unknown[]> {
  let passed: [number, Passed][] | undefined;
  let withRefs: unknown[] | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (typeof arg !== "object" && typeof arg !== "function" && typeof arg !== "symbol") continue;
    const response = passedOf(arg);
    if (response) {
      (passed ??= []).push([i, response]);
      continue;
    }
    const handle = handleOf(arg);
    if (handle && !handlesAsRefs) continue; // in this process: the handle itself
    if (handle) {
      if (handle.configured)
        throw refused(
          args,
          deployment,
          method,
          `arguments[${i}]`,
          `it is a handle to deployment "${handle.deployment}" given options (withHandleOptions); ` +
            `pass the handle itself, and set its options where it is used`,
        );
      (withRefs ??= args.slice())[i] = { [HANDLE_REF]: handle.deployment };
      continue;
    }
    const why = whyNot(arg);
    if (why) throw refused(args, deployment, method, `arguments[${i}]`, why);
  }
  if (withRefs) args = withRefs;
  if (!passed) return args;
  const waiting = passed;
  return Promise.all(waiting.map(([, response]) => response.result)).then(
    (values) => {
      const stream = values.findIndex((value) => isAsyncIterable(value));
      if (stream >= 0) {
        // No one will read the streams: each is stopped, which frees its replica's slot.
        for (const value of values) stopStream(value);
        const [index, response] = waiting[stream]!;
        throw invalid(
          deployment,
          method,
          `arguments[${index}]`,
          `it is the stream that ${response.label} returned; iterate it and pass its items instead`,
        );
      }
      const resolved = args.slice();
      waiting.forEach(([index], k) => (resolved[index] = values[k]));
      return resolved;
    },
    (error: unknown) => {
      // The call fails; a stream another passed response opens later is read by no one.
      for (const [, response] of waiting) stopResponse(response);
      throw error;
    },
  );
}

/**
 * The `ValidationError` for arguments that structured clone rejected (`error`): names the
 * argument and, below it, the first part that cannot cross (a response nested in a value
 * is one: only a response passed as an argument of its own is awaited).
 */
export function unsendableArguments(
  deployment: string,
  method: string,
  args: unknown[],
  error: Error,
): ValidationError {
  stopResponsesIn(args);
  for (let i = 0; i < args.length; i++) {
    const found = findUnsendable(args[i], `arguments[${i}]`, new Set());
    if (found) return invalid(deployment, method, found.path, found.why);
  }
  return invalid(deployment, method, "arguments", error.message);
}

/**
 * Why a result (or stream item) that structured clone rejected cannot be sent back, when it
 * holds a handle call's response (its stream is stopped: no one will read it): where that
 * response is, and what to do. `undefined` when it holds none.
 */
export function unsendableResult(value: unknown, what: string): string | undefined {
  let first: string | undefined;
  forEachResponse([value], (response, path) => {
    stopResponse(response);
    first ??= `${what}${path}: ${nestedResponse(response, true)}`;
  });
  return first;
}

/** How many values {@link unsendableNested} looks at: a bound on the work a queued call adds. */
const NESTED_CHECK_ITEMS = 1024;

/**
 * The `ValidationError` for a part of `args` (within their first {@link NESTED_CHECK_ITEMS}
 * values, in arrays, objects, Maps and Sets) that surely cannot cross to a replica, if
 * there is one: a call about to wait in a router's queue is checked now, so that it fails
 * at once rather than when it leaves the queue. What this does not reach (values past the
 * budget) is left to structured clone when the call is sent.
 */
export function unsendableNested(
  deployment: string,
  method: string,
  args: readonly unknown[],
): ValidationError | undefined {
  const budget = { items: NESTED_CHECK_ITEMS };
  for (let i = 0; i < args.length; i++) {
    if (typeof args[i] !== "object" || args[i] === null) continue;
    const found = findNested(args[i], `arguments[${i}]`, budget, 0);
    if (found) {
      stopResponsesIn(args);
      return invalid(deployment, method, found.path, found.why);
    }
  }
  return undefined;
}

/** Why a response nested in a value cannot be sent (only one passed on its own is awaited). */
const nestedResponse = (response: Passed, inResult = false): string =>
  inResult
    ? `it is the un-awaited result of ${response.label}, nested in a value; await it first ` +
      `(a method may return a response whole: it is awaited)`
    : `it is the un-awaited result of ${response.label}, nested in a value; await it first, ` +
      `or pass it as an argument of its own (the handle then awaits it)`;

function findNested(
  value: unknown,
  path: string,
  budget: { items: number },
  depth: number,
): { path: string; why: string } | undefined {
  if (--budget.items < 0 || depth > 64) return undefined;
  if (typeof value === "function" || typeof value === "symbol")
    return { path, why: whyNot(value)! };
  if (typeof value !== "object" || value === null) return undefined;
  const response = passedOf(value);
  if (response) return { path, why: nestedResponse(response) };
  if (value instanceof Promise)
    return { path, why: "it is a Promise; await it and pass its value" };
  if (value instanceof WeakMap || value instanceof WeakSet || value instanceof WeakRef)
    return { path, why: whyNot(value)! };
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length && budget.items > 0; i++) {
      const found = findNested(value[i], `${path}[${i}]`, budget, depth + 1);
      if (found) return found;
    }
    return undefined;
  }
  // Their items are numbers.
  if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) return undefined;
  if (value instanceof Map) {
    for (const [key, item] of value) {
      if (budget.items <= 0) break;
      const found =
        findNested(key, `${path} (a Map key)`, budget, depth + 1) ??
        findNested(
          item,
          typeof key === "object" || typeof key === "function"
            ? `${path} (a Map value)`
            : `${path}.get(${String(key)})`,
          budget,
          depth + 1,
        );
      if (found) return found;
    }
    return undefined;
  }
  if (value instanceof Set) {
    for (const item of value) {
      if (budget.items <= 0) break;
      const found = findNested(item, `${path} (a Set item)`, budget, depth + 1);
      if (found) return found;
    }
    return undefined;
  }
  // A plain object, or a class instance: structured clone copies its own enumerable fields.
  const own = value as Record<string, unknown>;
  for (const key of Object.keys(own)) {
    if (budget.items <= 0) break;
    const found = findNested(own[key], `${path}.${key}`, budget, depth + 1);
    if (found) return found;
  }
  return undefined;
}

function findUnsendable(
  value: unknown,
  path: string,
  seen: Set<object>,
): { path: string; why: string } | undefined {
  const response = passedOf(value);
  if (response) return { path, why: nestedResponse(response) };
  const why = whyNot(value);
  if (why) return { path, why };
  if (typeof value !== "object" || value === null || seen.has(value)) return undefined;
  // Typed arrays and buffers clone (a moved one is caught above); their items are numbers.
  if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) return undefined;
  seen.add(value);
  const entries: [string, unknown][] =
    value instanceof Map
      ? [...value].map(([k, v]) => [`${path}.get(${String(k)})`, v])
      : value instanceof Set
        ? [...value].map((v) => [`${path} (a Set item)`, v])
        : Object.entries(value).map(([k, v]) => [
            Array.isArray(value) ? `${path}[${k}]` : `${path}.${k}`,
            v,
          ]);
  for (const [at, item] of entries) {
    const found = findUnsendable(item, at, seen);
    if (found) return found;
  }
  return undefined;
}

/** Stops the stream `response` opens (once it has; a result that is not a stream stays). */
function stopResponse(response: Passed): void {
  void response.result.then(stopStream, () => undefined);
}

/** How many values {@link stopResponsesIn} looks at. */
const STOP_SEARCH_ITEMS = 10_000;

/**
 * Stops the stream of each handle call's response in `values` (see {@link forEachResponse}).
 * `nestedOnly`: not one given as a value of its own (a call's argument), which its caller
 * still holds when the call is refused for another reason.
 */
function stopResponsesIn(values: readonly unknown[], nestedOnly = false): void {
  forEachResponse(values, stopResponse, nestedOnly);
}

/**
 * Calls `visit` with each handle call's response in `values` (as a value, or nested in
 * arrays, plain objects, Maps and Sets, within {@link STOP_SEARCH_ITEMS} values) and its
 * path below it. A call or result refused for holding responses leaves no one to read
 * them, and a stream no one reads holds its replica's slot: each is stopped.
 */
function forEachResponse(
  values: readonly unknown[],
  visit: (response: Passed, path: string) => void,
  nestedOnly = false,
): void {
  const seen = new Set<object>();
  let left = STOP_SEARCH_ITEMS;
  const walk = (value: unknown, path: string): void => {
    if (--left < 0 || typeof value !== "object" || value === null || seen.has(value)) return;
    seen.add(value);
    const response = passedOf(value);
    if (response) {
      if (!nestedOnly || path !== "") visit(response, path);
    } else if (Array.isArray(value)) value.forEach((item, i) => walk(item, `${path}[${i}]`));
    else if (value instanceof Set) for (const item of value) walk(item, `${path} (a Set item)`);
    else if (value instanceof Map)
      for (const [key, item] of value) walk(item, `${path}.get(${String(key)})`);
    else if (isPlainObject(value)) for (const key in value) walk(value[key], `${path}.${key}`);
  };
  for (const value of values) walk(value, "");
}

/**
 * `invalid(...)` for a call refused before it is sent: the streams of responses nested in its
 * arguments are stopped (a response passed as an argument of its own stays its caller's).
 */
function refused(
  args: readonly unknown[],
  deployment: string,
  method: string,
  path: string,
  why: string,
): ValidationError {
  stopResponsesIn(args, true);
  return invalid(deployment, method, path, why);
}
