/**
 * @internal The runtime's side of one replica: starts it, sends it calls and control
 * messages over its transport, and rejects everything pending when it exits.
 */
import { ReplicaDiedError, TimeoutError, ValidationError } from "../errors.js";
import type { ReplicaTransport } from "../transport/transport.js";
import { unsendableArguments } from "./call-args.js";
import { deserializeError } from "./error-codec.js";
import type { FromReplica, InitMessage, Response, ToReplica } from "./protocol.js";
import { Responses, type PendingCall } from "./responses.js";

/**
 * - `STARTING`: importing the module and constructing the deployment.
 * - `RUNNING`: taking requests.
 * - `STOPPING`: draining, then `close()`; takes no new requests.
 * - `STOPPED`: exited after a graceful stop.
 * - `DEAD`: failed to start, crashed, or was killed after a failed health check.
 */
export type ReplicaState = "STARTING" | "RUNNING" | "STOPPING" | "STOPPED" | "DEAD";

export interface ReplicaEvents {
  /** A request finished on this replica: its slot is free. */
  slotFree(replica: ReplicaClient): void;
  /** The replica makes a handle call to another deployment. */
  handleCall(replica: ReplicaClient, message: Extract<FromReplica, { t: "hcall" }>): void;
  handleCancel(replica: ReplicaClient, id: number): void;
  /** The replica's thread or process exited (not after a graceful stop). */
  exited(replica: ReplicaClient, reason: string): void;
}

type Control = Extract<ToReplica, { t: "health" | "reconfigure" | "stop" }>;
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

export class ReplicaClient {
  readonly id: string;
  readonly deployment: string;
  readonly transport: ReplicaTransport;
  state: ReplicaState = "STARTING";
  /** Why the replica is in its state (a start or health failure, an exit). */
  message = "";
  /** Requests running on it: the router keeps this at most `maxOngoingRequests`. */
  ongoing = 0;
  readonly startedAt = Date.now();
  readonly #responses = new Responses();
  readonly #events: ReplicaEvents;
  #nextId = 1;
  #ready: { resolve: () => void; reject: (error: Error) => void } | undefined;
  #starting: Promise<void> | undefined;
  /** Why the replica said it is ending itself, if it did. */
  #fatal: string | undefined;

