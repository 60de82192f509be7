/**
 * @internal Type guards shared by the executors, the replica host and the front doors.
 */

/** Whether `value` can be awaited (a promise, or a handle's response). */
export function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return (
    (typeof value === "object" || typeof value === "function") &&
    value !== null &&
    typeof (value as { then?: unknown }).then === "function"
  );
}

/** Whether `value` can be iterated with `for await`. */
export function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return typeof value === "object" && value !== null && Symbol.asyncIterator in value;
}

/** Whether `value` is a streamed result: async-iterable, and not a handle's response. */
export function isStream(value: unknown): value is AsyncIterable<unknown> {
  return isAsyncIterable(value) && !isPromiseLike(value);
}

/**
 * Stops a stream (a step's or a call's streamed result) that no one will read: its
 * producer is cancelled and its replica slot freed. Anything else is left alone.
 */
export function stopStream(value: unknown): void {
  if (!isStream(value)) return;
  try {
    void Promise.resolve(value[Symbol.asyncIterator]().return?.()).catch(() => undefined);
  } catch {
    // Its return() threw: nothing more can be done for it.
  }
}

/** The longest model id (multiplexing) accepted, as for a request id. */
export const MAX_MODEL_ID_LENGTH = 128;

/** Whether `value` is a model id: 1 to 128 printable ASCII characters, not starting or ending with a space. */
export function isModelId(value: unknown): value is string {
  return (
    typeof value === "string" &&
    value.length <= MAX_MODEL_ID_LENGTH &&
    /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/.test(value)
  );
}

/** A plain object (`{…}` or `Object.create(null)`): not an array, class instance or builtin. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null) return false;
  const proto = Object.getPrototypeOf(value) as object | null;
  return proto === Object.prototype || proto === null;
}

/**
 * JSON text of `value` with every object's keys in sorted order: the same data written in
 * another key order gives the same text (for comparing options and building keys).
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, item: unknown) =>
    isPlainObject(item)
      ? Object.fromEntries(
          Object.keys(item)
            .sort()
            .map((k) => [k, item[k]]),
        )
      : item,
  );
}
