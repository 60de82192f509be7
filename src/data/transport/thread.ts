/**
 * A replica in a worker thread. Messages go over the worker's port; buffers listed for
 * transfer move without copying.
 */
import { Worker, type MessagePort } from "node:worker_threads";
import type { FromReplica, ToReplica } from "../../wire/protocol.js";
import { MessageBatcher, unbatch } from "./batch.js";
import { heapMegabytes } from "../memory-limit.js";
import { removeSocket, socketPath, sweepStaleSockets } from "./socket.js";
import {
  REPLICA_ENTRY,
  type ReplicaLimits,
  type ReplicaTransport,
  type Transfer,
} from "./transport.js";

export class ThreadTransport implements ReplicaTransport {
  readonly isolation = "thread";
  readonly description: string;
  readonly #worker: Worker;
  readonly #exited: Promise<void>;
  #error: Error | undefined;

  constructor(name: string, limits: ReplicaLimits = {}) {
    this.#worker = new Worker(REPLICA_ENTRY, {
      name,
      ...(limits.memoryBytes && {
        resourceLimits: { maxOldGenerationSizeMb: heapMegabytes(limits.memoryBytes) },
      }),
    });
    this.description = `thread ${this.#worker.threadId}`;
    this.#worker.on("error", (error) => {
      this.#error = error;
    });
    // The replica's socket file goes with it: a terminated thread runs no exit handler.
    const socket = socketPath(process.pid, this.#worker.threadId);
    void sweepStaleSockets();
    this.#exited = new Promise((resolve) =>
      this.#worker.once("exit", () => {
        removeSocket(socket);
        resolve();
      }),
    );
  }

  readonly #batcher = new MessageBatcher<ToReplica>(
    (message, transfer) =>
      this.#worker.postMessage(message, transfer as (ArrayBuffer | MessagePort)[]),
    (message, error) => this.#undeliverable?.(message, error),
  );
  #undeliverable: ((message: ToReplica, error: Error) => void) | undefined;

  onUndeliverable(listener: (message: ToReplica, error: Error) => void): void {
    this.#undeliverable = listener;
  }

  send(message: ToReplica, transfer?: Transfer, now?: boolean): void {
    this.#batcher.push(message, transfer, now);
  }

  onMessage(listener: (message: FromReplica) => void): void {
    // A queued call that an answer frees a slot for goes right after that message is
    // handled, not at the end of the event loop's turn (see `MessageBatcher.within`).
    this.#worker.on("message", (data: FromReplica | FromReplica[]) =>
      this.#batcher.within(() => unbatch(data, listener)),
    );
  }

  onExit(listener: (reason: string) => void): void {
    this.#worker.once("exit", (code) => {
      const error = this.#error as (Error & { code?: string }) | undefined;
      listener(
        error?.code === "ERR_WORKER_OUT_OF_MEMORY"
          ? `ran out of its JavaScript heap (resources.memory sets it)`
          : error
            ? `uncaught ${error.name}: ${error.message}`
            : `exited with code ${code}`,
      );
    });
  }

  async terminate(): Promise<void> {
    await this.#worker.terminate();
    await this.#exited;
  }
}
