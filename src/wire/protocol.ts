/**
 * @internal Messages between callers, replicas and the control plane, as tagged unions.
 * Every request carries an id; a response names the id it answers. A caller (the runtime,
 * or another replica over a `MessageChannel` the control plane handed out) sends
 * {@link CallMessage}s and gets {@link ReplyMessage}s; the control plane sends `init`,
 * `health`, `reconfigure`, `stop` and membership over the replica's own transport.
 */
import type { MessagePort } from "node:worker_threads";
import type { JsonValue } from "../options.js";

/**
 * A deployment handle passed as a call argument (a class node bound into the graph, or a
 * handle passed at run time) travels as `{ [HANDLE_REF]: name }`: a handle itself cannot be
 * cloned. The replica turns it back into a live handle.
 */
export const HANDLE_REF = "__tributaryHandle";

/**
 * A constructor argument: a value, a handle to another deployment of the graph, or a value
 * (array or plain object) with handles at some paths (`null` there in `value`).
 */
export type InitArg =
  | { readonly kind: "value"; readonly value: unknown }
  | { readonly kind: "handle"; readonly deployment: string }
  | {
      readonly kind: "nested";
      readonly value: unknown;
      readonly handles: readonly {
        readonly path: readonly (string | number)[];
        readonly deployment: string;
      }[];
    };

export interface SerializedError {
  readonly name: string;
  readonly message: string;
  readonly stack?: string | undefined;
  readonly code?: string | undefined;
  /** Other own data properties (`deployment`, `issues`, …). */
  readonly props?: Record<string, unknown> | undefined;
  readonly cause?: SerializedError | undefined;
}

/** What a replica needs to start: where the graph is and which deployment it runs. */
export interface InitMessage {
  readonly t: "init";
  readonly moduleUrl: string;
  readonly app: string;
  readonly deployment: string;
  readonly replica: string;
  readonly args: readonly InitArg[];
  readonly userConfig?: JsonValue | undefined;
  /** `resources.memory` in bytes: the replica ends itself past it (see memory-limit.ts). */
  readonly memoryLimit?: number | undefined;
  /** The replica's own cap: calls beyond it are answered `busy` (the router tries another). */
  readonly maxOngoing: number;
  /** `tracing`: the replica exports its spans there (unless its code registered an SDK). */
  readonly tracing?: { readonly otlpEndpoint: string; readonly serviceName: string } | undefined;
  /** False: the replica keeps no request statistics (`run(app, { metrics: false })`). */
  readonly metrics?: boolean | undefined;
  /**
   * On a cluster node: the replica connects to NATS itself and serves callers on `subject`
   * (its node adds this to the head's `init`), so a call crosses no other thread.
   */
  readonly nats?: ReplicaNats | undefined;
  /** The code the head applied: a cluster node starts the replica only if its copy is the same. */
  readonly code?: { readonly file: string; readonly version: string } | undefined;
}

/** How a replica on a cluster node reaches NATS (see {@link InitMessage.nats}). */
export interface ReplicaNats {
  /** The server URL(s), as the node connected. */
  readonly url: string;
  readonly user?: string | undefined;
  readonly pass?: string | undefined;
  readonly token?: string | undefined;
  readonly credsFile?: string | undefined;
  /** The CA (PEM file) of the server's TLS certificate. */
  readonly caFile?: string | undefined;
  /** The subject callers (the head, routers elsewhere, front doors) send calls to. */
  readonly subject: string;
}

/** Upper bounds (seconds) of the buckets of a replica's processing-time histogram. */
export const PROCESSING_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
] as const;
/** Upper bounds of the buckets of the batch-size histogram. */
export const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512] as const;

/** A histogram as counts per bucket (the last one past the largest bound) and their sum. */
export interface HistogramSnapshot {
  readonly counts: readonly number[];
  readonly sum: number;
}

/**
 * What a replica has served since it started, summed in the replica and shipped whole with
 * its `load` report (not a message per request): calls by outcome, their processing time,
 * and the sizes of the batches its `batch()` functions ran.
 */
export interface ReplicaStats {
  readonly ok: number;
  readonly error: number;
  readonly cancelled: number;
  readonly processing: HistogramSnapshot;
  readonly batches: HistogramSnapshot;
}

export type Response =
  | { readonly t: "ok"; readonly id: number; readonly v: unknown }
  /** `user`: thrown by user code (the caller wraps it in a GraphExecutionError). */
  | { readonly t: "err"; readonly id: number; readonly e: SerializedError; readonly user: boolean }
  | { readonly t: "stream"; readonly id: number }
  | { readonly t: "item"; readonly id: number; readonly v: unknown }
  | { readonly t: "end"; readonly id: number };

/** A caller → a replica, on any channel to it (the runtime's, or a peer's port). */
export type CallMessage =
  /** Call `m` (a method, or the function when undefined) with `a`; `r` is the request id. */
  | {
      readonly t: "call";
      readonly id: number;
      readonly m: string | undefined;
      readonly a: unknown[];
      readonly r?: string | undefined;
      /** The multiplexed model the call is for (`requestContext().multiplexedModelId`). */
      readonly mm?: string | undefined;
      /** The W3C `traceparent` of the caller's span, only when it has one. */
      readonly tp?: string;
    }
  | { readonly t: "cancel"; readonly id: number; readonly reason: "timeout" | "abort" }
  /**
   * The caller of streamed call `id` takes `n` more items. A replica sends no more items of
   * a stream than {@link STREAM_WINDOW} plus the credit it was given, so a consumer that
   * stops reading holds up the producer instead of filling memory.
   */
  | { readonly t: "credit"; readonly id: number; readonly n: number };

