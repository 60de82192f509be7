/**
 * How a request reaches a replica. One implementation per isolation kind (worker thread,
 * child process); the router and controller only see this interface, so a cross-machine
 * transport can be added without touching them.
 */
import type { MessagePort } from "node:worker_threads";
import type { FromReplica, ToReplica } from "../../wire/protocol.js";
import type { ResourceNeed } from "../../wire/cluster.js";

export type Isolation = "thread" | "process";

/** What moves to the receiver instead of being copied: buffers, and ports of channels. */
export type Transfer = readonly (ArrayBuffer | MessagePort)[];

export interface ReplicaTransport {
  readonly isolation: Isolation;
  /** `thread 12` or `pid 4242`: how messages and status name the replica's host. */
  readonly description: string;
  /**
   * Sends a message. `transfer` lists buffers the receiver takes ownership of; transports
   * that cannot move memory (processes) copy them instead. `now`: the message holds values
   * the caller may change next (see `MessageBatcher.push`); it is not left in a batch.
   */
  send(message: ToReplica, transfer?: Transfer, now?: boolean): void;
  /** Receives every message from the replica. */
  onMessage(listener: (message: FromReplica) => void): void;
  /** Receives each message that could not be sent (its contents cannot be cloned). */
  onUndeliverable(listener: (message: ToReplica, error: Error) => void): void;
  /**
   * Over a network (a cluster): calls in flight may have been lost (a NATS connection
   * dropped), though the replica may run on; the listener fails them with `reason`. With
   * `unreachable`, NATS had no subscriber for the replica (see
   * `ReplicaConnection.unreachable`).
   */
  onReset?(listener: (reason: string, unreachable: boolean) => void): void;
  /** Called once when the replica's thread or process has exited, with why. */
  onExit(listener: (reason: string) => void): void;
  /** Ends the replica now (no draining). Resolves once it has exited. Safe to call twice. */
  terminate(): Promise<void>;
  /**
   * In a cluster: the node the replica runs on, and the NATS subject its node serves
   * callers on. Absent for a replica of this process (a thread or a child process).
   */
  readonly remote?: { readonly node: string; readonly subject: string } | undefined;
  /**
   * Set when the transport reaches a replica that already runs (a head that restarted
   * adopts it): no `init` is sent, and it keeps its id.
   */
  readonly adopted?: AdoptedReplica | undefined;
}

/** A running replica a transport was attached to instead of starting one. */
export interface AdoptedReplica {
  readonly replica: string;
  /** Its models, when it multiplexes. */
  readonly models?: readonly string[] | undefined;
}

/** Limits a replica starts with. */
export interface ReplicaLimits {
  /** `resources.memory` in bytes: V8's heap limit is set from it. */
  readonly memoryBytes?: number | undefined;
}

/** What a replica is placed by (in a cluster: on a node whose free resources fit). */
export interface Placement {
  readonly app: string;
  readonly deployment: string;
  readonly resources: ResourceNeed;
  /** What the replica is started with (its code, arguments and options): an adopted one must match. */
  readonly key: string;
}

/**
 * Thrown by a {@link TransportFactory} when the replica fits nowhere now; the message names
 * what is missing. The deployment is `PENDING` until the factory's owner says capacity
 * changed.
 */
export class NoPlacementError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NoPlacementError";
  }
}

/** Starts one replica host; the runtime then sends it an `init` message. */
export type TransportFactory = (
  isolation: Isolation,
  name: string,
  limits?: ReplicaLimits,
  placement?: Placement,
) => ReplicaTransport;

/** The module every replica thread or process starts with. */
export const REPLICA_ENTRY = new URL("../replica-entry.mjs", import.meta.url);
