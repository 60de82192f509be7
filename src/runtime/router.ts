/**
 * @internal Routes the calls of one deployment over its replicas: power of two choices on
 * ongoing requests, `maxOngoingRequests` per replica enforced strictly, a FIFO queue of at
 * most `maxQueuedRequests`, then `BackPressureError`. A timed-out or cancelled request
 * frees its slot at once and the replica's `AbortSignal` fires.
 */
import { BackPressureError, GraphExecutionError, TimeoutError } from "../errors.js";
import { unsendableArguments } from "./call-args.js";
import { deserializeError } from "./error-codec.js";
import type { SerializedError } from "./protocol.js";
import type { ReplicaClient } from "./replica-client.js";
import type { CancelScope } from "./cancel.js";
import type { PendingCall, StreamReader } from "./responses.js";

export interface CallOptions {
  /** Cancelling it answers the request with the scope's reason and frees its slot. */
  readonly cancel?: CancelScope | undefined;
  /** Fails the request with `TimeoutError` after this many milliseconds. */
  readonly timeoutMs?: number | undefined;
  /** Carried to the replica's `requestContext()`. */
  readonly requestId?: string | undefined;
  /** Buffers of the arguments that move to the replica instead of being copied. */
  readonly transfer?: readonly ArrayBuffer[] | undefined;
}

/** How the router picks among replicas: a function, so the policy can be swapped. */
export type ReplicaChooser = (
  replicas: readonly ReplicaClient[],
  maxOngoing: number,
) => ReplicaClient | undefined;

/** Power of two choices: the less busy of two random replicas, if it has a free slot. */
export const powerOfTwoChoices: ReplicaChooser = (replicas, maxOngoing) => {
  const n = replicas.length;
  if (n === 0) return undefined;
  if (n === 1) return replicas[0]!.ongoing < maxOngoing ? replicas[0] : undefined;
  const i = Math.floor(Math.random() * n);
  const j = (i + 1 + Math.floor(Math.random() * (n - 1))) % n;
  const a = replicas[i]!;
  const b = replicas[j]!;
  const best = a.ongoing <= b.ongoing ? a : b;
  if (best.ongoing < maxOngoing) return best;
  // Both sampled replicas are full: any free slot still beats queueing.
  let least: ReplicaClient | undefined;
  for (const r of replicas)
    if (r.ongoing < maxOngoing && (!least || r.ongoing < least.ongoing)) least = r;
  return least;
};

class Request implements PendingCall {
  replica: ReplicaClient | undefined;
  /** Whether this request still counts in its replica's `ongoing`. */
  holdsSlot = false;
  callId = 0;
  timer: NodeJS.Timeout | undefined;
  done = false;
  stream?: StreamReader;
  readonly #router: Router;
  #unsubscribe: (() => void) | undefined;

  constructor(
    router: Router,
    readonly method: string | undefined,
    readonly args: unknown[],
    readonly options: CallOptions,
    readonly resolveCall: (value: unknown) => void,
    readonly rejectCall: (error: unknown) => void,
  ) {
    this.#router = router;
    const { cancel, timeoutMs } = options;
    if (timeoutMs !== undefined) {
      this.timer = setTimeout(
        () => this.abandon("timeout", new TimeoutError(router.label(method), timeoutMs)),
        timeoutMs,
      );
    }
    if (cancel) {
      this.#unsubscribe = cancel.subscribe((reason) =>
        this.abandon(reason instanceof TimeoutError ? "timeout" : "abort", reason),
      );
    }
  }

  resolve(value: unknown): void {
    // A stream stays cancellable (timeout, signal) until it ends; anything else is done.
    if (!this.stream) this.#finish();
    this.resolveCall(value);
  }

  reject(error: unknown): void {
    this.#finish();
    this.rejectCall(error);
  }

  settled(): void {
    this.#finish();
    if (this.holdsSlot) {
      this.holdsSlot = false;
      this.replica?.slotFreed();
    }
  }

  toError(error: SerializedError, user: boolean): Error {
    const original = deserializeError(error);
    return user
      ? new GraphExecutionError(this.#router.deployment, this.#router.label(this.method), original)
      : original;
  }

  cancelStream(): void {
    this.replica?.cancel(this.callId, "abort");
  }

  /** Answers the caller now with `error`; frees the slot or leaves the queue. */
  abandon(reason: "timeout" | "abort", error: Error): void {
    if (this.done) return;
    if (this.replica) this.replica.cancel(this.callId, reason);
    else this.#router.dequeue(this);
    this.#finish();
    if (this.stream) this.stream.end(error);
    else this.rejectCall(error);
  }

  #finish(): void {
    if (this.done) return;
    this.done = true;
    if (this.timer) clearTimeout(this.timer);
    this.#unsubscribe?.();
  }
}

