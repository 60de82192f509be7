/**
 * @internal Handle calls made from inside a replica. The replica owns a router per
 * deployment it calls, fed by the control plane with the running replicas of that
 * deployment, each reached over a `MessageChannel` port of its own: the call goes straight
 * to the other replica, and neither the runtime's thread nor the control plane is on its
 * path. Between threads the channel is a `MessageChannel` port; to or from a process, the
 * other replica's Unix socket; on a cluster node, to a replica on another node, the
 * target's NATS subject on this replica's own connection.
 */
import type { MessagePort } from "node:worker_threads";
import type { NatsConnection } from "@nats-io/nats-core";
import type { GoneMessage, ResetMessage } from "../wire/cluster.js";
import { handleProxy, handleTimeoutMs, type HandleOptions } from "../dag/handle.js";
import { deserializeError } from "../wire/error-codec.js";
import type {
  FromReplica,
  MembersMessage,
  PeerEndpoint,
  ReplyMessage,
  CallMessage,
} from "../wire/protocol.js";
import { ReplicaConnection, UNTOLD_WAIT_MS } from "./connection.js";
import { innerScope } from "./cancel.js";
import { currentRequest, type ActiveRequest } from "./context.js";
import { StreamReader } from "./responses.js";
import { activeTraceparent, routeRequest } from "../tracing.js";
import { Router, type CallOptions } from "./router.js";
import { changeable, MessageBatcher, unbatch } from "./transport/batch.js";
import { connectTo, SocketChannel } from "./transport/socket.js";
import { NatsMailbox, noSubscriber } from "./transport/nats-link.js";
import { movablesOf } from "./transport/transfer.js";
import type { Transfer } from "./transport/transport.js";

/** What this replica knows of one deployment it calls. */
class Target {
  router: Router | undefined;
  readonly connections = new Map<string, ReplicaConnection>();
  /** Replicas no longer routed to whose channels are still open (their calls finish). */
  readonly leaving = new Map<string, ReplicaConnection>();
  /** Calls made before the first membership arrived. */
  waiting: (() => void)[] | undefined = [];
}

export class OutgoingCalls {
  readonly #post: (message: FromReplica, transfer?: Transfer) => void;
  readonly #changed: () => void;
  readonly #targets = new Map<string, Target>();
  /** On a cluster node: this replica's NATS connection, and its links to other nodes. */
  #nats: NatsConnection | undefined;
  readonly #links = new Set<NatsLink>();
  /** False once no membership comes any more (see {@link unsubscribed}). */
  #followed = true;

  /** `post` reaches the runtime; `changed` runs when a router's queue may have changed. */
  constructor(post: (message: FromReplica, transfer?: Transfer) => void, changed: () => void) {
    this.#post = post;
    this.#changed = changed;
  }

  /** On a cluster node: replicas on other nodes are called over `nc`. */
  useNats(nc: NatsConnection): void {
    this.#nats = nc;
  }

