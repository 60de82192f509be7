/**
 * @internal The caller's side of one channel to one replica: it sends calls, matches the
 * replies to them, and fails what is pending with `ReplicaDiedError` when the channel
 * closes. The channel is the replica's own transport (from the runtime) or a
 * `MessageChannel` port the control plane handed out (from another replica). Its router
 * decides what to send; the connection keeps no counts.
 */
import { ReplicaDiedError } from "../errors.js";
import { unsendableArguments } from "../dag/call-args.js";
import type { CallMessage, ReplyMessage } from "../wire/protocol.js";
import { Responses, type PendingCall } from "./responses.js";
import type { Transfer } from "./transport/transport.js";

/** A call in flight that the replica may hand back unrun (`busy`). */
export interface RoutedCall extends PendingCall {
  /**
   * The replica did not run the call: it is full, or (with `closing`) stopping. `args`: the
   * arguments it moved back (the caller's buffers were moved to it), to send again.
   */
  busy(closing: boolean, args?: unknown[]): void;
}

/** The id of a call not sent (its replica is away): no answer and nothing to cancel has it. */
const NOT_SENT = 0;

/** How long a replica NATS found no subscriber for is left alone before it is probed again. */
export const AWAY_MS = 1_000;

/**
 * How long a probe of a replica that was away waits for NATS to say again that no one
 * subscribes (its answer comes in a round trip) before calls go to it again.
 */
export const PROBE_WAIT_MS = 250;

/**
 * The id of a probe: credit for a stream no caller has (the replica ignores it). It is
 * sent like a call, so NATS answers "no subscriber" for it as it would for a call.
 */
export const PROBE_ID = -1;

/**
 * How long the calls pending on a replica whose channel closed wait for the control plane
 * to say why it ended (see {@link ReplicaConnection.closeUntold}); then they fail saying
 * only that the channel closed. The control plane sees a replica end within milliseconds.
 */
export const UNTOLD_WAIT_MS = 1_000;

export class ReplicaConnection {
  readonly replica: string;
  readonly deployment: string;
  /** Set once the channel has closed: nothing more is sent on it. */
  closed = false;
  /** Runs when the replica says a slot is free again after answering `busy`. */
  onFree: (() => void) | undefined;
  /**
   * Lets go of a channel that would otherwise stay open after its replica left the
   * membership with nothing pending on it (a NATS link; a port or socket closes by itself).
   */
  retire: (() => void) | undefined;
  /**
   * The models the replica last reported loaded (multiplexing); replaced whole on each
   * report, so a router can tell a new report from the one it has seen.
   */
  models: ReadonlySet<string> = new Set();
  /** The replica multiplexes models (it has reported its models at least once). */
  multiplexed = false;
  readonly #send: (message: CallMessage, transfer?: Transfer, now?: boolean) => void;
  readonly #responses = new Responses();
  /** Set while the replica is unreachable (NATS had no subscriber for it): calls are answered busy. */
  #away: NodeJS.Timeout | undefined;
  /** Why the replica ended, once the control plane said (see {@link told}). */
  #why: string | undefined;
  /** Set while the channel has closed and what is pending waits to be told why. */
  #untold: NodeJS.Timeout | undefined;
  #untoldDone: (() => void) | undefined;
  #fallback = "";

  constructor(
    replica: string,
    deployment: string,
    send: (message: CallMessage, transfer?: Transfer, now?: boolean) => void,
  ) {
    this.replica = replica;
    this.deployment = deployment;
    this.#send = send;
  }

  /** Calls sent on this channel that have no answer yet. */
  get pending(): number {
    return this.#responses.size;
  }

  /** The replica is unreachable for now: a call is answered busy without being sent. */
  get away(): boolean {
    return this.#away !== undefined;
  }

  /**
   * Sends a call; `pending` is answered by the replica. Returns the call's id. `now`: the
   * caller may change the arguments once this returns, so they go at once (see
   * `MessageBatcher.push`).
   */
  call(
    method: string | undefined,
    args: unknown[],
    transfer: Transfer,
    requestId: string | undefined,
    pending: RoutedCall,
    model?: string,
    traceparent?: string,
    now = false,
  ): number {
    if (this.#away) {
      // Not sent: the router takes it elsewhere, or holds it until this replica is back.
      queueMicrotask(() => pending.busy(false));
      return NOT_SENT;
    }
    const id = this.#responses.add(pending);
    // The optional fields only when set: most calls carry neither.
    const message: CallMessage =
      model === undefined && traceparent === undefined
        ? { t: "call", id, m: method, a: args, r: requestId }
        : {
            t: "call",
            id,
            m: method,
            a: args,
            r: requestId,
            ...(model !== undefined && { mm: model }),
            ...(traceparent !== undefined && { tp: traceparent }),
          };
    try {
      this.#send(message, transfer, now);
    } catch (error) {
      this.#responses.forget(id);
      throw error;
    }
    return id;
  }

