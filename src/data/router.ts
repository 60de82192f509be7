/**
 * @internal Routes the calls of one caller to one deployment over its replicas. Every
 * caller owns its routers (the front door, and each replica that holds handles); the
 * control plane only publishes which replicas run ({@link Router.setReplicas}).
 *
 * Power of two choices on this router's own in-flight counts (it is their only writer),
 * at most `maxOngoingRequests` per replica from this router, a FIFO queue of at most
 * `maxQueuedRequests`, then `BackPressureError`. Several routers may fill one replica
 * between them: the replica is the authority on its cap and answers `busy` to what
 * exceeds it, and the router sends that call to another replica or queues it (at the
 * front) until a replica says a slot is free. A timed-out or cancelled request frees its
 * slot at once and the replica's `AbortSignal` fires. A request that waits in the queue
 * longer than `maxQueueWaitMs` fails with `QueueTimeoutError`.
 *
 * Model multiplexing (Ray Serve's `multiplexed_model_id`): a request that names a model goes
 * to a replica that has it loaded (as the replicas report it, or as this router sent it
 * there); while those are full it waits up to {@link MODEL_MATCH_WAIT_MS}, then takes any
 * free replica, which loads the model too: a model in demand spreads. A model no replica has
 * goes to a free replica with the fewest models.
 */
import {
  BackPressureError,
  GraphExecutionError,
  QueueTimeoutError,
  TimeoutError,
} from "../errors.js";
import { unsendableArguments, unsendableNested } from "../dag/call-args.js";
import { deserializeError } from "../wire/error-codec.js";
import type { SerializedError } from "../wire/protocol.js";
import type { CancelScope } from "./cancel.js";
import type { ReplicaConnection, RoutedCall } from "./connection.js";
import { awaitingNothing, type StreamBuffer } from "./responses.js";
import { changeable } from "./transport/batch.js";
import { MoveOnce, transferablesOf } from "./transport/transfer.js";
import type { Transfer } from "./transport/transport.js";

export interface CallOptions {
  /** Cancelling it answers the request with the scope's reason and frees its slot. */
  readonly cancel?: CancelScope | undefined;
  /** Fails the request with `TimeoutError` after this many milliseconds. */
  readonly timeoutMs?: number | undefined;
  /** Carried to the replica's `requestContext()`. */
  readonly requestId?: string | undefined;
  /** Buffers of the arguments that move to the replica instead of being copied. */
  readonly transfer?: Transfer | undefined;
  /** Buffers the arguments view only in part (copied when sent; see `MoveOnce`). */
  readonly viewed?: readonly ArrayBuffer[] | undefined;
  /** The model the call is for: carried to `requestContext().multiplexedModelId`. */
  readonly multiplexedModelId?: string | undefined;
  /** The caller's W3C trace context: the replica's span of the call is its child. */
  readonly traceparent?: string | undefined;
  /**
   * The caller never touches the arguments again (a graph walk's own values): they may wait
   * in a batch or the queue as they are. Otherwise (a user's handle call) arguments that
   * hold objects are taken when the call is made, as `postMessage` takes them: sent at once,
   * or copied when the call must wait in the queue. A caller may change them right after.
   */
  readonly owned?: boolean | undefined;
}

/** A router's limits (a deployment's resolved options fit). */
export interface RouterLimits {
  readonly maxOngoingRequests: number;
  readonly maxQueuedRequests: number;
  /** How long a request may wait in the queue; absent: up to its own timeout. */
  readonly maxQueueWaitMs?: number | undefined;
}

/**
 * How long a request for a model waits for a replica that has it loaded before it takes
 * any free replica (Ray Serve's `RAY_SERVE_MULTIPLEXED_MODEL_ID_MATCHING_TIMEOUT_S`, 1 s).
 */
export const MODEL_MATCH_WAIT_MS = 1000;

/** A replica as the router sees it: its connection and this router's calls on it. */
export interface RoutedReplica {
  readonly connection: ReplicaConnection;
  /** This router's calls in flight on the replica. */
  readonly ongoing: number;
}