  /** A graceful stop: replicas on other nodes forget this one's channels to them. */
  sayBye(): void {
    for (const link of [...this.#links]) link.bye();
  }

  /** This replica's NATS connection dropped: what is in flight over it fails with `reason`. */
  natsLost(reason: string): void {
    for (const link of this.#links) link.onReset?.(reason);
  }

  /** Node `node` is lost: the calls in flight on its replicas fail now, naming it. */
  peerLost(node: string, reason: string): void {
    for (const link of [...this.#links]) if (link.node === node) link.close(reason);
  }

  /**
   * No membership comes any more (a front door stopped serving the application): a channel
   * that closes fails its calls at once, without waiting to be told why.
   */
  unsubscribed(): void {
    this.#followed = false;
    for (const target of this.#targets.values())
      for (const connection of [...target.leaving.values()]) connection.stopWaiting();
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

  /**
   * Calls `method` of `deployment` (the function, when undefined). Inside a replica the
   * request being handled (`outer`: the one the calling code ran for when it made the call)
   * gives the request id, cancellation and model id, unless `given` does; a handle's options
   * (`handle`) name another model, and add a timeout or signal within the request's.
   */
  call(
    deployment: string,
    method: string | undefined,
    args: unknown[],
    given?: CallOptions,
    handle?: HandleOptions,
    outer: ActiveRequest | undefined = currentRequest(),
  ): Promise<unknown> {
    const target = this.#target(deployment);
    if (target.waiting) {
      const waiting = target.waiting;
      // It waits for the replicas' addresses: with its arguments as they are now (a copy;
      // one that cannot be copied is refused with why when it is sent).
      let taken = args;
      if (!given?.owned && args.some(changeable)) {
        try {
          taken = structuredClone(args);
        } catch {
          // sent as it is: the router names the argument that cannot be sent
        }
      }
      // The wait is bounded as the call is: the request's cancellation, the handle's
      // timeout and signal (the control plane may be slow to answer, or never).
      const timeoutMs = handle && handleTimeoutMs(handle);
      const deadline = timeoutMs === undefined ? undefined : performance.now() + timeoutMs;
      const { scope, dispose } = innerScope(
        method === undefined ? `${deployment}()` : `${deployment}.${method}()`,
        given ? given.cancel : outer?.scope,
        handle?.signal,
        timeoutMs,
      );
      let off = (): void => undefined;
      let ready!: () => void;
      return new Promise<void>((resolve, reject) => {
        ready = resolve;
        waiting.push(resolve);
        if (scope) off = scope.subscribe(reject);
      }).then(
        () => {
          off();
          dispose();
          // The call gets what is left of its timeout, not the whole of it again.
          const left =
            deadline === undefined
              ? handle
              : { ...handle, timeout: Math.max(1, deadline - performance.now()) };
          return this.call(deployment, method, taken, given, left, outer);
        },
        (error: unknown) => {
          dispose();
          const at = waiting.indexOf(ready);
          if (at >= 0) waiting.splice(at, 1);
          throw error;
        },
      );
    }
    if (given) return this.#send(target, method, args, given);
    const { scope, dispose } = innerScope(
      method === undefined ? `${deployment}()` : `${deployment}.${method}()`,
      outer?.scope,
      handle?.signal,
      handle && handleTimeoutMs(handle),
    );
    const result = this.#send(target, method, args, {
      // A front-door worker's route handler has the request it handles.
      requestId: outer ? outer.requestId : routeRequest()?.requestId,
      cancel: scope,
      ...movablesOf(args),
      multiplexedModelId: handle?.multiplexedModelId ?? outer?.multiplexedModelId,
      traceparent: outer ? outer.traceparent : activeTraceparent(),
    });
    // A scope of the call's own (a handle's timeout or signal) lasts until a stream ends.
    if (scope !== outer?.scope)
      result.then(
        (value) => (value instanceof StreamReader ? value.onEnd(dispose) : dispose()),
        dispose,
      );
    return result;
  }

  #send(
    target: Target,
    method: string | undefined,
    args: unknown[],
    options: CallOptions,
  ): Promise<unknown> {
    const result = target.router!.call(method, args, options);
    if (target.router!.queued > 0) this.#changed();
    return result;
  }

  /** The control plane's publication of `d`'s running replicas. */
  onMembers(message: MembersMessage): void {
    const target = this.#target(message.d);
    const limits = {
      maxOngoingRequests: message.maxOngoing,
      maxQueuedRequests: message.maxQueued,
      maxQueueWaitMs: message.maxQueueWait,
    };
    if (target.router) target.router.configure(limits);
    else target.router = new Router(message.d, message.label, limits);
    for (const id of message.remove) {
      const connection = target.connections.get(id);
      target.connections.delete(id);
      if (!connection || connection.closed) continue;
      // Its calls in flight finish (or fail saying why); with none, it is let go of.
      if (connection.pending > 0) target.leaving.set(id, connection);
      else connection.retire?.();
    }
    for (const [id, why] of Object.entries(message.gone ?? {})) target.leaving.get(id)?.told(why);
    for (const endpoint of message.add) {
      target.connections.set(
        endpoint.replica,
        connect(endpoint, message.d, target, this.#changed, this.#nats, this.#links, () =>
          this.#followed ? UNTOLD_WAIT_MS : 0,
        ),
      );
    }
    for (const [id, connection] of target.connections) {
      connection.models = sameModels(connection.models, message.models?.[id]);
      connection.multiplexed = message.models?.[id] !== undefined;
    }
    target.router.setReplicas([...target.connections.values()]);
    target.router.setUnavailable(
      message.unavailable ? deserializeError(message.unavailable) : undefined,
    );
    const waiting = target.waiting;
    target.waiting = undefined;
    for (const resume of waiting ?? []) resume();
  }

  /** Whether every deployment asked for has a running replica (a front door's readiness). */
  ready(): boolean {
    for (const target of this.#targets.values())
      if (!target.router || target.router.replicas.length === 0) return false;
    return true;
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
}

const NO_MODELS: ReadonlySet<string> = new Set();

/** The reported models as a set: the one the connection has when nothing changed. */
function sameModels(
  known: ReadonlySet<string>,
  reported: readonly string[] | undefined,
): ReadonlySet<string> {
  const next = reported ?? [];
  if (next.length === known.size && next.every((m) => known.has(m))) return known;
  return next.length === 0 ? NO_MODELS : new Set(next);
}

/**
 * A connection to one replica of `deployment`: over the `MessageChannel` port the control
 * plane handed out (between threads), or over the replica's Unix socket (across
 * processes); batched like every channel.
 */
function connect(
  endpoint: PeerEndpoint,
  deployment: string,
  target: Target,
  changed: () => void,
  nats: NatsConnection | undefined,
  links: Set<NatsLink>,
  untoldWaitMs: () => number,
): ReplicaConnection {
  const { replica } = endpoint;
  // A call that waited for a slot this answer frees goes with the flush right after it.
  const onReply = (data: ReplyMessage | ReplyMessage[]): void => {
    batcher.within(() => unbatch(data, (message) => connection.onMessage(message)));
    changed();
  };
  let send: (message: CallMessage | CallMessage[], transfer: Transfer) => void;
  let onClose: (listener: (reason?: string) => void) => void;
  let retire: (() => void) | undefined;
  if (endpoint.port) {
    const port: MessagePort = endpoint.port;
    send = (message, transfer) => port.postMessage(message, transfer as ArrayBuffer[]);
    port.on("message", onReply);
    onClose = (listener) => port.on("close", () => listener());
  } else if (endpoint.socket) {
    const channel = new SocketChannel<ReplyMessage, CallMessage>(
      connectTo(endpoint.socket),
      onReply,
    );
    send = (message) => channel.send(message);
    onClose = (listener) => channel.onClose(() => listener());
  } else if (endpoint.nats && nats) {
    const link = natsLink(nats, endpoint.nats, endpoint.node ?? "", onReply, links);
    send = (message) => link.send(message);
    onClose = (listener) => (link.onClose = listener);
    link.onReset = (reason) => connection.failPending(reason);
    retire = () => {
      link.bye();
      link.close(`replica ${replica} left the membership`);
    };
    link.onUnreachable = (reason) => connection.unreachable(reason);
  } else {
    throw new Error(`replica ${replica} of "${deployment}" came with no channel to reach it`);
  }
  const batcher = new MessageBatcher<CallMessage>(
    send,
    (message, error) => connection.undeliverable(message, error),
    "microtask",
    endpoint.port !== undefined,
  );
  const connection = new ReplicaConnection(replica, deployment, (message, transfer, now) =>
    batcher.push(message, transfer, now),
  );
  connection.retire = retire;
  onClose((reason) => {
    // A port or socket says nothing of why: the control plane's membership does (`gone`).
    const forget = (): void => {
      if (target.leaving.get(replica) === connection) target.leaving.delete(replica);
    };
    if (reason !== undefined) {
      connection.close(reason);
      forget();
    } else {
      // What is pending waits (briefly) to be told why: the connection stays findable.
      target.leaving.set(replica, connection);
      connection.closeUntold(
        `its channel to replica ${replica} closed (the replica stopped or died)`,
        forget,
        untoldWaitMs(),
      );
    }
    if (target.connections.get(replica) === connection) {
      target.connections.delete(replica);
      target.router?.setReplicas([...target.connections.values()]);
    }
  });
  return connection;
}

/** A channel to a replica on another node: an inbox of this replica's, and the target's subject. */
interface NatsLink {
  readonly node: string;
  readonly send: (message: CallMessage | CallMessage[]) => void;
  /** The target is gone (its node said so, or the node is lost): nothing more is sent. */
  readonly close: (reason: string) => void;
  onClose: ((reason: string) => void) | undefined;
  /** What is in flight may be lost (a NATS connection dropped): it fails; the link stays. */
  onReset: ((reason: string) => void) | undefined;
  /** NATS had no subscriber for the target (see `ReplicaConnection.unreachable`). */
  onUnreachable: ((reason: string) => void) | undefined;
  /** Tells the target this channel is done (it cancels what still runs for it). */
  readonly bye: () => void;
}

function natsLink(
  nc: NatsConnection,
  subject: string,
  node: string,
  onReply: (data: ReplyMessage | ReplyMessage[]) => void,
  links: Set<NatsLink>,
): NatsLink {
  const mailbox = NatsMailbox.open<
    ReplyMessage | ReplyMessage[] | GoneMessage | ResetMessage,
    CallMessage | CallMessage[] | { t: "bye" }
  >(nc);
  const link: NatsLink = {
    node,
    send: (message) => mailbox.send(subject, message),
    close: (reason) => {
      if (mailbox.closed) return;
      mailbox.close();
      links.delete(link);
      link.onClose?.(reason);
    },
    onClose: undefined,
    onReset: undefined,
    onUnreachable: undefined,
    bye: () => {
      try {
        mailbox.send(subject, { t: "bye" });
      } catch {
        // the connection is closed: nothing reaches the target anyway
      }
    },
  };
  links.add(link);
  mailbox.onNoResponders(() => link.onUnreachable?.(noSubscriber(node)));
  mailbox.onMessage((data) => {
    if (!Array.isArray(data) && data.t === "gone") link.close(data.reason);
    else if (!Array.isArray(data) && data.t === "reset") link.onReset?.(data.reason);
    else onReply(data);
  });
  return link;
}

export function createRemoteHandle(deployment: string, calls: OutgoingCalls): unknown {
  return handleProxy(
    deployment,
    (method, args, options, caller) =>
      calls.call(deployment, method, args, undefined, options, caller as ActiveRequest | undefined),
    {},
    false,
    currentRequest,
  );
}
