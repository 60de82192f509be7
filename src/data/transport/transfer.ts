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

/** What a walk found: buffers that can move, and buffers that views copy only in part. */
interface Found {
  readonly moves: Set<ArrayBuffer>;
  viewed: Set<ArrayBuffer> | undefined;
}

function add(value: unknown, found: Found): void {
  if (value instanceof ArrayBuffer) {
    if (value.byteLength > 0) found.moves.add(value);
  } else if (ArrayBuffer.isView(value)) {
    const buffer = value.buffer;
    if (!(buffer instanceof ArrayBuffer) || buffer.byteLength === 0) return;
    if (value.byteOffset === 0 && value.byteLength === buffer.byteLength) found.moves.add(buffer);
    else (found.viewed ??= new Set()).add(buffer);
  }
}

function visit(value: unknown, depth: number, found: Found, budget: { items: number }): void {
  if (typeof value !== "object" || value === null || --budget.items < 0) return;
  if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) {
    add(value, found);
    return;
  }
  if (depth >= MAX_DEPTH) return;
  if (Array.isArray(value)) {
    for (const item of value) visit(item, depth + 1, found, budget);
    return;
  }
  if (!isPlainObject(value)) return;
  for (const key in value) visit(value[key], depth + 1, found, budget);
}

/**
 * The buffers of a call's arguments: those that can move to a receiver (`transfer`), and
 * those that a view copies only in part (`viewed`: a call must not be sent with them after
 * another call moved them, nor may another call move them while this one waits).
 */
export interface Movables {
  readonly transfer: ArrayBuffer[];
  readonly viewed: readonly ArrayBuffer[];
}

/** {@link Movables} of `values`, searched a few levels deep. */
export function movablesOf(values: readonly unknown[]): Movables {
  // Most calls carry only primitives: nothing to search, nothing allocated.
  let objects = false;
  for (const value of values) {
    if (typeof value === "object" && value !== null) {
      objects = true;
      break;
    }
  }
  if (!objects) return NOTHING;
  const found: Found = { moves: new Set(), viewed: undefined };
  const budget = { items: MAX_ITEMS };
  for (const value of values) visit(value, 0, found, budget);
  if (found.moves.size === 0 && found.viewed === undefined) return NOTHING;
  return {
    transfer: found.moves.size === 0 ? EMPTY : [...found.moves],
    viewed: found.viewed ? [...found.viewed] : EMPTY,
  };
}

/** The buffers of `values` (searched a few levels deep) that can be moved to a receiver. */
export const transferablesOf = (values: readonly unknown[]): ArrayBuffer[] =>
  movablesOf(values).transfer;

/** The buffers of one value (a result, a stream item): {@link transferablesOf} of `[value]`. */
export function transferablesOfValue(value: unknown): ArrayBuffer[] {
  return typeof value === "object" && value !== null ? transferablesOf([value]) : EMPTY;
}

const EMPTY: ArrayBuffer[] = [];
const NOTHING: Movables = { transfer: EMPTY, viewed: EMPTY };

/**
 * Buffers that may move only once: the first transfer list to claim a buffer moves it; a
 * later one that lists it again must send a copy (made before the first one moves it), and
 * once it has moved (it is detached) that copy fails, with why. A view into part of a
 * buffer is copied when it is sent, so the buffer must still be there then: a message with
 * such a view claims the buffer as viewed, and neither moves after the other.
 */
export class MoveOnce {
  readonly #claimed = new WeakSet<ArrayBuffer>();
  readonly #viewed = new WeakSet<ArrayBuffer>();

  /**
   * Claims the buffers of `transfer` (to move) and `viewed` (to copy part of); false,
   * claiming none, when one of `transfer` was claimed before in either way, or one of
   * `viewed` was claimed to move: the message must then be sent as a copy made now.
   */
  claim(transfer: Transfer, viewed: readonly ArrayBuffer[] = NO_VIEWS): boolean {
    for (const item of transfer)
      if (item instanceof ArrayBuffer && (this.#claimed.has(item) || this.#viewed.has(item)))
        return false;
    for (const buffer of viewed) if (this.#claimed.has(buffer)) return false;
    for (const item of transfer) if (item instanceof ArrayBuffer) this.#claimed.add(item);
    for (const buffer of viewed) this.#viewed.add(buffer);
    return true;
  }
}

const NO_VIEWS: readonly ArrayBuffer[] = [];