const NO_MODELS: ReadonlySet<string> = new Set();
/** Buffers a call of this thread listed for moving when it was made (see `#moveOnce`). */
const callMoves = new MoveOnce();
const NO_TRANSFER: Transfer = [];
const SETTLED = (): void => undefined;
const NO_VIEWED: readonly ArrayBuffer[] = [];

/** How the router picks among replicas: a function, so the policy can be swapped. */
export type ReplicaChooser = (
  replicas: readonly RoutedReplica[],
  maxOngoing: number,
  /** The replica whose calls (from this router) last all ended, if any. */
  warm?: RoutedReplica,
) => RoutedReplica | undefined;

/**
 * Power of two choices: the less busy of two random replicas, if it has a free slot. Before
 * that, an idle `warm` replica (the one that answered last) is taken: its thread is awake and
 * its code and data are in the caches. On the 2-vCPU machine of bench/RESULTS.md a serial
 * call to one of 3 replicas took 48 µs when calls went round them, 31 µs kept on one. Under
 * load, when it is busy, the calls spread.
 */
export const powerOfTwoChoices: ReplicaChooser = (replicas, maxOngoing, warm) => {
  const n = replicas.length;
  if (n === 0) return undefined;
  if (warm && warm.ongoing === 0 && n > 1 && replicas.includes(warm)) return warm;
  if (n === 1) return replicas[0]!.ongoing < maxOngoing ? replicas[0] : undefined;
  const i = Math.floor(Math.random() * n);
  const j = (i + 1 + Math.floor(Math.random() * (n - 1))) % n;
  const a = replicas[i]!;
  const b = replicas[j]!;
  const best = a.ongoing <= b.ongoing ? a : b;
  if (best.ongoing < maxOngoing) return best;
  // Both sampled replicas are full: any free slot still beats queueing.
  let least: RoutedReplica | undefined;
  for (const r of replicas)
    if (r.ongoing < maxOngoing && (!least || r.ongoing < least.ongoing)) least = r;
  return least;
};

/** One replica in this router: the counts only this router writes. */
class Slot implements RoutedReplica {
  ongoing = 0;
  /** The replica answered `busy` and has not said a slot is free since. */
  full = false;
  /** The replica is stopping (or gone): nothing more is sent to it. */
  out = false;
  /** Models this router sent here since the replica last reported its loaded models. */
  #sent = new Set<string>();
  #reported: ReadonlySet<string> = NO_MODELS;
  constructor(readonly connection: ReplicaConnection) {}

  /** Whether the replica has `model` loaded (or is loading it for this router's call). */
  has(model: string): boolean {
    this.#sync();
    return this.#reported.has(model) || this.#sent.has(model);
  }

  get modelCount(): number {
    this.#sync();
    let n = this.#reported.size;
    for (const model of this.#sent) if (!this.#reported.has(model)) n++;
    return n;
  }

  /** Only a replica that multiplexes loads what it is sent (and reports it again). */
  sentModel(model: string): void {
    if (!this.connection.multiplexed) return;
    this.#sync();
    this.#sent.add(model);
  }

  /** A new report supersedes what this router assumed. */
  #sync(): void {
    if (this.connection.models === this.#reported) return;
    this.#reported = this.connection.models;
    this.#sent.clear();
  }
}

class Request implements RoutedCall {
  slot: Slot | undefined;
  callId = 0;
  timer: NodeJS.Timeout | undefined;
  done = false;
  /** The model asked for, if any. */
  readonly model: string | undefined;
  /** Waited long enough for a replica with its model: any replica takes it. */
  anyReplica = false;
  /**
   * When it first waited in the queue under a `maxQueueWaitMs` (`Date.now()`; 0: not yet):
   * the clock is read only for such a request, and most calls never wait.
   */
  #arrived = 0;
  #queueTimer: NodeJS.Timeout | undefined;
  #matchTimer: NodeJS.Timeout | undefined;
  stream?: StreamBuffer;
  readonly #router: Router;
  #unsubscribe: (() => void) | undefined;

