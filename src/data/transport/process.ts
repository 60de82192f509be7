/**
 * A replica in a child process, over Node's IPC channel with structured-clone
 * ("advanced") serialization: typed arrays arrive intact, but are copied.
 */
import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
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

/** Child processes still running: killed when this process exits, however it exits. */
const children = new Set<ChildProcess>();
let killOnExit = false;

export class ProcessTransport implements ReplicaTransport {
  readonly isolation = "process";
  readonly description: string;
  readonly #child: ChildProcess;
  readonly #exited: Promise<void>;

  readonly #limits: ReplicaLimits;

  constructor(name: string, limits: ReplicaLimits = {}) {
    this.#limits = limits;
    this.#child = fork(fileURLToPath(REPLICA_ENTRY), [name], {
      serialization: "advanced",
      execArgv: limits.memoryBytes
        ? [`--max-old-space-size=${heapMegabytes(limits.memoryBytes)}`]
        : [],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      // Its own process group: Ctrl-C in a terminal signals the foreground group, and the
      // server, not the terminal, decides when a replica stops (after draining it).
      detached: true,
    });
    children.add(this.#child);
    this.#child.once("exit", () => children.delete(this.#child));
    if (!killOnExit) {
      killOnExit = true;
      process.once("exit", () => {
        for (const child of children) child.kill("SIGKILL");
      });
    }
    this.description = `pid ${this.#child.pid ?? "?"}`;
    // A send to a process that just died fails asynchronously; the exit handler reports it.
    this.#child.on("error", () => undefined);
    // The replica's socket file goes with it: a killed process runs no exit handler.
    const pid = this.#child.pid;
    void sweepStaleSockets();
    this.#exited = new Promise((resolve) =>
      this.#child.once("exit", () => {
        if (pid !== undefined) removeSocket(socketPath(pid, 0));
        resolve();
      }),
    );
  }

  readonly #batcher = new MessageBatcher<ToReplica>(
    (message) => {
      if (this.#child.connected) this.#child.send(message);
    },
    (message, error) => this.#undeliverable?.(message, error),
    "turn",
    false,
  );
  #undeliverable: ((message: ToReplica, error: Error) => void) | undefined;

  onUndeliverable(listener: (message: ToReplica, error: Error) => void): void {
    this.#undeliverable = listener;
  }

  send(message: ToReplica, _transfer?: Transfer, now?: boolean): void {
    this.#batcher.push(message, undefined, now);
  }

  onMessage(listener: (message: FromReplica) => void): void {
    this.#child.on("message", (data: unknown) =>
      this.#batcher.within(() => unbatch(data as FromReplica | FromReplica[], listener)),
    );
  }

  onExit(listener: (reason: string) => void): void {
    this.#child.once("exit", (code, signal) => {
      // V8 aborts a process that fills the heap --max-old-space-size allows.
      const heapFull =
        this.#limits.memoryBytes !== undefined && (signal === "SIGABRT" || code === 134);
      listener(
        (signal ? `killed by ${signal}` : `exited with code ${code}`) +
          (heapFull ? " (its JavaScript heap was likely full: resources.memory sets it)" : ""),
      );
    });
  }

  async terminate(): Promise<void> {
    if (this.#child.exitCode === null && this.#child.signalCode === null)
      this.#child.kill("SIGKILL");
    await this.#exited;
  }
}
