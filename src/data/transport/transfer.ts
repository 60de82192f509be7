/**
 * @internal Which buffers of a value can be transferred (moved, not copied) to another
 * thread. A typed array moves only when it views its whole buffer: a view into a larger
 * buffer (a pooled `Buffer`, a `subarray`) is copied, so moving it cannot detach data the
 * sender still uses elsewhere.
 */
import { isPlainObject } from "../../values.js";
import type { Transfer } from "./transport.js";

const MAX_DEPTH = 3;
const MAX_ITEMS = 1024;

function add(value: unknown, out: Set<ArrayBuffer>): void {
  if (value instanceof ArrayBuffer) {
    if (value.byteLength > 0) out.add(value);
  } else if (ArrayBuffer.isView(value)) {
    const buffer = value.buffer;
    if (
      buffer instanceof ArrayBuffer &&
      value.byteOffset === 0 &&
      value.byteLength === buffer.byteLength &&
      buffer.byteLength > 0
    ) {
      out.add(buffer);
    }
  }
}

function visit(
  value: unknown,
  depth: number,
  out: Set<ArrayBuffer>,
  budget: { items: number },
): void {
  if (typeof value !== "object" || value === null || --budget.items < 0) return;
  if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) {
    add(value, out);
    return;
  }
  if (depth >= MAX_DEPTH) return;
  if (Array.isArray(value)) {
    for (const item of value) visit(item, depth + 1, out, budget);
    return;
  }
  if (!isPlainObject(value)) return;
  for (const key in value) visit(value[key], depth + 1, out, budget);
}

/** The buffers of `values` (searched a few levels deep) that can be moved to a receiver. */
export function transferablesOf(values: readonly unknown[]): ArrayBuffer[] {
  // Most calls carry only primitives: nothing to search, nothing allocated.
  let objects = false;
  for (const value of values) {
    if (typeof value === "object" && value !== null) {
      objects = true;
      break;
    }
  }
  if (!objects) return EMPTY;
  const out = new Set<ArrayBuffer>();
  const budget = { items: MAX_ITEMS };
  for (const value of values) visit(value, 0, out, budget);
  return out.size === 0 ? EMPTY : [...out];
}

/** The buffers of one value (a result, a stream item): {@link transferablesOf} of `[value]`. */
export function transferablesOfValue(value: unknown): ArrayBuffer[] {
  return typeof value === "object" && value !== null ? transferablesOf([value]) : EMPTY;
}

const EMPTY: ArrayBuffer[] = [];

/**
 * Buffers that may move only once: the first transfer list to claim a buffer moves it; a
 * later one that lists it again must send a copy (made before the first one moves it), and
 * once it has moved (it is detached) that copy fails, with why.
 */
export class MoveOnce {
  readonly #claimed = new WeakSet<ArrayBuffer>();

  /** Claims the buffers of `transfer`; false (claiming none) when one was claimed before. */
  claim(transfer: Transfer): boolean {
    for (const item of transfer)
      if (item instanceof ArrayBuffer && this.#claimed.has(item)) return false;
    for (const item of transfer) if (item instanceof ArrayBuffer) this.#claimed.add(item);
    return true;
  }
}
