/**
 * How a request reaches a replica. One implementation per isolation kind (worker thread,
 * child process); the router and controller only see this interface, so a cross-machine
 * transport can be added without touching them.
 */
import type { MessagePort } from "node:worker_threads";
import type { FromReplica, ToReplica } from "../../wire/protocol.js";

export type Isolation = "thread" | "process";

/** What moves to the receiver instead of being copied: buffers, and ports of channels. */
export type Transfer = readonly (ArrayBuffer | MessagePort)[];

export interface ReplicaTransport {
  readonly isolation: Isolation;
  /** `thread 12` or `pid 4242`: how messages and status name the replica's host. */
  readonly description: string;
  /**
   * Sends a message. `transfer` lists buffers the receiver takes ownership of; transports
   * that cannot move memory (processes) copy them instead.
   */
  send(message: ToReplica, transfer?: Transfer): void;
  /** Receives every message from the replica. */
  onMessage(listener: (message: FromReplica) => void): void;
  /** Receives each message that could not be sent (its contents cannot be cloned). */
  onUndeliverable(listener: (message: ToReplica, error: Error) => void): void;
  /** Called once when the replica's thread or process has exited, with why. */
  onExit(listener: (reason: string) => void): void;
  /** Ends the replica now (no draining). Resolves once it has exited. Safe to call twice. */
  terminate(): Promise<void>;
}

/** Limits a replica starts with. */
export interface ReplicaLimits {
  /** `resources.memory` in bytes: V8's heap limit is set from it. */
  readonly memoryBytes?: number | undefined;
}

/** Starts one replica host; the runtime then sends it an `init` message. */
export type TransportFactory = (
  isolation: Isolation,
  name: string,
  limits?: ReplicaLimits,
) => ReplicaTransport;

/** The module every replica thread or process starts with. */
export const REPLICA_ENTRY = new URL("../replica-entry.mjs", import.meta.url);