  /** Buffers of the arguments that move to the replica (see {@link CallOptions.transfer}). */
  transfer: Transfer;
  /** Buffers the arguments view in part (see {@link CallOptions.viewed}). */
  viewed: readonly ArrayBuffer[];
  /** No one else changes the arguments (see {@link CallOptions.owned}). */
  owned: boolean;

  constructor(
    router: Router,
    readonly method: string | undefined,
    public args: unknown[],
    readonly options: CallOptions,
    public resolveCall: (value: unknown) => void,
    public rejectCall: (error: unknown) => void,
  ) {
    this.#router = router;
    this.transfer = options.transfer ?? NO_TRANSFER;
    this.viewed = options.viewed ?? NO_VIEWED;
    // A call that moves buffers keeps its batch and its place in the queue as it is: the
    // buffers are the caller's no more, and another call given the same array at once gets
    // a copy of it while this one has not left (see `#moveOnce`).
    this.owned =
      options.owned === true ||
      this.transfer.length > 0 ||
      this.viewed.length > 0 ||
      !args.some(changeable);
    this.model = options.multiplexedModelId;
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

  /**
   * The request waits in the queue: it fails once it has waited `maxQueueWaitMs` since it
   * first waited there under that limit (a request a replica handed back waits on from
   * then), and a request for a model stops waiting for its replicas after
   * {@link MODEL_MATCH_WAIT_MS}.
   */
  queued(maxQueueWaitMs: number | undefined, matchWaitMs: number): void {
    if (maxQueueWaitMs !== undefined && !this.#queueTimer) {
      if (this.#arrived === 0) this.#arrived = Date.now();
      const left = Math.max(0, this.#arrived + maxQueueWaitMs - Date.now());
      this.#queueTimer = setTimeout(() => {
        this.#queueTimer = undefined;
        if (this.slot) return;
        const error = new QueueTimeoutError(
          this.#router.deployment,
          Date.now() - this.#arrived,
          this.options.requestId,
        );
        this.abandon("timeout", error);
      }, left);
    }
    if (this.model !== undefined && !this.anyReplica && !this.#matchTimer) {
      this.#matchTimer = setTimeout(() => {
        this.#matchTimer = undefined;
        this.anyReplica = true;
        if (!this.slot && !this.done) this.#router.tryQueued(this);
      }, matchWaitMs);
    }
  }

