/**
 * @internal A replica on a cluster node, as the head's control plane sees it: the same
 * {@link ReplicaTransport} as a thread or a process, over NATS. The head asks the node to
 * start the replica's host (or, after a restart, to hand over one that runs). Calls (and
 * their cancels) go to the replica's subject, which the replica serves itself on its own
 * NATS connection; every other `ToReplica` message goes to its control subject, which its
 * node serves. Both answer on one mailbox of this transport's own. The node says when the
 * host exits; the cluster says when the node is lost.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import {
  subjects,
  type FromNode,
  type GoneMessage,
  type ResetMessage,
  type ToNode,
} from "../../wire/cluster.js";
import type { FromReplica, ToReplica } from "../../wire/protocol.js";
import { unbatch } from "./batch.js";
import { connectionLost, NatsMailbox, noSubscriber, watchConnection } from "./nats-link.js";
import type { AdoptedReplica, Isolation, ReplicaTransport } from "./transport.js";

/** How long a node has to answer a start, an adoption or a terminate. */
const NODE_ANSWER_MS = 10_000;

export interface RemoteTarget {
  readonly node: string;
  /** The node's mailbox. */
  readonly nodeAddress: string;
  readonly replica: string;
  readonly subject: string;
  readonly isolation: Isolation;
  readonly memoryBytes?: number | undefined;
}

export class RemoteReplicaTransport implements ReplicaTransport {
  readonly isolation: Isolation;
  description: string;
  readonly remote: { readonly node: string; readonly subject: string };
  readonly adopted: AdoptedReplica | undefined;
  readonly target: RemoteTarget;
  /** The owner's address: messages to and from the node and the control subject. */
  readonly #mailbox: NatsMailbox<
    FromReplica | FromReplica[] | FromNode | GoneMessage | ResetMessage,
    ToReplica | ToNode
  >;
  /**
   * Calls and their answers, on a mailbox of their own: NATS's "no responders" here means
   * a call was lost, while one for a control message says nothing about the calls.
   */
  readonly #calls: NatsMailbox<FromReplica | FromReplica[] | GoneMessage | ResetMessage, ToReplica>;
  #reset: ((reason: string, unreachable: boolean) => void) | undefined;
  readonly #unwatch: () => void;
  readonly #control: string;
  /** Messages sent before the node said the host runs. */
  #queue: ToReplica[] | undefined = [];
  #exited = false;
  readonly #exit = new Set<(reason: string) => void>();
  #message: ((message: FromReplica) => void) | undefined;
  #undeliverable: ((message: ToReplica, error: Error) => void) | undefined;
  readonly #whenExited: Promise<void>;
  #resolveExited!: () => void;
  #answerTimer: NodeJS.Timeout | undefined;

  /**
   * Starts the replica's host on the node, or with `adopted` takes over one that runs
   * (the node has already answered that it does).
   */
  constructor(nc: NatsConnection, target: RemoteTarget, adopted?: AdoptedReplica) {
    this.target = target;
    this.isolation = target.isolation;
    this.description = `${target.isolation} on node ${target.node}`;
    this.remote = { node: target.node, subject: target.subject };
    this.adopted = adopted;
    this.#control = subjects.control(target.subject);
    this.#whenExited = new Promise((resolve) => (this.#resolveExited = resolve));
    this.#mailbox = NatsMailbox.open(nc);
    this.#mailbox.onMessage((message) => this.#receive(message));
    this.#calls = NatsMailbox.open(nc);
    this.#calls.onMessage((message) => this.#receive(message));
    // A call sent while the replica's connection was away reached no one.
    this.#calls.onNoResponders(() => this.#reset?.(noSubscriber(target.node), true));
    // Calls sent before the connection dropped, and those sent while it was away (nats.js
    // drops them when it reconnects), fail.
    const lost = (): void => this.#reset?.(connectionLost("the head's"), false);
    this.#unwatch = watchConnection(nc, { lost, back: lost });
    if (adopted) {
      this.#queue = undefined;
      this.#toNode({ t: "adopt", replica: target.replica });
    } else {
      this.#toNode({
        t: "start",
        replica: target.replica,
        subject: target.subject,
        isolation: target.isolation,
        memoryBytes: target.memoryBytes,
      });
      this.#answerTimer = setTimeout(
        () => this.lost(`node ${target.node} did not start it within ${NODE_ANSWER_MS} ms`),
        NODE_ANSWER_MS,
      );
    }
  }

  send(message: ToReplica): void {
    if (this.#exited) return;
    if (this.#queue) {
      this.#queue.push(message);
      return;
    }
    try {
      // What belongs to a call goes where its calls go: the replica answers a stream's
      // credit on the caller that holds the stream (on the control subject it would reach
      // the replica's runtime channel, which holds no such stream: the stream stalled).
      if (message.t === "call" || message.t === "cancel" || message.t === "credit")
        this.#calls.send(this.target.subject, message);
      else this.#mailbox.send(this.#control, message);
    } catch (error) {
      this.#undeliverable?.(message, error as Error);
    }
  }

  onMessage(listener: (message: FromReplica) => void): void {
    this.#message = listener;
  }

  onUndeliverable(listener: (message: ToReplica, error: Error) => void): void {
    this.#undeliverable = listener;
  }

  onReset(listener: (reason: string, unreachable: boolean) => void): void {
    this.#reset = listener;
  }

  onExit(listener: (reason: string) => void): void {
    if (this.#exited) return;
    this.#exit.add(listener);
  }

  /** The replica is gone without its node saying so (the node was lost): it exits now. */
  lost(reason: string): void {
    this.#exitWith(reason);
  }

  async terminate(): Promise<void> {
    if (!this.#exited) {
      this.#toNode({ t: "terminate", replica: this.target.replica });
      const timer = setTimeout(
        () => this.#exitWith(`node ${this.target.node} did not answer a terminate`),
        NODE_ANSWER_MS,
      );
      await this.#whenExited;
      clearTimeout(timer);
    }
  }

  #toNode(message: ToNode): void {
    try {
      this.#mailbox.send(this.target.nodeAddress, message);
    } catch (error) {
      queueMicrotask(() => this.#exitWith(`could not reach node: ${(error as Error).message}`));
    }
  }

  #receive(data: FromReplica | FromReplica[] | FromNode | GoneMessage | ResetMessage): void {
    if (Array.isArray(data)) {
      // Replies the replica batched (one microtask's answers).
      if (!this.#exited) unbatch(data, (message) => this.#message?.(message));
      return;
    }
    const message = data;
    // The node tells every caller the replica is gone; its `node-exit` follows.
    if (message.t === "gone") return;
    if (message.t === "reset") {
      this.#reset?.(message.reason, false);
      return;
    }
    if (message.t === "node-started") {
      clearTimeout(this.#answerTimer);
      this.description = `${message.description} on node ${this.target.node}`;
      const queued = this.#queue ?? [];
      this.#queue = undefined;
      for (const m of queued) this.send(m);
    } else if (message.t === "node-adopted")
      this.description = `${message.description} on node ${this.target.node}`;
    else if (message.t === "node-exit") this.#exitWith(message.reason);
    else if (!this.#exited) this.#message?.(message);
  }

  #exitWith(reason: string): void {
    if (this.#exited) return;
    this.#exited = true;
    this.#unwatch();
    clearTimeout(this.#answerTimer);
    this.#queue = undefined;
    this.#mailbox.close();
    this.#calls.close();
    this.#resolveExited();
    for (const listener of this.#exit) listener(reason);
    this.#exit.clear();
  }
}