  /** Lets the replica send `n` more items of streamed call `id`. */
  credit(id: number, n: number): void {
    if (id === NOT_SENT || this.closed || this.#away) return;
    this.#send({ t: "credit", id, n });
  }

  /** Gives up on a call: its caller has been answered; the replica is told to stop it. */
  cancel(id: number, reason: "timeout" | "abort"): void {
    if (id === NOT_SENT) return; // the replica never had it
    const pending = this.#responses.forget(id);
    // The replica hears of it before the call that may take the freed slot.
    if (!this.closed) this.#send({ t: "cancel", id, reason });
    pending?.settled?.();
  }

  onMessage(message: ReplyMessage): void {
    if (this.#away) {
      // The replica is reachable again.
      clearTimeout(this.#away);
      this.#away = undefined;
      queueMicrotask(() => this.onFree?.());
    }
    switch (message.t) {
      case "busy": {
        const pending = this.#responses.forget(message.id) as RoutedCall | undefined;
        pending?.busy(message.closing === true, message.a);
        return;
      }
      case "free":
        this.onFree?.();
        return;
      case "ok":
      case "err":
      case "stream":
      case "item":
      case "end":
        this.#responses.onResponse(message);
    }
  }

  /** A call that could not be sent (an argument structured clone rejects) fails at once. */
  undeliverable(message: CallMessage, error: Error): void {
    if (message.t !== "call") return;
    const pending = this.#responses.forget(message.id);
    pending?.settled?.();
    pending?.reject(unsendableArguments(this.deployment, message.m ?? "call", message.a, error));
  }

  /**
   * What is pending fails with `reason` (its messages may have been lost: a NATS connection
   * dropped), and the channel stays open for new calls.
   */
  failPending(reason: string, free = true): void {
    if (this.closed) return;
    // The replica may still run them: it is told to stop (it ignores an id it never saw).
    for (const id of this.#responses.ids()) {
      try {
        this.#send({ t: "cancel", id, reason: "abort" });
      } catch {
        // the channel refuses it: the replica's own reset cancels them
      }
    }
    this.#responses.rejectAll(
      () => new ReplicaDiedError(this.deployment, this.replica, reason, true),
    );
    // A `free` the replica sent may be lost with the rest: the slot counts as free again
    // (a call sent to a full replica is answered busy, so nothing runs past its cap).
    if (free) this.onFree?.();
  }

  /**
   * NATS had no subscriber for the replica when a call reached it (it stopped, or its
   * connection is away): what is pending fails with `reason`, and for the next
   * {@link AWAY_MS} (or until the replica speaks) calls are answered busy without being
   * sent, so a router's queue does not drain into it. Then a call tries again.
   */
  unreachable(reason: string): void {
    if (this.closed) return;
    this.failPending(reason, false);
    clearTimeout(this.#away);
    this.#away = setTimeout(() => this.#probe(), AWAY_MS);
    this.#away.unref();
  }

  /**
   * Asks NATS whether the replica is back with a message that carries no one's request: a
   * user's call sent to a replica still away would fail (a node that was killed stays away
   * until the head declares it DEAD, nodeTimeout later). Another "no subscriber" within
   * {@link PROBE_WAIT_MS} keeps it away; none, and calls go to it again.
   */
  #probe(): void {
    if (this.closed) return;
    try {
      this.#send({ t: "credit", id: PROBE_ID, n: 0 });
    } catch {
      // Not sent: tried again after another wait.
      this.#away = setTimeout(() => this.#probe(), AWAY_MS);
      this.#away.unref();
      return;
    }
    this.#away = setTimeout(() => {
      this.#away = undefined;
      this.onFree?.();
    }, PROBE_WAIT_MS);
    this.#away.unref();
  }

  /** The channel closed (the replica exited or was stopped): what is pending fails. */
  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    // What the control plane said wins (a node's "terminated" is the head's "stopped").
    this.#fail(this.#why ?? reason);
  }

  /**
   * The channel closed without saying why (a port or a socket closes as its replica ends):
   * nothing more is sent, and what is pending fails once the control plane says why the
   * replica ended ({@link told}), or with `fallback` after {@link UNTOLD_WAIT_MS}. `done`
   * runs once they have failed (at once, when there was nothing to wait for).
   */
  closeUntold(fallback: string, done: () => void, waitMs = UNTOLD_WAIT_MS): void {
    if (this.closed) return;
    this.closed = true;
    this.#untoldDone = done;
    if (this.#why !== undefined || this.#responses.size === 0 || waitMs <= 0) {
      this.#fail(this.#why ?? fallback);
      return;
    }
    clearTimeout(this.#away);
    this.#away = undefined;
    this.#fallback = fallback;
    this.#untold = setTimeout(() => this.#fail(fallback), waitMs);
    this.#untold.unref();
  }

  /** Nothing will say why any more (its caller stopped following the membership): fail now. */
  stopWaiting(): void {
    if (this.#untold) this.#fail(this.#fallback);
  }

  /** The control plane says why the replica ended (`stopped`, or how it died). */
  told(why: string): void {
    this.#why = why;
    if (this.#untold) this.#fail(why);
  }

  #fail(reason: string): void {
    clearTimeout(this.#away);
    this.#away = undefined;
    clearTimeout(this.#untold);
    this.#untold = undefined;
    const done = this.#untoldDone;
    this.#untoldDone = undefined;
    this.#responses.rejectAll(() => new ReplicaDiedError(this.deployment, this.replica, reason));
    done?.();
  }
}
