/**
 * @internal The pending side of a request/response channel: a map of calls awaiting their
 * {@link Response}, including streams that deliver items until they end. The map can be
 * rejected whole when the peer exits.
 */
import { STREAM_WINDOW, type Response, type SerializedError } from "../wire/protocol.js";
import { CallTable } from "./call-table.js";

/**
 * @internal The items of a streamed response as they arrive, held by the call's router until
 * the stream ends; its consumer holds a {@link StreamReader} of it.
 */
export class StreamBuffer implements AsyncIterableIterator<unknown> {
  readonly #items: unknown[] = [];
  /**
   * `next()` calls waiting for an item, oldest first: each gets the next item in order, as
   * from an async generator (a consumer may call `next()` again before the last settled).
   */
  #waiting: { resolve: (r: IteratorResult<unknown>) => void; reject: (e: unknown) => void }[] = [];
  #done = false;
  #error: Error | undefined;
  readonly #onReturn: () => void;
  readonly #onTaken: ((n: number) => void) | undefined;
  /** Items the consumer took since credit was last given for them. */
  #taken = 0;
  #onEnd: (() => void)[] | undefined;

  /**
   * `onReturn` runs when the consumer stops early (to cancel the producer); `onTaken`, each
   * time the consumer has taken half of {@link STREAM_WINDOW} items (to give the producer
   * that much credit again).
   */
  constructor(onReturn: () => void, onTaken?: (n: number) => void) {
    this.#onReturn = onReturn;
    this.#onTaken = onTaken;
  }

  push(item: unknown): void {
    const waiting = this.#waiting.shift();
    if (waiting) {
      this.#took();
      waiting.resolve({ value: item, done: false });
    } else {
      this.#items.push(item);
    }
  }