/**
 * How many items of a stream may be on their way to its consumer: a replica may send this
 * many at first, and the caller gives credit for half of it again each time its consumer
 * has taken that many.
 */
export const STREAM_WINDOW = 64;

/** A replica → a caller, on the channel the call came on. */
export type ReplyMessage =
  | Response
  /**
   * The replica did not run call `id`: it is at its `maxOngoingRequests` (or, with
   * `closing`, it is stopping). The router sends it to another replica, or queues it.
   * `a`: the call's arguments, moved back when the call moved buffers to the replica
   * (the caller's own are detached): the call is sent again with these.
   */
  | {
      readonly t: "busy";
      readonly id: number;
      readonly closing?: boolean;
      readonly a?: unknown[];
    }
  /** A slot is free again on a replica that answered `busy` on this channel. */
  | { readonly t: "free" };

/** One replica of a deployment, as the control plane publishes it to a router in a replica. */
export interface PeerEndpoint {
  readonly replica: string;
  /** Between threads: a `MessageChannel` port whose other end the target replica serves. */
  readonly port?: MessagePort | undefined;
  /** Otherwise: the path of the Unix socket the target replica listens on. */
  readonly socket?: string | undefined;
  /**
   * In a cluster: the NATS subject the target replica serves callers on, and its node's
   * name. A replica on a node calls it there on its own NATS connection (to a replica on
   * the same node, its node hands it a direct channel instead); a node's front door, over
   * a socket its node bridges to the subject.
   */
  readonly nats?: string | undefined;
  readonly node?: string | undefined;
}

/**
 * The control plane → a replica's routers: the running replicas of deployment `d` changed
 * (Ray Serve's long poll). `unavailable`: while none runs, calls fail at once with this
 * error.
 */
export interface MembersMessage {
  readonly t: "members";
  readonly d: string;
  readonly label: string;
  readonly maxOngoing: number;
  readonly maxQueued: number;
  readonly add: readonly PeerEndpoint[];
  readonly remove: readonly string[];
  readonly unavailable?: SerializedError | undefined;
  /** How long a call may wait in the router's queue, in ms (absent: no limit). */
  readonly maxQueueWait?: number | undefined;
  /**
   * The models each running replica that multiplexes has loaded, by replica id (a replica
   * absent here does not multiplex); absent when none does.
   */
  readonly models?: Readonly<Record<string, readonly string[]>> | undefined;
  /**
   * Why replicas ended, by replica id (`stopped`, or what the control plane saw: `thread 12
   * exited with code 3`). A port or socket to a replica only closes as it ends: a caller's
   * calls still pending on it fail naming this.
   */
  readonly gone?: Readonly<Record<string, string>> | undefined;
}

/** Runtime → replica. */
export type ToReplica =
  | InitMessage
  | CallMessage
  | { readonly t: "health"; readonly id: number }
  | { readonly t: "reconfigure"; readonly id: number; readonly config: JsonValue }
  /** Stop taking calls, let those running finish (up to `drainMs`), then `close()`. */
  | { readonly t: "stop"; readonly id: number; readonly drainMs: number }
  /** A new `maxOngoingRequests` for this replica. */
  | { readonly t: "limits"; readonly maxOngoing: number }
  /** Serve calls from another replica on `port`. */
  | { readonly t: "accept"; readonly port: MessagePort }
  /** In a cluster: node `node` is lost; calls in flight on its replicas fail with `reason`. */
  | { readonly t: "peer-lost"; readonly node: string; readonly reason: string }
  | MembersMessage;

/** Replica → runtime. */
export type FromReplica =
  /** Constructed; `socket`: where it serves callers in other processes. */
  | { readonly t: "ready"; readonly socket?: string | undefined }
  | { readonly t: "init-failed"; readonly e: SerializedError }
  /** The replica is about to end itself, and why (it went past its memory limit). */
  | { readonly t: "fatal"; readonly message: string }
  /** This replica calls deployment `d`: send its running replicas (then every change). */
  | { readonly t: "subscribe"; readonly d: string }
  /** Requests running on this replica, and those its routers hold queued, by deployment. */
  | {
      readonly t: "load";
      readonly ongoing: number;
      readonly queued: Record<string, number>;
      readonly stats?: ReplicaStats | undefined;
    }
  /** The multiplexed models this replica has loaded now (sent when the set changes). */
  | { readonly t: "models"; readonly models: readonly string[] }
  /** Lines the replica's code logged (`console.*`), each one JSON object (pino's format). */
  | { readonly t: "log"; readonly lines: readonly string[] }
  /**
   * In a cluster: a caller at NATS address `from` sent its first call (`on`), or said bye.
   * The replica's node tells each caller it knows when the replica is gone.
   */
  | { readonly t: "caller"; readonly from: string; readonly on: boolean }
  | ReplyMessage;