  constructor(id: string, deployment: string, transport: ReplicaTransport, events: ReplicaEvents) {
    this.id = id;
    this.deployment = deployment;
    this.transport = transport;
    this.#events = events;
    transport.onMessage((message) => this.#onMessage(message));
    transport.onUndeliverable((message, error) => {
      if (!("id" in message)) return;
      const pending = this.#responses.forget(message.id);
      pending?.settled?.();
      pending?.reject(
        message.t === "call"
          ? unsendableArguments(deployment, message.m ?? "call", message.a, error)
          : new ValidationError([
              {
                path: "arguments",
                message: `cannot be sent to deployment "${deployment}": ${error.message}`,
              },
            ]),
      );
    });
    transport.onExit((reason) => this.#onExit(reason));
  }

  /** Sends `init` and resolves once the deployment is constructed (rejects with why not). */
  start(init: InitMessage, timeoutMs: number): Promise<void> {
    this.#starting = settleWithin(timeoutMs, `Starting replica ${this.id}`, (settle) => {
      this.#ready = settle;
      this.transport.send(init);
      return () => (this.#ready = undefined);
    });
    return this.#starting;
  }

  /**
   * Waits (up to `timeoutMs`) for a start in progress to settle: true when the deployment
   * was constructed. A replica is not ended while its constructor may have native work in
   * flight (a model loading on another thread); ending the thread under it can abort the
   * process.
   */
  async whenStarted(timeoutMs: number): Promise<boolean> {
    const starting = this.#starting;
    if (!starting) return false;
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<boolean>(
      (resolve) => (timer = setTimeout(resolve, timeoutMs, false)),
    );
    try {
      return await Promise.race([
        starting.then(
          () => true,
          () => false,
        ),
        gaveUp,
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends a call; `pending` is answered by the replica's response. Returns the call's id. */
  call(
    method: string | undefined,
    args: unknown[],
    transfer: readonly ArrayBuffer[],
    requestId: string | undefined,
    pending: PendingCall,
  ): number {
    const id = this.#nextId++;
    this.#responses.add(id, pending);
    try {
      this.transport.send({ t: "call", id, m: method, a: args, r: requestId }, transfer);
    } catch (error) {
      this.#responses.forget(id);
      throw error;
    }
    return id;
  }

  /** Gives up on a call: its caller has been answered; the replica is told to stop it. */
  cancel(id: number, reason: "timeout" | "abort"): void {
    this.#responses.forget(id)?.settled?.();
    if (this.state === "RUNNING" || this.state === "STOPPING")
      this.transport.send({ t: "cancel", id, reason });
  }

  /** A control message (`health`, `reconfigure`, `stop`), failing after `timeoutMs`. */
  control(message: DistributiveOmit<Control, "id">, timeoutMs: number): Promise<void> {
    const id = this.#nextId++;
    return settleWithin(timeoutMs, `${message.t} of replica ${this.id}`, (settle) => {
      this.#responses.add(id, { ...settle, toError: (error) => deserializeError(error) });
      this.transport.send({ ...message, id });
      return () => this.#responses.forget(id);
    });
  }

  /** Answers a handle call the replica made. */
  respond(message: Response, transfer?: readonly ArrayBuffer[]): void {
    if (this.state !== "DEAD" && this.state !== "STOPPED") this.transport.send(message, transfer);
  }

  /** Ends the replica now; pending calls fail with ReplicaDiedError naming `reason`. */
  async kill(reason: string): Promise<void> {
    if (this.state === "DEAD" || this.state === "STOPPED") return;
    this.#die(reason);
    await this.transport.terminate();
  }

  /** Ends the replica after a graceful stop (no exit event is reported). */
  async terminate(): Promise<void> {
    if (this.state !== "DEAD") this.state = "STOPPED";
    this.#ready?.reject(new Error("stopped before it was ready"));
    this.#ready = undefined;
    this.#responses.rejectAll(() => new ReplicaDiedError(this.deployment, this.id, "stopped"));
    await this.transport.terminate();
  }

  #die(reason: string): void {
    this.state = "DEAD";
    this.message = reason;
    this.#ready?.reject(new Error(reason));
    this.#ready = undefined;
    this.#responses.rejectAll(() => new ReplicaDiedError(this.deployment, this.id, reason));
  }

  #onExit(reason: string): void {
    if (this.state === "DEAD" || this.state === "STOPPED") return;
    const wasStarting = this.state === "STARTING";
    this.#die(`${this.transport.description} ${this.#fatal ?? reason}`);
    if (!wasStarting) this.#events.exited(this, this.message);
  }

  #onMessage(message: FromReplica): void {
    switch (message.t) {
      case "ok":
      case "err":
      case "stream":
      case "item":
      case "end":
        this.#responses.onResponse(message);
        return;
      case "hcall":
        this.#events.handleCall(this, message);
        return;
      case "hcancel":
        this.#events.handleCancel(this, message.id);
        return;
      case "ready":
        this.#ready?.resolve();
        this.#ready = undefined;
        return;
      case "init-failed":
        this.#ready?.reject(deserializeError(message.e));
        this.#ready = undefined;
        return;
      case "fatal":
        this.#fatal = message.message;
        return;
    }
  }

  /** Called by the router when a call's slot is freed. @internal */
  slotFreed(): void {
    this.ongoing--;
    this.#events.slotFree(this);
  }
}

/**
 * A promise settled through `settle` (by `begin`), or rejected with a TimeoutError after
 * `timeoutMs`, in which case the cleanup `begin` returned runs.
 */
function settleWithin(
  timeoutMs: number,
  what: string,
  begin: (settle: { resolve: () => void; reject: (error: Error) => void }) => () => void,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let cleanup: (() => void) | undefined;
    const timer = setTimeout(() => {
      cleanup?.();
      reject(new TimeoutError(what, timeoutMs));
    }, timeoutMs);
    try {
      cleanup = begin({
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
    } catch (error) {
      clearTimeout(timer);
      throw error;
    }
  });
}
