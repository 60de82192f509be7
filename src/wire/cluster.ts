/**
 * @internal What a cluster's head and nodes say to each other over NATS, and what they keep
 * in JetStream KV. Subjects:
 *
 * - `tributary.<cluster>.node.<name>`: a node's mailbox; the head sends {@link ToNode} there.
 * - `tributary.<cluster>.replica.<token>`: one replica's calls, served by the replica
 *   itself on a NATS connection of its own. Every sender (the head, a router in a replica
 *   on another node, a node's front-door bridge) is a caller with a channel of its own
 *   there, keyed by its address, so `busy`/`free` and call ids stay per caller.
 * - `tributary.<cluster>.replica.<token>.ctl`: the same replica's control, served by its
 *   node. The owner (the head's transport to it) sends the other `ToReplica` messages
 *   there and gets the replica's `FromReplica` ones back, besides replies to its calls.
 *
 * Buckets: `<cluster>_nodes` (one key per node, refreshed every heartbeat; the bucket's TTL
 * removes a node that stopped) and `<cluster>_state` (the applied config, and one key per
 * placed replica).
 */
import type { MembersMessage } from "./protocol.js";

type Isolation = "thread" | "process";

/** What a node offers: the same shape as a deployment's `resources`. */
export interface NodeResources {
  readonly cpus: number;
  readonly gpus: number;
  /** Bytes. */
  readonly memory: number;
  readonly custom: Readonly<Record<string, number>>;
}

/** What a replica needs of a node: a deployment's `resources`. */
export interface ResourceNeed {
  readonly cpus?: number | undefined;
  readonly gpus?: number | undefined;
  /** Bytes. */
  readonly memory?: number | undefined;
  readonly custom?: Readonly<Record<string, number>> | undefined;
}

/** A node's heartbeat, under its name in the nodes bucket. */
export interface NodeRecord {
  readonly name: string;
  readonly resources: NodeResources;
  /** Its mailbox (see the module comment). */
  readonly address: string;
  /** Its own front door, when it has one. */
  readonly httpUrl?: string | undefined;
  readonly startedAt: number;
  /** When the node wrote this, by its clock (a head judges liveness by its own). */
  readonly heartbeat: number;
  /** The node's process id, for an operator (and for tests that kill it). */
  readonly pid: number;
  /** Replicas it runs, by id. */
  readonly replicas: readonly string[];
  /**
   * Set once the node has begun to leave: it drains what it runs and heartbeats until it is
   * done, and the head places nothing new on it (absent from nodes before this field).
   */
  readonly leaving?: boolean | undefined;
}

/** A replica the head placed, under `replica.<token>` in the state bucket. */
export interface PlacementRecord {
  readonly replica: string;
  readonly app: string;
  readonly deployment: string;
  readonly node: string;
  readonly subject: string;
  readonly isolation: Isolation;
  /** What it was started with (its code, arguments and options): what adoption matches on. */
  readonly key: string;
  readonly resources: ResourceNeed;
}

/**
 * The reason a node gives in `node-exit` for a replica it refuses to start, or ends, because
 * it is leaving: the head takes it as word of the leave (its heartbeat may say so later).
 */
export const NODE_LEAVING = "the node is leaving";

/** The head → a node, on the node's mailbox; answered on the sender's. */
export type ToNode =
  /** Start a replica host and serve it on `subject`; answered `started` or `exit`. */
  | {
      readonly t: "start";
      readonly replica: string;
      readonly subject: string;
      readonly isolation: Isolation;
      readonly memoryBytes?: number | undefined;
    }
  /** A head that restarted takes over a running replica; answered `adopted` or `exit`. */
  | { readonly t: "adopt"; readonly replica: string }
  /** End the replica now; answered `exit`. */
  | { readonly t: "terminate"; readonly replica: string };

/** A node → the owner of one of its replicas (besides the replica's own `FromReplica`). */
export type FromNode =
  | { readonly t: "node-started"; readonly replica: string; readonly description: string }
  | {
      readonly t: "node-adopted";
      readonly replica: string;
      readonly description: string;
      /** The replica finished its constructor (it said `ready`). */
      readonly ready: boolean;
      readonly models?: readonly string[] | undefined;
    }
  /** The replica's host exited (or never started, or the node does not have it). */
  | { readonly t: "node-exit"; readonly replica: string; readonly reason: string };

/**
 * A node's front door → the head (on `tributary.<cluster>.head`): subscriber `key` of the
 * node calls deployment `d` of application `app` (or no longer calls anything).
 */
export type ToHead =
  | { readonly t: "fd-subscribe"; readonly app: string; readonly key: number; readonly d: string }
  | { readonly t: "fd-unsubscribe"; readonly key: number }
  /** What subscriber `key`'s routers hold queued, by deployment (autoscaling counts it). */
  | {
      readonly t: "fd-queued";
      readonly key: number;
      readonly queued: Readonly<Record<string, number>>;
    };

/** The head → a node's front door: membership for its subscriber `key`. */
export interface FrontDoorMembers {
  readonly t: "fd-members";
  readonly key: number;
  readonly m: MembersMessage;
}

/** A head that started says so (on `tributary.<cluster>.head.hello`): front doors subscribe again. */
export interface HeadHello {
  readonly t: "head-hello";
}

/**
 * A caller → a replica, on its call subject, besides calls: this channel is done; what
 * still runs for it is cancelled.
 */
export interface ByeMessage {
  readonly t: "bye";
}

/**
 * A replica → each caller it knows, after the replica's NATS connection was lost and is
 * back: what the caller had in flight on it may never have arrived, or its answer may be
 * lost, so it fails (the replica has cancelled it), and a slot counts free again. The
 * channel stays usable. (A caller the replica never heard from learns of a lost call from
 * NATS's "no responders" status, or its own connection's loss.)
 */
export interface ResetMessage {
  readonly t: "reset";
  readonly reason: string;
}

/**
 * A replica's node → each caller the replica reported: the replica is gone; what is
 * pending on it fails.
 */
export interface GoneMessage {
  readonly t: "gone";
  readonly reason: string;
}

export const subjects = {
  node: (cluster: string, name: string): string => `tributary.${cluster}.node.${name}`,
  head: (cluster: string): string => `tributary.${cluster}.head`,
  headHello: (cluster: string): string => `tributary.${cluster}.head.hello`,
  replica: (cluster: string, token: string): string => `tributary.${cluster}.replica.${token}`,
  /** A replica's control subject, beside its call subject. */
  control: (replicaSubject: string): string => `${replicaSubject}.ctl`,
  nodesBucket: (cluster: string): string => `${cluster}_nodes`,
  stateBucket: (cluster: string): string => `${cluster}_state`,
};

/** A node name or cluster name NATS subjects and KV keys accept. */
export const NAME_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