export class Router {
  readonly deployment: string;
  /** The function's name, for a function deployment (how errors name the call). */
  readonly #functionLabel: string;
  #replicas: ReplicaClient[] = [];
  #queue: Request[] = [];
  #maxOngoing: number;
  #maxQueued: number;
  #unavailable: Error | undefined;
  readonly #choose: ReplicaChooser;

  constructor(
    deployment: string,
    functionLabel: string,
    limits: { maxOngoingRequests: number; maxQueuedRequests: number },
    choose: ReplicaChooser = powerOfTwoChoices,
  ) {
    this.deployment = deployment;
    this.#functionLabel = functionLabel;
    this.#maxOngoing = limits.maxOngoingRequests;
    this.#maxQueued = limits.maxQueuedRequests;
    this.#choose = choose;
  }

  label(method: string | undefined): string {
    return method === undefined ? `${this.#functionLabel}()` : `${method}()`;
  }

  get ongoing(): number {
    let total = 0;
    for (const r of this.#replicas) total += r.ongoing;
    return total;
  }

  get queued(): number {
    return this.#queue.length;
  }

  configure(limits: { maxOngoingRequests: number; maxQueuedRequests: number }): void {
    this.#maxOngoing = limits.maxOngoingRequests;
    this.#maxQueued = limits.maxQueuedRequests;
    for (const r of this.#replicas) this.onSlotFree(r);
  }

  /** A replica that is RUNNING joins; queued requests flow to it. */
  add(replica: ReplicaClient): void {
    this.#replicas.push(replica);
    this.#unavailable = undefined;
    this.onSlotFree(replica);
  }

  remove(replica: ReplicaClient): void {
    this.#replicas = this.#replicas.filter((r) => r !== replica);
  }

  /**
   * Marks the deployment unable to serve (it failed to deploy and has no replica): queued
   * and new requests fail with `error` instead of waiting. `undefined` clears it.
   */
  setUnavailable(error: Error | undefined): void {
    this.#unavailable = error;
    if (!error || this.#replicas.length > 0) return;
    const queue = this.#queue;
    this.#queue = [];
    for (const request of queue) request.reject(error);
  }

  call(method: string | undefined, args: unknown[], options: CallOptions = {}): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (this.#unavailable && this.#replicas.length === 0) {
        reject(this.#unavailable);
        return;
      }
      if (options.cancel?.reason) {
        reject(options.cancel.reason);
        return;
      }
      const replica =
        this.#queue.length === 0 ? this.#choose(this.#replicas, this.#maxOngoing) : undefined;
      if (!replica && this.#queue.length >= this.#maxQueued) {
        reject(new BackPressureError(this.deployment, this.ongoing, this.#queue.length));
        return;
      }
      const request = new Request(this, method, args, options, resolve, reject);
      if (replica) this.#dispatch(request, replica);
      else this.#queue.push(request);
    });
  }

  #dispatch(request: Request, replica: ReplicaClient): void {
    replica.ongoing++;
    request.replica = replica;
    request.holdsSlot = true;
    try {
      request.callId = replica.call(
        request.method,
        request.args,
        request.options.transfer ?? [],
        request.options.requestId,
        request,
      );
    } catch (error) {
      // The arguments could not be sent (a value structured clone rejects): nothing was dispatched.
      request.holdsSlot = false;
      replica.ongoing--;
      request.reject(
        unsendableArguments(
          this.deployment,
          request.method ?? "call",
          request.args,
          error instanceof Error ? error : new Error(String(error)),
        ),
      );
      this.onSlotFree(replica);
    }
  }

  /** A slot on `replica` is free: the oldest queued request takes it. */
  onSlotFree(replica: ReplicaClient): void {
    while (
      this.#queue.length > 0 &&
      replica.state === "RUNNING" &&
      replica.ongoing < this.#maxOngoing
    ) {
      const request = this.#queue.shift()!;
      if (!request.done) this.#dispatch(request, replica);
    }
  }

  dequeue(request: Request): void {
    const index = this.#queue.indexOf(request);
    if (index >= 0) this.#queue.splice(index, 1);
  }
}
