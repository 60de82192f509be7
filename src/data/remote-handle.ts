/**
 * @internal Handle calls made from inside a replica. The replica owns a router per
 * deployment it calls, fed by the control plane with the running replicas of that
 * deployment, each reached over a `MessageChannel` port of its own: the call goes straight
 * to the other replica, and neither the runtime's thread nor the control plane is on its
 * path. Calls that involve a process replica (which a port cannot reach) are relayed by
 * the runtime instead (`relay` in the membership).
 */
import type { MessagePort } from "node:worker_threads";
import { CancelledError, GraphExecutionError } from "../errors.js";
import { unsendableArguments } from "../dag/call-args.js";
import { handleProxy } from "../dag/handle.js";
import { deserializeError } from "../wire/error-codec.js";
import type {
  FromReplica,
  MembersMessage,
  ReplyMessage,
  Response,
  CallMessage,
} from "../wire/protocol.js";
import { ReplicaConnection } from "./connection.js";
import { requestStorage } from "./context.js";
import { Responses } from "./responses.js";
import { Router, type CallOptions } from "./router.js";
import { MessageBatcher, unbatch } from "./transport/batch.js";
import { transferablesOf } from "./transport/transfer.js";
import type { Transfer } from "./transport/transport.js";

/** What this replica knows of one deployment it calls. */
class Target {
  router: Router | undefined;
  relay = false;
  readonly connections = new Map<string, ReplicaConnection>();
  /** Calls made before the first membership arrived. */
  waiting: (() => void)[] | undefined = [];
}

export class OutgoingCalls {
  readonly #post: (message: FromReplica, transfer?: Transfer) => void;
  readonly #changed: () => void;
  readonly #targets = new Map<string, Target>();
  readonly #relayed = new Responses();
  #nextId = 1;

  /** `post` reaches the runtime; `changed` runs when a router's queue may have changed. */
  constructor(post: (message: FromReplica, transfer?: Transfer) => void, changed: () => void) {
    this.#post = post;
    this.#changed = changed;
  }

  /** Asks for the membership of `deployment` now, before the first call needs it. */
  subscribe(deployment: string): void {
    this.#target(deployment);
  }

  #target(deployment: string): Target {
    let target = this.#targets.get(deployment);
    if (!target) {
      target = new Target();
      this.#targets.set(deployment, target);
      this.#post({ t: "subscribe", d: deployment });
    }
    return target;
  }

  call(deployment: string, method: string, args: unknown[]): Promise<unknown> {
    const target = this.#target(deployment);
    if (target.waiting) {
      const waiting = target.waiting;
      return new Promise<void>((resolve) => waiting.push(resolve)).then(() =>
        this.call(deployment, method, args),
      );
    }
    if (target.relay) return this.#relay(deployment, method, args);
    const outer = requestStorage.getStore();
    const options: CallOptions = {
      requestId: outer?.requestId,
      cancel: outer?.scope,
      transfer: transferablesOf(args),
    };
    const result = target.router!.call(method, args, options);
    if (target.router!.queued > 0) this.#changed();
    return result;
  }

  /** The control plane's publication of `d`'s running replicas. */
  onMembers(message: MembersMessage): void {
    const target = this.#target(message.d);
    target.relay = message.relay;
    const limits = { maxOngoingRequests: message.maxOngoing, maxQueuedRequests: message.maxQueued };
    if (target.router) target.router.configure(limits);
    else target.router = new Router(message.d, message.label, limits);
    for (const id of message.remove) target.connections.delete(id);
    for (const { replica, port } of message.add) {
      target.connections.set(replica, connect(replica, message.d, port, target, this.#changed));
    }
    target.router.setReplicas([...target.connections.values()]);
    target.router.setUnavailable(
      message.unavailable ? deserializeError(message.unavailable) : undefined,
    );
    const waiting = target.waiting;
    target.waiting = undefined;
    for (const resume of waiting ?? []) resume();
  }

  /** Requests this replica's routers hold queued, by deployment. */
  queued(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, target] of this.#targets) {
      const queued = target.router?.queued ?? 0;
      if (queued > 0) out[name] = queued;
    }
    return out;
  }

  /** A call through the runtime (`hcall`), answered with {@link Response} messages. */
  #relay(deployment: string, method: string, args: unknown[]): Promise<unknown> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#relayed.add(id, {
        resolve,
        reject,
        toError: (error, user) =>
          user
            ? new GraphExecutionError(deployment, `${method}()`, deserializeError(error))
            : deserializeError(error),
        cancelStream: () => this.#post({ t: "hcancel", id }),
      });
      const outer = requestStorage.getStore();
      this.#post(
        { t: "hcall", id, d: deployment, m: method, a: args, r: outer?.requestId },
        transferablesOf(args),
      );
      // Cancelling the request this call is made for cancels the call too.
      outer?.onCancel(() => {
        if (this.#relayed.forget(id)) {
          this.#post({ t: "hcancel", id });
          reject(new CancelledError(`${deployment}.${method}()`));
        }
      });
    });
  }

  /** An answer to a relayed call. */
  onResponse(message: Response): void {
    this.#relayed.onResponse(message);
  }

  /** A relayed call that could not be sent (an argument structured clone rejects) fails at once. */
  undeliverable(message: Extract<FromReplica, { t: "hcall" }>, error: Error): void {
    this.#relayed
      .forget(message.id)
      ?.reject(unsendableArguments(message.d, message.m, message.a, error));
  }
}

/** A connection to replica `replica` of `deployment` over `port`, batched like every channel. */
function connect(
  replica: string,
  deployment: string,
  port: MessagePort,
  target: Target,
  changed: () => void,
): ReplicaConnection {
  const batcher = new MessageBatcher<CallMessage>(
    (message, transfer) => port.postMessage(message, transfer as ArrayBuffer[]),
    (message, error) => connection.undeliverable(message, error),
  );
  const connection = new ReplicaConnection(replica, deployment, (message, transfer) =>
    batcher.push(message, transfer),
  );
  port.on("message", (data: ReplyMessage | ReplyMessage[]) => {
    unbatch(data, (message) => connection.onMessage(message));
    changed();
  });
  port.on("close", () => {
    connection.close(`its channel to replica ${replica} closed (the replica stopped or died)`);
    if (target.connections.get(replica) === connection) {
      target.connections.delete(replica);
      target.router?.setReplicas([...target.connections.values()]);
    }
  });
  return connection;
}

export function createRemoteHandle(deployment: string, calls: OutgoingCalls): unknown {
  return handleProxy(deployment, (method, args) => calls.call(deployment, method, args));
}
