/**
 * @internal Coalesces the messages sent together into one array. `"turn"` (the runtime's
 * side, where many callers share a channel) gathers a whole turn of the event loop and
 * sends before the next turn's I/O; `"microtask"` (inside replicas, where the answers to
 * one batch of calls are made in the same microtask checkpoint) sends as soon as the
 * current job and its microtasks are done, which costs less latency per hop. Under load
 * either turns many `postMessage` calls and thread wake-ups into a few. A message that cannot be
 * sent (a value structured clone rejects) is handed to `undeliverable`, and the rest of its
 * batch still goes. A batch goes as soon as it holds {@link MAX_BATCH} messages: the other
 * side starts on them while this one makes the rest (both threads busy at once, instead of
 * taking turns over one large batch).
 */
import type { MessagePort } from "node:worker_threads";
import { MoveOnce } from "./transfer.js";
import type { Transfer } from "./transport.js";

/**
 * The buffers this thread's messages listed for moving, in any batcher (replies and stream
 * items; calls claim theirs when they are made, in their router). Without it a second
 * message listing a buffer was lost: Node 20's `postMessage` given a detached buffer to
 * transfer neither throws nor delivers, and a buffer listed twice fails a whole batch.
 */
const moving = new MoveOnce();

export class MessageBatcher<M> {
  readonly #send: (message: M | M[], transfer: Transfer) => void;
  readonly #undeliverable: (message: M, error: Error) => void;
  #queue: M[] = [];
  #transfer: (ArrayBuffer | MessagePort)[] = [];
  #transferOf: Map<M, Transfer> | undefined;
  #turnOpen = false;
  readonly #schedule: (flush: () => void) => void;
  readonly #moves: boolean;

  /**
   * `moves`: whether `send` moves the buffers it is given (a `MessagePort`); a channel that
   * copies everything (a socket, NATS, a child process's IPC) ignores transfer lists.
   */
  constructor(
    send: (message: M | M[], transfer: Transfer) => void,
    undeliverable: (message: M, error: Error) => void,
    gather: "turn" | "microtask" = "turn",
    moves = true,
  ) {
    this.#send = send;
    this.#undeliverable = undeliverable;
    this.#schedule = gather === "turn" ? setImmediate : queueMicrotask;
    this.#moves = moves;
  }

  /**
   * Queues `message`. `now`: it carries values its sender may change once this returns (a
   * user's arguments, a result or stream item the user's code holds): the queue goes at
   * once, so the message holds the values it was made with, as `postMessage` would.
   */
  push(message: M, transfer?: Transfer, now = false): void {
    if (transfer && transfer.length > 0) {
      if (!this.#moves) {
        transfer = undefined;
      } else if (!moving.claim(transfer)) {
        // Another message moves (or has moved) one of these buffers: this one goes as a copy.
        try {
          message = structuredClone(message);
        } catch (error) {
          this.#undeliverable(message, error instanceof Error ? error : new Error(String(error)));
          return;
        }
        transfer = undefined;
      }
    }
    this.#queue.push(message);
    if (transfer && transfer.length > 0) {
      this.#transfer.push(...transfer);
      (this.#transferOf ??= new Map()).set(message, transfer);
    }
    if (now || this.#queue.length >= MAX_BATCH) {
      this.flush();
    } else if (!this.#turnOpen) {
      // A message sent at once schedules nothing: a flush scheduled for an empty queue
      // would cost a turn of the event loop (setImmediate) or a microtask for nothing.
      this.#turnOpen = true;
      this.#schedule(this.#scheduled);
    }
  }

  /**
   * Runs `handle` (the handling of a message that arrived), then sends what it queued:
   * meanwhile nothing schedules a flush of its own, since this one follows at once.
   */
  within(handle: () => void): void {
    const open = this.#turnOpen;
    this.#turnOpen = true;
    try {
      handle();
    } finally {
      this.#turnOpen = open;
      this.flush();
    }
  }

  readonly #scheduled = (): void => {
    this.#turnOpen = false;
    this.flush();
  };

  /**
   * Sends what is queued now, before the scheduled flush (which then finds less or nothing):
   * a replica's answers to the calls one message brought go as soon as that message is
   * handled, without waiting for a microtask (about 1.5 µs less per round trip here).
   */
  flush(): void {
    if (this.#queue.length === 0) return;
    const queue = this.#queue;
    const transfer = this.#transfer;
    const transferOf = this.#transferOf;
    this.#queue = [];
    this.#transfer = [];
    this.#transferOf = undefined;
    try {
      this.#send(queue.length === 1 ? queue[0]! : queue, transfer);
    } catch {
      // One message cannot be cloned (or the channel is gone): send them one by one.
      for (const message of queue) {
        try {
          this.#send(message, transferOf?.get(message) ?? EMPTY);
        } catch (error) {
          this.#undeliverable(message, error instanceof Error ? error : new Error(String(error)));
        }
      }
    }
  }
}

/**
 * The most messages one batch holds: a full batch goes at once, so the other side starts
 * on it while this one makes the rest (a pipeline, not two threads taking turns).
 * Measured here (2 vCPUs):
 * - 64 calls in flight to one replica (`npm run bench handle`): unbounded batches (64
 *   calls, then 64 answers) ran about 100k calls/s with each thread idle half the time;
 *   32 ran 160–270k/s; 8 ran 336k/s.
 * - The HTTP diamond with 32 connections (`npm run bench http`): with 32, every request
 *   moved through the stages together (about 27 calls per message), and the front door's
 *   thread sat idle a quarter of the time while each stage ran; with 8 it is busy about
 *   90% of the time: 0.39× → 0.52× of bare Fastify (median of 10 interleaved rounds;
 *   `npm run bench http`: 0.52× → 0.57×); 16: 0.49×, 4: 0.47×, 2: 0.37× (each message
 *   wakes a thread, which costs the sender several µs on this VM). bench/RESULTS.md has
 *   the runs.
 */
export const MAX_BATCH = 8;

const EMPTY: Transfer = [];

/**
 * Whether `value` is an object its sender could change after handing it over (a primitive
 * cannot be changed, so a message of primitives can wait for its batch).
 */
export function changeable(value: unknown): boolean {
  return typeof value === "object" && value !== null;
}

/** Calls `handle` for a message or for each message of a batch. */
export function unbatch<M>(data: M | M[], handle: (message: M) => void): void {
  if (Array.isArray(data)) for (const message of data) handle(message);
  else handle(data);
}