  /** The request left the queue for a replica. */
  dispatched(): void {
    clearTimeout(this.#queueTimer);
    this.#queueTimer = undefined;
  }

  /**
   * Whether this call may go at once though nothing requires it: this thread awaits no
   * answer at all, so nothing is coming that would join it in a batch (under load
   * something always is in flight), and waiting for the end of the turn would only add
   * to its latency. Not a call that moves or views buffers: another call made with the
   * same array in the same turn gets a copy while this one has not left (`#moveOnce`).
   */
  alone(): boolean {
    return this.transfer.length === 0 && this.viewed.length === 0 && awaitingNothing();
  }

  resolve(value: unknown): void {
    // A stream stays cancellable (timeout, signal) until it ends; anything else is done.
    if (!this.stream) this.#finish();
    const resolve = this.resolveCall;
    // Its promise (and the stream reader it holds) is the caller's alone from now on: a
    // stream's reader must be collectable while its call is under way (see `unread`).
    this.resolveCall = this.rejectCall = SETTLED;
    resolve(value);
  }

  reject(error: unknown): void {
    this.#finish();
    this.rejectCall(error);
  }

  settled(): void {
    this.#finish();
    this.#release();
  }

  busy(closing: boolean, args?: unknown[]): void {
    // The buffers this call moved are detached here: it goes again with the replica's.
    if (args) {
      this.args = args;
      this.transfer = transferablesOf(args);
      this.viewed = NO_VIEWED;
      this.owned = true;
    }
    const slot = this.slot;
    if (slot) {
      if (closing) slot.out = true;
      else slot.full = true;
    }
    this.#release();
    if (!this.done) this.#router.retry(this);
  }

  toError(error: SerializedError, user: boolean): Error {
    const original = deserializeError(error);
    return user
      ? new GraphExecutionError(this.#router.deployment, this.#router.label(this.method), original)
      : original;
  }

  cancelStream(): void {
    this.slot?.connection.cancel(this.callId, "abort");
  }

  credit(n: number): void {
    this.slot?.connection.credit(this.callId, n);
  }

  /** Answers the caller now with `error`; frees the slot or leaves the queue. */
  abandon(reason: "timeout" | "abort", error: Error): void {
    if (this.done) return;
    if (this.slot) this.slot.connection.cancel(this.callId, reason);
    else this.#router.dequeue(this);
    this.#finish();
    this.#release();
    if (this.stream) this.stream.end(error);
    else this.rejectCall(error);
  }

  #release(): void {
    const slot = this.slot;
    if (!slot) return;
    this.slot = undefined;
    slot.ongoing--;
    this.#router.released(slot);
  }

  #finish(): void {
    if (this.done) return;
    this.done = true;
    if (this.timer) clearTimeout(this.timer);
    clearTimeout(this.#queueTimer);
    clearTimeout(this.#matchTimer);
    this.#unsubscribe?.();
  }
}

export class Router {
  readonly deployment: string;
  /** The function's name, for a function deployment (how errors name the call). */
  readonly #functionLabel: string;
  /** Replicas that take calls: running, not stopping, not full. */
  #slots: Slot[] = [];
  #ready: Slot[] = [];
  #queue: Request[] = [];
  #maxOngoing: number;
  #maxQueued: number;
  #maxQueueWait: number | undefined;
  #unavailable: Error | undefined;
  readonly #choose: ReplicaChooser;
  readonly #matchWaitMs: number;
  /** The replica that last became idle in this router's view (see `#pick`). */
  #warm: Slot | undefined;

  /** `matchWaitMs`: see {@link MODEL_MATCH_WAIT_MS}. */
  constructor(
    deployment: string,
    functionLabel: string,
    limits: RouterLimits,
    choose: ReplicaChooser = powerOfTwoChoices,
    matchWaitMs = MODEL_MATCH_WAIT_MS,
  ) {
    this.deployment = deployment;
    this.#functionLabel = functionLabel;
    this.#maxOngoing = limits.maxOngoingRequests;
    this.#maxQueued = limits.maxQueuedRequests;
    this.#maxQueueWait = limits.maxQueueWaitMs;
    this.#choose = choose;
    this.#matchWaitMs = matchWaitMs;
  }

  label(method: string | undefined): string {
    return method === undefined ? `${this.#functionLabel}()` : `${method}()`;
  }

  /** This router's calls in flight. */
  get ongoing(): number {
    let total = 0;
    for (const slot of this.#slots) total += slot.ongoing;
    return total;
  }

  get queued(): number {
    return this.#queue.length;
  }

  /** The replicas this router sends to, by id. */
  get replicas(): readonly string[] {
    return this.#live().map((c) => c.replica);
  }

  configure(limits: RouterLimits): void {
    this.#maxOngoing = limits.maxOngoingRequests;
    this.#maxQueued = limits.maxQueuedRequests;
    this.#maxQueueWait = limits.maxQueueWaitMs;
    for (const slot of this.#slots) {
      slot.full = false;
      this.onSlotFree(slot);
    }
  }

  /**
   * The replicas that run now (the control plane's publication): new ones take queued
   * requests; removed ones get nothing more (their calls in flight finish).
   */
  setReplicas(connections: readonly ReplicaConnection[]): void {
    const known = new Map(this.#slots.map((s) => [s.connection, s]));
    const next: Slot[] = [];
    for (const connection of connections) {
      const slot = known.get(connection) ?? new Slot(connection);
      known.delete(connection);
      connection.onFree = () => {
        slot.full = false;
        this.onSlotFree(slot);
      };
      next.push(slot);
    }
    // Removed replicas keep their slots while calls on them finish (for `ongoing`).
    for (const slot of known.values()) {
      slot.out = true;
      if (slot.ongoing > 0) next.push(slot);
    }
    this.#slots = next;
    this.#refresh();
    if (this.#ready.length > 0) this.#unavailable = undefined;
    for (const slot of this.#ready) this.onSlotFree(slot);
  }

  #live(): ReplicaConnection[] {
    return this.#slots.filter((s) => !s.out).map((s) => s.connection);
  }

  #refresh(): void {
    this.#ready = this.#slots.filter((s) => !s.out && !s.full && !s.connection.closed);
  }

  /**
   * Marks the deployment unable to serve (it failed to deploy and has no replica): queued
   * and new requests fail with `error` instead of waiting. `undefined` clears it.
   */
  setUnavailable(error: Error | undefined): void {
    this.#unavailable = error;
    if (!error || this.#live().length > 0) return;
    const queue = this.#queue;
    this.#queue = [];
    for (const request of queue) request.reject(error);
  }

  call(method: string | undefined, args: unknown[], options: CallOptions = {}): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (this.#unavailable && this.#live().length === 0) {
        reject(this.#unavailable);
        return;
      }
      if (options.cancel?.reason) {
        reject(options.cancel.reason);
        return;
      }
      // Queued requests take every free slot they may (see onSlotFree), so a free slot
      // here is one none of them may take: a new request takes it without jumping the line.
      const slot = this.#pick(options.multiplexedModelId, false);
      if (!slot && this.#queue.length >= this.#maxQueued) {
        reject(new BackPressureError(this.deployment, this.ongoing, this.#queue.length));
        return;
      }
      if (!slot) {
        // It would wait: a part that cannot be sent fails it now, not when it leaves the queue.
        const unsendable = unsendableNested(this.deployment, method ?? "call", args);
        if (unsendable) {
          reject(unsendable);
          return;
        }
      }
      const request = new Request(this, method, args, options, resolve, reject);
      if ((request.transfer.length > 0 || request.viewed.length > 0) && !this.#moveOnce(request))
        return;
      if (slot) this.#dispatch(request, slot);
      else if (this.#keep(request)) this.#enqueue(request, false);
    });
  }

  /**
   * A call that must wait (in the queue, or for a replica that is away) keeps arguments its
   * caller could change meanwhile only as a copy (see {@link #takeArguments}). Not a call
   * that moves or views a typed array: it waits with its arguments as they are (a tensor is
   * not copied to wait; copying a view copies its whole buffer, and a `Buffer` would arrive
   * as a `Uint8Array`), and its caller changes nothing in them until it is sent (README).
   * Returns false when they cannot be copied (the call was answered with why).
   */
  #keep(request: Request): boolean {
    return request.owned || this.#takeArguments(request);
  }

  /**
   * A user's call that must wait: its arguments are copied now, so that what its caller
   * changes next does not reach the replica. Returns false when they cannot be copied (the
   * call was answered with why).
   */
  #takeArguments(request: Request): boolean {
    try {
      request.args = structuredClone(request.args);
    } catch (error) {
      this.#unsendable(request, error);
      return false;
    }
    request.transfer = transferablesOf(request.args);
    request.viewed = NO_VIEWED;
    request.owned = true;
    return true;
  }

  /**
   * A buffer moves with one call only: the first that lists it claims it when it is made.
   * A later call that lists a claimed buffer (while the first waits in a queue or a batch,
   * or after it moved) gets a copy of its arguments now, before the first one moves them;
   * so does a call with a view into part of a claimed buffer, and a call that would move a
   * buffer an earlier call views in part. Returns false when the arguments cannot be
   * copied (the call was answered with why).
   */
  #moveOnce(request: Request): boolean {
    if (callMoves.claim(request.transfer, request.viewed)) return true;
    return this.#takeArguments(request);
  }

  /** Answers `request` with why its arguments (which structured clone refused) cannot be sent. */
  #unsendable(request: Request, error: unknown): void {
    request.reject(
      unsendableArguments(
        this.deployment,
        request.method ?? "call",
        request.args,
        error instanceof Error ? error : new Error(String(error)),
      ),
    );
  }

  #enqueue(request: Request, first: boolean): void {
    if (first) this.#queue.unshift(request);
    else this.#queue.push(request);
    request.queued(this.#maxQueueWait, this.#matchWaitMs);
  }

  /**
   * A replica for a request: any (power of two choices) without a model; with one, a
   * replica that has it, else (none has it, or `anyReplica`) a free one with the fewest.
   */
  #pick(model: string | undefined, anyReplica: boolean): Slot | undefined {
    if (model === undefined)
      return this.#choose(this.#ready, this.#maxOngoing, this.#warm) as Slot | undefined;
    const holders = this.#ready.filter((s) => s.has(model));
    const holder = this.#choose(holders, this.#maxOngoing) as Slot | undefined;
    if (holder || (!anyReplica && this.#held(model))) return holder;
    const free = this.#ready.filter((s) => s.ongoing < this.#maxOngoing);
    if (free.length === 0) return undefined;
    const fewest = Math.min(...free.map((s) => s.modelCount));
    return this.#choose(
      free.filter((s) => s.modelCount === fewest),
      this.#maxOngoing,
    ) as Slot | undefined;
  }

  /** Whether a replica that takes calls has `model` (full or not). */
  #held(model: string): boolean {
    return this.#slots.some((s) => !s.out && !s.connection.closed && s.has(model));
  }

  /** Whether queued `request` may take a free slot on `slot`. */
  #mayTake(request: Request, slot: Slot): boolean {
    const model = request.model;
    return model === undefined || request.anyReplica || slot.has(model) || !this.#held(model);
  }

  /** A queued request may now take any replica: it goes if one is free. */
  tryQueued(request: Request): void {
    const slot = this.#pick(request.model, request.anyReplica);
    if (!slot) return;
    this.dequeue(request);
    this.#dispatch(request, slot);
  }

  #dispatch(request: Request, slot: Slot): void {
    // Not sent now (its replica is away): it goes elsewhere later, as it was made.
    if (slot.connection.away && !this.#keep(request)) return;
    slot.ongoing++;
    request.slot = slot;
    request.dispatched();
    if (request.model !== undefined) slot.sentModel(request.model);
    try {
      request.callId = slot.connection.call(
        request.method,
        request.args,
        request.transfer,
        request.options.requestId,
        request,
        request.model,
        request.options.traceparent,
        !request.owned || request.alone(),
      );
    } catch (error) {
      // The arguments could not be sent (a value structured clone rejects): nothing was dispatched.
      request.slot = undefined;
      slot.ongoing--;
      this.#unsendable(request, error);
      this.onSlotFree(slot);
    }
  }

  /** A replica answered `busy`: another replica takes the request, or it waits first in line. */
  retry(request: Request): void {
    this.#refresh();
    const slot = this.#pick(request.model, request.anyReplica);
    if (slot) this.#dispatch(request, slot);
    else this.#enqueue(request, true);
  }

  /** A call on `slot`'s replica ended (answered, failed, cancelled or handed back). */
  released(slot: Slot): void {
    if (slot.ongoing === 0) this.#warm = slot;
    this.onSlotFree(slot);
  }

  /** A slot on `slot`'s replica is free (in this router's view): the oldest queued request takes it. */
  onSlotFree(slot: Slot): void {
    if (slot.out) {
      if (this.#warm === slot) this.#warm = undefined;
      if (slot.ongoing === 0 && this.#slots.includes(slot))
        this.#slots = this.#slots.filter((s) => s !== slot);
      this.#refresh();
      return;
    }
    if (slot.full || slot.connection.closed) {
      this.#refresh();
      return;
    }
    if (!this.#ready.includes(slot)) this.#refresh();
    // The oldest queued request that may go to this replica (with models, not always the first).
    let from = 0;
    while (from < this.#queue.length && slot.ongoing < this.#maxOngoing && !slot.full) {
      const request = this.#queue[from]!;
      if (request.done) {
        this.#removeAt(from);
      } else if (this.#mayTake(request, slot)) {
        this.#removeAt(from);
        this.#dispatch(request, slot);
      } else {
        from++;
      }
    }
  }

  /** Takes the queue's `index`th request out; the first (nearly always) without a copy. */
  #removeAt(index: number): void {
    if (index === 0) this.#queue.shift();
    else this.#queue.splice(index, 1);
  }

  dequeue(request: Request): void {
    const index = this.#queue.indexOf(request);
    if (index >= 0) this.#queue.splice(index, 1);
  }
}
