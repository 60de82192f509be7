/**
 * A replica in a child process, over Node's IPC channel with structured-clone
 * ("advanced") serialization: typed arrays arrive intact, but are copied.
 */
import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { FromReplica, ToReplica } from "../runtime/protocol.js";
import { REPLICA_ENTRY, type ReplicaTransport } from "./transport.js";

export class ProcessTransport implements ReplicaTransport {
  readonly isolation = "process";
  readonly description: string;
  readonly #child: ChildProcess;
  readonly #exited: Promise<void>;

  constructor(name: string) {
    this.#child = fork(fileURLToPath(REPLICA_ENTRY), [name], {
      serialization: "advanced",
      execArgv: [],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    this.description = `pid ${this.#child.pid ?? "?"}`;
    // A send to a process that just died fails asynchronously; the exit handler reports it.
    this.#child.on("error", () => undefined);
    this.#exited = new Promise((resolve) => this.#child.once("exit", () => resolve()));
  }

  send(message: ToReplica): void {
    if (this.#child.connected) this.#child.send(message);
  }

  onMessage(listener: (message: FromReplica) => void): void {
    this.#child.on("message", listener as (message: unknown) => void);
  }

  onExit(listener: (reason: string) => void): void {
    this.#child.once("exit", (code, signal) => {
      listener(signal ? `killed by ${signal}` : `exited with code ${code}`);
    });
  }

  async terminate(): Promise<void> {
    if (this.#child.exitCode === null && this.#child.signalCode === null)
      this.#child.kill("SIGKILL");
    await this.#exited;
  }
}
