/**
 * @internal The control plane's side of one replica: starts it, sends it control messages
 * (`health`, `reconfigure`, `stop`, membership) over its transport, and keeps what it
 * reports (its load). The same transport carries the runtime's own calls to the replica,
 * on {@link connection}, which a router in this thread sends through.
 */
import { ReplicaDiedError, TimeoutError } from "../errors.js";
import type { ReplicaTransport, Transfer } from "../data/transport/transport.js";
import { ReplicaConnection } from "../data/connection.js";
import { deserializeError } from "../wire/error-codec.js";
import type { FromReplica, InitMessage, ReplicaStats, ToReplica } from "../wire/protocol.js";
import { Responses } from "../data/responses.js";
import type { ReplicaState } from "../status.js";

export type { ReplicaState };

export interface ReplicaEvents {
  /** The replica calls deployment `deployment` and asks for its running replicas. */
  subscribe(replica: ReplicaClient, deployment: string): void;
  /** The replica's thread or process exited (not after a graceful stop). */
  exited(replica: ReplicaClient, reason: string): void;
  /** The multiplexed models the replica has loaded changed (`connection.models`). */
  modelsChanged(replica: ReplicaClient): void;
  /** Lines the replica's code logged, each a JSON object. */
  log(replica: ReplicaClient, lines: readonly string[]): void;
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
  get isolation(): "thread" | "process" {
    return this.transport.isolation;
  }
  /** On a cluster node (see {@link ReplicaTransport.remote}). */
  get remote(): unknown {
    return this.transport.remote;
  }

  /** The runtime's calls to this replica (its routers send through it). */
  readonly connection: ReplicaConnection;
  /** What the replica last reported: calls running on it, and calls its routers queue. */
  load: { ongoing: number; queued: Readonly<Record<string, number>> } = { ongoing: 0, queued: {} };
  /** What the replica has served so far, as it last reported (undefined: nothing yet). */
  stats: ReplicaStats | undefined;
  readonly startedAt = Date.now();
  /** The Unix socket the replica serves callers in other processes on (once it runs). */
  socket: string | undefined;
  /** Answers to control messages, whose ids are negative (calls' are positive). */
  readonly #control = new Responses();
  readonly #events: ReplicaEvents;
  #nextControlId = -1;
  #ready: { resolve: () => void; reject: (error: Error) => void } | undefined;
  #starting: Promise<void> | undefined;
  /** Why the replica said it is ending itself, if it did. */
  #fatal: string | undefined;

  constructor(id: string, deployment: string, transport: ReplicaTransport, events: ReplicaEvents) {
    this.id = id;
    this.deployment = deployment;
    this.transport = transport;
    this.#events = events;
    this.connection = new ReplicaConnection(id, deployment, (message, transfer, now) =>
      transport.send(message, transfer, now),
    );
    transport.onMessage((message) => this.#onMessage(message));
    transport.onUndeliverable((message, error) => {
      if (message.t === "call") {
        this.connection.undeliverable(message, error);
      }
    });
    transport.onExit((reason) => this.#onExit(reason));
    transport.onReset?.((reason, unreachable) =>
      unreachable ? this.connection.unreachable(reason) : this.connection.failPending(reason),
    );
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

  /** A control message (`health`, `reconfigure`, `stop`), failing after `timeoutMs`. */
  control(message: DistributiveOmit<Control, "id">, timeoutMs: number): Promise<void> {
    const id = this.#nextControlId--;
    return settleWithin(timeoutMs, `${message.t} of replica ${this.id}`, (settle) => {
      this.#control.addWithId(id, { ...settle, toError: (error) => deserializeError(error) });
      this.transport.send({ ...message, id });
      return () => this.#control.forget(id);
    });
  }

  /** Sends a message that needs no answer (membership, limits, a port to serve). */
  tell(message: ToReplica, transfer?: Transfer): void {
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
    this.connection.close("stopped");
    this.#control.rejectAll(() => new ReplicaDiedError(this.deployment, this.id, "stopped"));
    await this.transport.terminate();
  }

  #die(reason: string): void {
    this.state = "DEAD";
    this.message = reason;
    this.#ready?.reject(new Error(reason));
    this.#ready = undefined;
    this.connection.close(reason);
    this.#control.rejectAll(() => new ReplicaDiedError(this.deployment, this.id, reason));
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
        if (message.id < 0) this.#control.onResponse(message);
        else this.connection.onMessage(message);
        return;
      case "busy":
      case "free":
        this.connection.onMessage(message);
        return;
      case "load":
        this.load = { ongoing: message.ongoing, queued: message.queued };
        if (message.stats) this.stats = message.stats;
        return;
      case "subscribe":
        this.#events.subscribe(this, message.d);
        return;
      case "caller": // for the replica's node, which keeps it
        return;
      case "models":
        this.connection.models = new Set(message.models);
        this.connection.multiplexed = true;
        this.#events.modelsChanged(this);
        return;
      case "ready":
        this.socket = message.socket;
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
      case "log":
        this.#events.log(this, message.lines);
        return;
    }
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