  #took(): void {
    if (!this.#onTaken || ++this.#taken < STREAM_WINDOW / 2) return;
    this.#taken = 0;
    if (!this.#done) this.#onTaken(STREAM_WINDOW / 2);
  }

  /** Runs `listener` once the stream is over (ended, failed, or stopped by its consumer). */
  onEnd(listener: () => void): void {
    if (this.#done) listener();
    else (this.#onEnd ??= []).push(listener);
  }

  #ended(): void {
    const listeners = this.#onEnd ?? [];
    this.#onEnd = undefined;
    for (const listener of listeners) listener();
  }

  end(error?: Error): void {
    if (this.#done) return;
    this.#done = true;
    this.#error = error;
    this.#ended();
    const waiting = this.#waiting;
    this.#waiting = [];
    // The first waiting next() gets the error, as from a generator that threw; the rest end.
    if (error !== undefined && waiting.length > 0) {
      this.#error = undefined;
      waiting.shift()!.reject(error);
    }
    for (const w of waiting) w.resolve({ value: undefined, done: true });
  }

  next(): Promise<IteratorResult<unknown>> {
    if (this.#items.length > 0) {
      this.#took();
      return Promise.resolve({ value: this.#items.shift(), done: false });
    }
    if (this.#done) {
      if (this.#error !== undefined) {
        const error = this.#error;
        this.#error = undefined;
        return Promise.reject(error);
      }
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => this.#waiting.push({ resolve, reject }));
  }

  return(): Promise<IteratorResult<unknown>> {
    if (!this.#done) {
      this.#done = true;
      this.#items.length = 0;
      // The next() calls still waiting for an item end too.
      const waiting = this.#waiting;
      this.#waiting = [];
      for (const w of waiting) w.resolve({ value: undefined, done: true });
      this.#onReturn();
      this.#ended();
    }
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

/**
 * Streams whose reader was collected before they ended (never read to the end, never
 * stopped): each is stopped as its consumer's `return()` would, which cancels the producer
 * and frees its replica's slot. Otherwise a stream no one reads would hold the slot for
 * good, since the producer waits for credit (see STREAM_WINDOW).
 */
const unread = new FinalizationRegistry<StreamBuffer>((buffer) => void buffer.return());

/**
 * Items of a streamed response, consumed with `for await`: what a caller is given. Only
 * its consumer holds it (the runtime holds the buffer behind it), so that a stream its
 * consumer dropped can be stopped once it is collected.
 */
export class StreamReader implements AsyncIterableIterator<unknown> {
  readonly #buffer: StreamBuffer;

  constructor(buffer: StreamBuffer) {
    this.#buffer = buffer;
    unread.register(this, buffer, buffer);
    buffer.onEnd(() => unread.unregister(buffer));
  }

  next(): Promise<IteratorResult<unknown>> {
    return this.#buffer.next();
  }

  return(): Promise<IteratorResult<unknown>> {
    return this.#buffer.return();
  }

  /** Runs `listener` once the stream is over (ended, failed, or stopped by its consumer). */
  onEnd(listener: () => void): void {
    this.#buffer.onEnd(listener);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

export interface PendingCall {
  resolve(value: unknown): void;
  reject(error: Error): void;
  /** Runs once the call is over: answered, failed, or its stream ended. */
  settled?(): void;
  /** Builds the error a failed call rejects with. */
  toError(error: SerializedError, user: boolean): Error;
  /** Cancels the producer when a stream's consumer stops early. */
  cancelStream?(): void;
  /** Gives the producer of a stream credit for `n` more items (see STREAM_WINDOW). */
  credit?(n: number): void;
  stream?: StreamBuffer;
}

/** Calls this thread has sent, on any channel, that have no answer yet. */
let awaiting = 0;

/**
 * Whether this thread waits for no answer at all: a call made now is the only one, and
 * nothing else it sends this turn will join it in a batch (see `Request.alone` in the
 * router). Anything long-lived in flight (an open stream, a health check, a call to a hung
 * replica) keeps calls batched while it lasts, as they were before.
 */
export function awaitingNothing(): boolean {
  return awaiting === 0;
}

export class Responses {
  /** Not a `Map`: see {@link CallTable} (a `Map` here made every young collection slow). */
  readonly #pending = new CallTable<PendingCall>();

  get size(): number {
    return this.#pending.size;
  }

  /** Holds `call` until its response; returns the id its messages carry. */
  add(call: PendingCall): number {
    const id = this.#pending.add(call); // (counted once held: add can throw)
    awaiting++;
    return id;
  }

  /** Holds `call` under an id of the caller's own (control messages: negative ids). */
  addWithId(id: number, call: PendingCall): void {
    const held = this.#pending.has(id);
    this.#pending.set(id, call);
    if (!held) awaiting++;
  }

  /**
   * Takes call `id` out of the table: it is no longer awaited (after a cancel, a late
   * response to it is ignored). The one place that counts a call down.
   */
  forget(id: number): PendingCall | undefined {
    const call = this.#pending.take(id);
    if (call) awaiting--;
    return call;
  }

  onResponse(message: Response): void {
    const call = this.#pending.get(message.id);
    if (!call) return;
    switch (message.t) {
      case "ok":
        this.forget(message.id);
        call.settled?.();
        call.resolve(message.v);
        return;
      case "err": {
        this.forget(message.id);
        call.settled?.();
        const error = call.toError(message.e, message.user);
        if (call.stream) call.stream.end(error);
        else call.reject(error);
        return;
      }
      case "stream":
        call.stream = new StreamBuffer(
          () => {
            if (this.forget(message.id)) {
              // Cancel first: settling frees the slot, and with it the connection to cancel on.
              call.cancelStream?.();
              call.settled?.();
            }
          },
          call.credit && ((n) => call.credit!(n)),
        );
        call.resolve(new StreamReader(call.stream));
        return;
      case "item":
        call.stream?.push(message.v);
        return;
      case "end":
        this.forget(message.id);
        call.settled?.();
        call.stream?.end();
        return;
    }
  }

  /** The ids of the calls pending now. */
  ids(): number[] {
    return this.#pending.ids();
  }

  /** Rejects every pending call (the peer is gone). */
  rejectAll(error: () => Error): void {
    const calls = this.#pending.values();
    this.#pending.clear();
    awaiting -= calls.length;
    for (const call of calls) {
      call.settled?.();
      if (call.stream) call.stream.end(error());
      else call.reject(error());
    }
  }
}
