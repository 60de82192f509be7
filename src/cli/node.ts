/**
 * @internal `tributary node`: a machine of a cluster. It hosts replicas (threads and
 * processes, as one machine does) for the head. Each replica connects to NATS itself and
 * serves its calls on a subject of its own (the head, routers in replicas on other nodes
 * and front doors call it there, each on a channel of its own), so a call crosses no
 * thread but the replica's. The node serves each replica's control subject: the head (the
 * replica's owner) sends `init`, health checks, membership and stops there, and gets the
 * replica's `FromReplica` messages back.
 *
 * A replica here calls a replica on another node on its own NATS connection; one on this
 * node, on a direct channel this node hands it. This node's front door calls replicas
 * elsewhere through a socket the node bridges to the target's subject, with a NATS inbox
 * per channel. The head is on no call's path, and while it is away calls keep flowing on
 * the membership last published. When a node is lost, every replica here and every bridge
 * fails the calls in flight to it; when a replica here ends, the node tells its callers.
 *
 * Heartbeats go to the nodes bucket every `nodeTimeout / 5`. A node that cannot write one
 * for half of `nodeTimeout` ends its replicas itself (the head will start them elsewhere
 * once it gives up on this node, so no slot is served twice after a partition heals).
 */
import { createServer, type Server } from "node:net";
import { hostname, cpus, totalmem, tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { rmSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { MessageChannel, type MessagePort } from "node:worker_threads";
import { dirname, resolve } from "node:path";
import type { KV } from "@nats-io/kv";
import type { Application } from "../app/application.js";
import { parseConfig } from "../config/load.js";
import { codeMismatch, configureApplication, moduleVersion } from "../config/resolve.js";
import { Metrics } from "../metrics/metrics.js";
import type { Subscriber } from "../control/membership.js";
import {
  startFrontDoorPool,
  type FrontDoorPool,
  type PoolApplication,
  type PoolController,
} from "../runtime/front-door-pool.js";
import { serverOptions } from "./instance.js";
import type { NatsConnection } from "@nats-io/nats-core";
import { openBuckets } from "../control/cluster.js";
import { defaultTransportFactory } from "../data/transport/index.js";
import {
  connectionLost,
  NatsMailbox,
  noSubscriber,
  watchConnection,
} from "../data/transport/nats-link.js";
import { SocketChannel } from "../data/transport/socket.js";
import { AWAY_MS, PROBE_ID, PROBE_WAIT_MS } from "../data/connection.js";
import type { ReplicaTransport } from "../data/transport/transport.js";
import { OptionsError, ReplicaDiedError, TributaryError } from "../errors.js";
import { unsendableArguments } from "../dag/call-args.js";
import { serializeError } from "../wire/error-codec.js";
import { CallTable } from "../data/call-table.js";
import {
  NAME_PATTERN,
  NODE_LEAVING,
  subjects,
  type FromNode,
  type FrontDoorMembers,
  type GoneMessage,
  type ResetMessage,
  type HeadHello,
  type ToHead,
  type NodeRecord,
  type NodeResources,
  type PlacementRecord,
  type ToNode,
} from "../wire/cluster.js";
import type {
  CallMessage,
  FromReplica,
  MembersMessage,
  PeerEndpoint,
  ReplicaNats,
  ReplyMessage,
  ToReplica,
} from "../wire/protocol.js";

export interface NodeOptions {
  readonly name: string;
  readonly cluster: string;
  readonly resources: NodeResources;
  /** How this node's replicas connect to NATS: the URL and credentials the node used. */
  readonly nats: Omit<ReplicaNats, "subject">;
  /** `--http-port`: a front door on this node too, serving the applications the head runs. */
  readonly http?: { readonly host: string; readonly port: number } | undefined;
  /** Default nodeTimeout until the head's setting is read (ms). */
  readonly nodeTimeoutMs?: number | undefined;
  readonly log?: (line: string) => void;
}

/** The levels of the node's own log lines, numbered as pino numbers them. */
type Level = "info" | "warn" | "error";

/** How long a node that leaves lets its replicas finish what they run. */
const LEAVE_DRAIN_MS = 10_000;
/** The id of a leaving node's own `stop` (control ids are negative; the head's count down from -1). */
const DRAIN_ID = -2_000_000_000;

class Hosted {
  owner: string | undefined;
  ready = false;
  socket: string | undefined;
  models: readonly string[] | undefined;
  /** The deployments it subscribed to: replayed to a head that adopts it. */
  readonly subscriptions = new Set<string>();
  /** The NATS addresses of its callers (as it reports them): told when it is gone. */
  readonly callers = new Set<string>();
  exited = false;
  /** A graceful leave waits on this replica's answer to its `stop`. */
  drained: (() => void) | undefined;
  constructor(
    readonly id: string,
    readonly subject: string,
    readonly transport: ReplicaTransport,
    /** On the replica's control subject. */
    readonly mailbox: NatsMailbox<ToReplica, unknown>,
  ) {}
}

/** A bridge from local channels to a replica on another node. */
interface Bridge {
  readonly node: string;
  /** With a reason: the target is gone, and the calls in flight on it fail with it. */
  readonly close: (reason?: string) => void;
  /** The calls in flight may be lost (a NATS connection dropped): they fail; it stays open. */
  readonly reset: (reason: string) => void;
}

/** Resources from `--resources` JSON, with this machine's CPUs and memory by default. */
export function parseResources(text: string | undefined): NodeResources {
  let given: Partial<Record<string, unknown>> = {};
  if (text !== undefined) {
    try {
      given = JSON.parse(text) as Partial<Record<string, unknown>>;
    } catch (error) {
      throw new OptionsError(`--resources is not JSON: ${(error as Error).message}`);
    }
    if (typeof given !== "object" || given === null || Array.isArray(given))
      throw new OptionsError(
        `--resources must be a JSON object like {"cpus":4,"custom":{"ocr":1}}`,
      );
  }
  const number = (key: string, fallback: number): number => {
    const value = given[key] ?? fallback;
    if (typeof value !== "number" || !Number.isFinite(value) || value < 0)
      throw new OptionsError(
        `--resources: ${key} must be a number ≥ 0 (it is ${JSON.stringify(value)})`,
      );
    return value;
  };
  const custom = given.custom ?? {};
  if (typeof custom !== "object" || custom === null || Array.isArray(custom))
    throw new OptionsError(`--resources: custom must be an object of numbers`);
  for (const [key, value] of Object.entries(custom))
    if (typeof value !== "number" || !Number.isFinite(value) || value < 0)
      throw new OptionsError(`--resources: custom.${key} must be a number ≥ 0`);
  for (const key of Object.keys(given))
    if (!["cpus", "gpus", "memory", "custom"].includes(key))
      throw new OptionsError(`--resources: unknown key "${key}" (cpus, gpus, memory, custom)`);
  return {
    cpus: number("cpus", cpus().length),
    gpus: number("gpus", 0),
    memory: number("memory", totalmem()),
    custom: custom as Record<string, number>,
  };
}

/** How soon a heartbeat that failed is tried again. */
const RETRY_HEARTBEAT_MS = 200;

/** `promise`, or a rejection with `reason` after `ms` (the promise is left to settle). */
function withinMs<T>(promise: Promise<T>, ms: number, reason: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(reason)), ms);
  });
  promise.catch(() => undefined);
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

export class ClusterNode {
  readonly options: NodeOptions;
  readonly nc: NatsConnection;
  readonly #nodesKv: KV;
  readonly #stateKv: KV;
  readonly #mailbox: NatsMailbox<ToNode | FrontDoorMembers, FromNode | ToHead>;
  readonly #hosted = new Map<string, Hosted>();
  readonly #bySubject = new Map<string, Hosted>();
  readonly #bridges = new Set<Bridge>();
  readonly #startedAt = Date.now();
  #nodeTimeoutMs: number;
  #lastHeartbeat = Date.now();
  /** Whether the name is this node's (see #claimName): until then it acts on no message. */
  #named = false;
  #heartbeatTimer: NodeJS.Timeout | undefined;
  /** When this node last saw each other node's heartbeat (its clock). */
  readonly #peers = new Map<string, number>();
  #stopWatch: (() => void) | undefined;
  /** Set when the node begins to leave (or fails to start): it takes on nothing new. */
  #closed = false;
  /** Heartbeats go on while this is set: through a leave's drain, until its replicas end. */
  #beating = true;
  /** The last heartbeat's write: a leave waits for it before it deletes the key. */
  #lastPut: Promise<unknown> | undefined;
  #bridgeNumber = 0;
  /** This node's front door (`--http-port`), and its subscriptions to the head. */
  #pool: FrontDoorPool | undefined;
  readonly #frontDoorKeys = new Map<Subscriber, number>();
  readonly #frontDoorSubs = new Map<
    number,
    {
      readonly subscriber: Subscriber;
      readonly app: string;
      readonly deployments: Set<string>;
      /** What its routers hold queued, as last reported (a new head hears it too). */
      queued?: Readonly<Record<string, number>>;
    }
  >();
  #nextFrontDoorKey = 0;
  #hello: NatsMailbox<HeadHello, never> | undefined;
  #appliedText: string | undefined;
  #serving: Promise<void> = Promise.resolve();

  private constructor(nc: NatsConnection, buckets: { nodes: KV; state: KV }, options: NodeOptions) {
    this.nc = nc;
    this.options = options;
    this.#nodesKv = buckets.nodes;
    this.#stateKv = buckets.state;
    this.#nodeTimeoutMs = options.nodeTimeoutMs ?? 10_000;
    this.#mailbox = NatsMailbox.open(nc, subjects.node(options.cluster, options.name));
    this.#mailbox.onMessage((message, from) => {
      // Until its name is its own, what comes to the name is another node's (see #claimName).
      if (!this.#named) return;
      if (message.t === "fd-members") this.#frontDoorMembers(message);
      else this.#onNodeMessage(message, from);
    });
  }

  static async start(nc: NatsConnection, options: NodeOptions): Promise<ClusterNode> {
    if (!NAME_PATTERN.test(options.name))
      throw new OptionsError(
        `--name must be 1 to 64 letters, digits, "-" or "_" (it is "${options.name}")`,
      );
    const buckets = await openBuckets(nc, options.cluster, options.nodeTimeoutMs ?? 10_000);
    const node = new ClusterNode(nc, buckets, options);
    // A replica's code can tell where it runs.
    process.env.TRIBUTARY_NODE = options.name;
    await node.#readSettings();
    await node.#claimName().catch((error: unknown) => {
      // (Not close(): it deletes the name's key, which is the other node's.)
      node.#closed = true;
      node.#beating = false;
      node.#mailbox.close();
      throw error;
    });
    if (options.http) await node.#startFrontDoor(options.http);
    await node.#heartbeat();
    node.#scheduleHeartbeat();
    await node.#watchPeers();
    // What the front door's bridges sent, or were to get, may be lost: it fails.
    // (And what they sent while it was away: nats.js drops it when it reconnects.)
    const lost = (): void => {
      for (const bridge of [...node.#bridges]) bridge.reset(connectionLost("the node's"));
    };
    const unwatch = watchConnection(nc, { lost, back: lost });
    const stop = node.#stopWatch;
    node.#stopWatch = () => {
      unwatch();
      stop?.();
    };
    return node;
  }

  get name(): string {
    return this.options.name;
  }

  /** This node's front door, when it has one. */
  get httpUrl(): string | undefined {
    return this.#pool?.url;
  }

  /** The replicas this node runs, by id (for status and tests). */
  get replicas(): string[] {
    return [...this.#hosted.keys()];
  }

  /**
   * Leaves the cluster: drains what it runs, ends every replica, removes this node's
   * heartbeat. Meanwhile it heartbeats as LEAVING: the head places nothing new on it, and
   * does not declare it DEAD (which fails the calls still running on its replicas) while
   * they finish.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // The head hears at once that this node is leaving (the record says so from now on).
    void this.#heartbeat().catch(() => undefined);
    // At the same time, each for up to LEAVE_DRAIN_MS: the front door takes no new request
    // and answers those in flight (their calls still reach this node's replicas, or others),
    // and each replica drains what it runs (it answers new calls `busy`, and routers send
    // them elsewhere), as a graceful stop does on one machine. Before, the front door was
    // forced 1 s after the replicas had drained, and a request running past a second lost
    // its connection.
    let forced: NodeJS.Timeout | undefined;
    await Promise.all([
      this.#pool?.close(new Promise((resolve) => (forced = setTimeout(resolve, LEAVE_DRAIN_MS)))),
      ...[...this.#hosted.values()].map((h) => this.#drain(h)),
    ]);
    clearTimeout(forced);
    this.#beating = false;
    clearTimeout(this.#heartbeatTimer);
    // Only now: meanwhile a peer lost, or NATS, still fails the calls in flight on it at once
    // (the front door's bridged calls too) instead of leaving them to the force. A new
    // config is no longer applied (#closed).
    this.#stopWatch?.();
    await Promise.all([...this.#hosted.values()].map((h) => this.#end(h, NODE_LEAVING, "info")));
    this.#hello?.close();
    for (const bridge of this.#bridges) bridge.close();
    this.#mailbox.close();
    // A heartbeat still on its way would put the key back after the delete (and the head
    // would list this node as LEAVING until nodeTimeout).
    await withinMs(this.#lastPut ?? Promise.resolve(), 2_000, "").catch(() => undefined);
    await this.#nodesKv.delete(this.options.name).catch(() => undefined);
  }

  /** A line in pino's JSON format (its level numbers), like the head's and the replicas'. */
  #log(level: Level, message: string, fields: Record<string, unknown> = {}): void {
    (this.options.log ?? ((line) => process.stdout.write(`${line}\n`)))(
      JSON.stringify({
        level: pino.levels.values[level],
        time: Date.now(),
        node: this.options.name,
        msg: message,
        ...fields,
      }),
    );
  }

  async #readSettings(): Promise<void> {
    const entry = await this.#stateKv.get("settings").catch(() => null);
    if (entry?.operation === "PUT") {
      const settings = entry.json<{ nodeTimeoutMs?: number }>();
      if (typeof settings.nodeTimeoutMs === "number") this.#nodeTimeoutMs = settings.nodeTimeoutMs;
    }
  }

  /**
   * A name is one node's: while another node's heartbeats under it go on (its key's
   * revision changes), this one is refused; a key left by a node that died (unchanged for
   * nodeTimeout) is taken. Judged by revisions, not by clocks.
   */
  async #claimName(): Promise<void> {
    const name = this.options.name;
    let seen: { revision: number; since: number } | undefined;
    for (;;) {
      const entry = await this.#nodesKv.get(name);
      if (!entry || entry.operation !== "PUT") break;
      if (seen && entry.revision !== seen.revision) {
        const other = entry.json<NodeRecord>();
        throw new TributaryError(
          "INVALID_CONFIG",
          `A node named "${name}" is already in the cluster (pid ${other.pid}, started ` +
            `${new Date(other.startedAt).toISOString()}): each node needs a name of its own (--name).`,
        );
      }
      seen ??= { revision: entry.revision, since: Date.now() };
      if (Date.now() - seen.since > this.#nodeTimeoutMs) break;
      await sleep(Math.min(200, this.#nodeTimeoutMs / 10));
    }
    this.#named = true;
  }

  #record(): NodeRecord {
    return {
      name: this.options.name,
      resources: this.options.resources,
      address: this.#mailbox.address,
      httpUrl: this.#pool?.url,
      startedAt: this.#startedAt,
      heartbeat: Date.now(),
      pid: process.pid,
      replicas: [...this.#hosted.values()].filter((h) => h.ready).map((h) => h.id),
      ...(this.#closed && { leaving: true }),
    };
  }

  async #heartbeat(): Promise<void> {
    const put = this.#nodesKv.put(this.options.name, JSON.stringify(this.#record()));
    this.#lastPut = put;
    await put;
    this.#lastHeartbeat = Date.now();
  }

  #scheduleHeartbeat(delayMs?: number): void {
    const every = Math.max(50, Math.floor(this.#nodeTimeoutMs / 5));
    this.#heartbeatTimer = setTimeout(() => {
      void (async () => {
        let failed = false;
        try {
          // A put sent while NATS was away may never be answered: JetStream's own timeout
          // (5 s) would outlast half of nodeTimeout (10 s by default), and one lost heartbeat
          // after a blip of 0.2 s ended every replica of the cluster. It is given up after
          // one period, and tried again soon after.
          await withinMs(this.#heartbeat(), every, "the heartbeat was not acknowledged");
          // Each bounded too: a read lost in a blip must not hold the next heartbeat back
          // for JetStream's 5 s.
          await withinMs(this.#readSettings(), every, "the settings could not be read");
          await withinMs(this.#checkPlacements(), every, "the placements could not be read");
        } catch {
          failed = true;
          // NATS is out of reach: past half the timeout, this node's replicas are ended.
          // Unless a heartbeat gets through now: the attempt that failed may have been
          // sent while NATS was away and lost, with NATS back for seconds since (a blip of
          // 3 s ended every replica of the cluster). The head gives up on a node only at
          // the whole timeout; the node's last try ends at three quarters of it.
          if (Date.now() - this.#lastHeartbeat > this.#nodeTimeoutMs / 2) {
            const until = this.#lastHeartbeat + (this.#nodeTimeoutMs * 3) / 4;
            let through = false;
            // Short tries, so that one sent just before NATS is back does not use them up.
            while (!through && this.#beating && Date.now() < until) {
              through = await withinMs(
                this.#heartbeat(),
                Math.min(500, until - Date.now()),
                "the heartbeat was not acknowledged",
              ).then(
                () => true,
                () => false,
              );
              // A try refused at once (no connection) is not repeated at once.
              if (!through) await sleep(Math.min(100, Math.max(0, until - Date.now())));
            }
            if (!through) this.#fence();
          }
        }
        if (this.#beating) this.#scheduleHeartbeat(failed ? RETRY_HEARTBEAT_MS : undefined);
      })();
    }, delayMs ?? every);
    this.#heartbeatTimer.unref();
  }

  /** Cut off from the cluster: the head will give up on this node, so its replicas end now. */
  #fence(): void {
    if (this.#hosted.size === 0) return;
    this.#log(
      "warn",
      "cut off from the cluster for half of nodeTimeout: ending this node's replicas",
      {
        replicas: [...this.#hosted.keys()],
      },
    );
    for (const hosted of [...this.#hosted.values()])
      void this.#end(hosted, "its node was cut off from the cluster", "warn");
  }

  /**
   * Replicas the head no longer has placed here (it gave up on this node while it was cut
   * off, and placed them elsewhere) end: none is served twice.
   */
  async #checkPlacements(): Promise<void> {
    for (const hosted of [...this.#hosted.values()]) {
      if (!hosted.ready) continue;
      const key = `replica.${hosted.subject.slice(hosted.subject.lastIndexOf(".") + 1)}`;
      const entry = await this.#stateKv.get(key);
      const record = entry?.operation === "PUT" ? entry.json<PlacementRecord>() : undefined;
      if (!record || record.node !== this.options.name)
        await this.#end(hosted, "the head placed it elsewhere", "warn");
    }
  }

  async #watchPeers(): Promise<void> {
    const watch = await this.#nodesKv.watch();
    // Beside the front door's watch of the config, when it has one.
    const before = this.#stopWatch;
    void (async () => {
      for await (const entry of watch) {
        if (entry.key === this.options.name) continue;
        if (entry.operation === "PUT") this.#peers.set(entry.key, Date.now());
        else this.#peerLost(entry.key);
      }
    })();
    const timer = setInterval(
      () => {
        const now = Date.now();
        for (const [name, seen] of this.#peers)
          if (now - seen > this.#nodeTimeoutMs) this.#peerLost(name);
      },
      Math.max(50, Math.floor(this.#nodeTimeoutMs / 4)),
    );
    timer.unref();
    this.#stopWatch = () => {
      clearInterval(timer);
      watch.stop();
      before?.();
    };
  }

  /**
   * Another node is gone: replicas here and bridges fail what is pending on its replicas,
   * and send it nothing more.
   */
  #peerLost(name: string): void {
    this.#peers.delete(name);
    const reason = `its node ${name} is DEAD (no heartbeat for ${this.#nodeTimeoutMs} ms)`;
    for (const hosted of this.#hosted.values())
      if (!hosted.exited) hosted.transport.send({ t: "peer-lost", node: name, reason });
    for (const bridge of [...this.#bridges]) if (bridge.node === name) bridge.close(reason);
  }

  #onNodeMessage(message: ToNode, from: string): void {
    try {
      switch (message.t) {
        case "start":
          this.#startReplica(message, from);
          return;
        case "adopt":
          this.#adopt(message.replica, from);
          return;
        case "terminate": {
          const hosted = this.#hosted.get(message.replica);
          if (!hosted)
            this.#mailbox.send(from, {
              t: "node-exit",
              replica: message.replica,
              reason: "terminated",
            });
          else void this.#end(hosted, "terminated");
          return;
        }
      }
    } catch (error) {
      this.#log("error", "a message from the head failed", { error: (error as Error).message });
    }
  }

  #startReplica(message: Extract<ToNode, { t: "start" }>, owner: string): void {
    if (this.#closed) {
      this.#mailbox.send(owner, {
        t: "node-exit",
        replica: message.replica,
        reason: NODE_LEAVING,
      });
      return;
    }
    const transport = defaultTransportFactory(message.isolation, message.replica, {
      memoryBytes: message.memoryBytes,
    });
    const mailbox = NatsMailbox.open<ToReplica, unknown>(
      this.nc,
      subjects.control(message.subject),
    );
    const hosted = new Hosted(message.replica, message.subject, transport, mailbox);
    hosted.owner = owner;
    this.#hosted.set(hosted.id, hosted);
    this.#bySubject.set(hosted.subject, hosted);
    mailbox.onMessage((m, from) => this.#onControl(hosted, m, from));
    transport.onMessage((m) => this.#fromReplica(hosted, m));
    // Control messages are plain data; one that cannot be passed on is a bug worth a line.
    transport.onUndeliverable((m, error) =>
      this.#log("error", "a message to a replica could not be passed on", {
        replica: hosted.id,
        message: m.t,
        error: error.message,
      }),
    );
    transport.onExit((reason) => {
      // Its callers hear what the head says of it: which thread or process, on which node.
      const told = `${transport.description} on node ${this.options.name} ${reason}`;
      if (!hosted.exited) void this.#end(hosted, reason, "error", told);
    });
    this.#mailbox.send(owner, {
      t: "node-started",
      replica: hosted.id,
      description: transport.description,
    });
  }

  #adopt(replica: string, owner: string): void {
    const hosted = this.#hosted.get(replica);
    if (!hosted || hosted.exited) {
      this.#mailbox.send(owner, { t: "node-exit", replica, reason: "its node no longer runs it" });
      return;
    }
    hosted.owner = owner;
    this.#mailbox.send(owner, {
      t: "node-adopted",
      replica,
      description: hosted.transport.description,
      ready: hosted.ready,
      models: hosted.models,
    });
    // The new head learns what the replica calls, and sends it membership again.
    for (const d of hosted.subscriptions)
      hosted.mailbox.send(owner, { t: "subscribe", d } satisfies FromReplica);
    this.#log("info", "a head adopted a replica", { replica });
  }

  /**
   * Ends a replica's host, tells its owner and its callers (`told`: what its callers hear,
   * by default `reason`). `level`: of its log line; by default an error (the replica exited
   * or crashed on its own).
   */
  async #end(hosted: Hosted, reason: string, level: Level = "error", told = reason): Promise<void> {
    if (hosted.exited) return;
    hosted.exited = true;
    if (reason !== "terminated")
      this.#log(level, "a replica ended", { replica: hosted.id, reason });
    this.#hosted.delete(hosted.id);
    this.#bySubject.delete(hosted.subject);
    for (const from of hosted.callers)
      hosted.mailbox.send(from, { t: "gone", reason: told } satisfies GoneMessage);
    hosted.callers.clear();
    await hosted.transport.terminate().catch(() => undefined);
    if (hosted.owner)
      this.#mailbox.send(hosted.owner, { t: "node-exit", replica: hosted.id, reason });
    hosted.mailbox.close();
  }

  /** Asks a running replica to stop taking calls and finish those it runs (bounded). */
  async #drain(hosted: Hosted): Promise<void> {
    if (!hosted.ready || hosted.exited) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, LEAVE_DRAIN_MS + 1_000);
      hosted.drained = () => {
        clearTimeout(timer);
        resolve();
      };
      hosted.transport.send({ t: "stop", id: DRAIN_ID, drainMs: LEAVE_DRAIN_MS });
    });
  }

  #fromReplica(hosted: Hosted, message: FromReplica): void {
    if ((message.t === "ok" || message.t === "err") && message.id === DRAIN_ID) {
      hosted.drained?.();
      return;
    }
    if (message.t === "caller") {
      if (message.on) hosted.callers.add(message.from);
      else hosted.callers.delete(message.from);
      return;
    }
    if (message.t === "ready") {
      if (this.#closed) {
        // Started while the node leaves: it took no call yet, and is not drained with the
        // others. Its controller is told it ended, and starts it elsewhere.
        void this.#end(hosted, NODE_LEAVING, "info");
        return;
      }
      hosted.ready = true;
      hosted.socket = message.socket;
      void this.#heartbeat().catch(() => undefined); // the head sees it adoptable at once
    } else if (message.t === "subscribe") hosted.subscriptions.add(message.d);
    else if (message.t === "models") hosted.models = message.models;
    if (hosted.owner) {
      try {
        hosted.mailbox.send(hosted.owner, message);
      } catch (error) {
        // A result that cannot be serialized: its caller gets an error instead.
        if ("id" in message && (message.t === "ok" || message.t === "item"))
          hosted.mailbox.send(hosted.owner, {
            t: "err",
            id: message.id,
            e: {
              name: "TypeError",
              message: `the result could not be sent back: ${(error as Error).message}`,
            },
            user: true,
          } satisfies ReplyMessage);
      }
    }
  }

  /** What the replica's owner sends on its control subject. */
  #onControl(hosted: Hosted, message: ToReplica, from: string): void {
    if (hosted.exited || from !== hosted.owner) return;
    if (message.t === "members") this.#members(hosted, message);
    else if (message.t === "init") {
      const other = codeMismatch(message.code, `node ${this.options.name}`);
      if (other) {
        // Its start fails with why (the head tries another node, or reports it).
        this.#fromReplica(hosted, {
          t: "init-failed",
          e: serializeError(new TributaryError("DEPLOY_FAILED", other)),
        });
        return;
      }
      hosted.transport.send({
        ...message,
        nats: { ...this.options.nats, subject: hosted.subject },
      });
    } else hosted.transport.send(message);
  }

  /**
   * Membership for a replica here: one on this node becomes a direct channel; one on
   * another node it calls on its own NATS connection.
   */
  #members(hosted: Hosted, message: MembersMessage): void {
    const { members, ports } = this.#localMembers(message, hosted.transport.isolation, false);
    hosted.transport.send(members, ports);
  }

  /**
   * Membership as a subscriber of this node can use: a replica on this node becomes a
   * direct channel (a port between threads, else its socket); with `bridge` (for this
   * node's front door), one on another node becomes a socket this node bridges to its
   * subject, else it stays as it is.
   */
  #localMembers(
    message: MembersMessage,
    isolation: "thread" | "process",
    bridge: boolean,
  ): { members: MembersMessage; ports: MessagePort[] } {
    const ports: MessagePort[] = [];
    const add: PeerEndpoint[] = [];
    for (const endpoint of message.add) {
      if (!endpoint.nats) {
        add.push(endpoint);
        continue;
      }
      const local = this.#bySubject.get(endpoint.nats);
      if (local && local.ready) {
        if (isolation === "thread" && local.transport.isolation === "thread") {
          const { port1, port2 } = new MessageChannel();
          local.transport.send({ t: "accept", port: port2 }, [port2]);
          add.push({ replica: endpoint.replica, port: port1 });
          ports.push(port1);
        } else add.push({ replica: endpoint.replica, socket: local.socket });
        continue;
      }
      if (!bridge) {
        add.push(endpoint);
        continue;
      }
      add.push({
        replica: endpoint.replica,
        socket: this.#socketBridge(endpoint.nats, {
          node: endpoint.node ?? "",
          deployment: message.d,
          replica: endpoint.replica,
        }),
      });
    }
    return { members: { ...message, add }, ports };
  }

  /**
   * `--http-port`: a front door (a front-door worker process, as `http.workers` runs) for
   * the applications of the config the head applied, read from KV and followed. Its
   * routers get membership from the head and call the replicas straight over NATS, or
   * directly on this node; while the head is away they keep the membership they have.
   */
  async #startFrontDoor(http: { host: string; port: number }): Promise<void> {
    const config = await this.#stateKv.get("config").catch(() => null);
    const applied =
      config?.operation === "PUT" && config.length > 0
        ? config.json<{ file: string; text: string }>()
        : undefined;
    const { apps, options } = await this.#applications(applied);
    this.#appliedText = applied?.text;
    this.#pool = await startFrontDoorPool(
      apps,
      { ...options, host: http.host, port: http.port },
      1,
      new Metrics(),
    );
    // A head that starts (again) gets this front door's subscriptions.
    this.#hello = NatsMailbox.open(this.nc, subjects.headHello(this.options.cluster));
    this.#hello.onMessage(() => {
      for (const [key, sub] of this.#frontDoorSubs) {
        for (const d of sub.deployments) this.#toHead({ t: "fd-subscribe", app: sub.app, key, d });
        if (sub.queued) this.#toHead({ t: "fd-queued", key, queued: sub.queued });
      }
    });
    // A new config applied by the head: serve its applications.
    const watch = await this.#stateKv.watch({ key: "config" });
    const stop = this.#stopWatch;
    this.#stopWatch = () => {
      watch.stop();
      stop?.();
    };
    void (async () => {
      for await (const entry of watch) {
        if (entry.operation !== "PUT" || entry.length === 0 || this.#closed) continue;
        const next = entry.json<{ file: string; text: string }>();
        if (next.text === this.#appliedText) continue;
        this.#appliedText = next.text;
        this.#serving = this.#serving.then(async () => {
          try {
            const { apps: nextApps } = await this.#applications(next);
            await this.#pool?.serve(nextApps);
          } catch (error) {
            this.#log("error", "the front door could not serve the new config", {
              error: (error as Error).message,
            });
          }
        });
      }
    })();
  }

  /** The applications of a config, each with a controller that asks the head for membership. */
  async #applications(
    applied: { file: string; text: string } | undefined,
  ): Promise<{ apps: PoolApplication[]; options: ReturnType<typeof serverOptions> }> {
    if (!applied) return { apps: [], options: {} };
    const { config, document } = parseConfig(applied.text, applied.file);
    const baseDir = dirname(resolve(applied.file));
    const apps: PoolApplication[] = [];
    for (const [index, entry] of config.applications.entries()) {
      const { app } = await configureApplication(entry, index, document, applied.file, {
        version: moduleVersion(entry.importPath, baseDir),
      });
      apps.push({ app, controller: this.#frontDoorController(app) });
    }
    return { apps, options: serverOptions(config) };
  }

  #frontDoorController(app: Application): PoolController {
    return {
      deploymentNames: app.graph.deployments.map((d) => d.name),
      subscribe: (subscriber, d) => {
        let key = this.#frontDoorKeys.get(subscriber);
        if (key === undefined) {
          key = ++this.#nextFrontDoorKey;
          this.#frontDoorKeys.set(subscriber, key);
          this.#frontDoorSubs.set(key, { subscriber, app: app.name, deployments: new Set() });
        }
        this.#frontDoorSubs.get(key)!.deployments.add(d);
        this.#toHead({ t: "fd-subscribe", app: app.name, key, d });
      },
      unsubscribe: (subscriber) => {
        const key = this.#frontDoorKeys.get(subscriber);
        if (key === undefined) return;
        this.#frontDoorKeys.delete(subscriber);
        this.#frontDoorSubs.delete(key);
        this.#toHead({ t: "fd-unsubscribe", key });
      },
      reportQueued: (subscriber, queued) => {
        const key = this.#frontDoorKeys.get(subscriber);
        const sub = key === undefined ? undefined : this.#frontDoorSubs.get(key);
        if (key === undefined || !sub) return;
        sub.queued = queued;
        this.#toHead({ t: "fd-queued", key, queued });
      },
    };
  }

  #toHead(message: ToHead): void {
    try {
      this.#mailbox.send(subjects.head(this.options.cluster), message);
    } catch {
      // NATS is out of reach: a head that starts says hello, and this is sent again
    }
  }

  #frontDoorMembers(message: FrontDoorMembers): void {
    const sub = this.#frontDoorSubs.get(message.key);
    if (!sub) return;
    const { members } = this.#localMembers(message.m, "process", true);
    sub.subscriber.tell(members);
  }

  /**
   * Links a local channel (a port or a socket connection of a replica or front door here)
   * to the replica at `subject` on node `node`, through a NATS inbox of its own. It keeps
   * the ids of the calls in flight: when the target's node is lost, each fails with a
   * ReplicaDiedError that says so, before the local channel closes.
   */
  #link(
    subject: string,
    target: { readonly node: string; readonly deployment: string; readonly replica: string },
    toLocal: (data: ReplyMessage | ReplyMessage[]) => void,
    closeLocal: () => void,
  ): { fromLocal: (data: CallMessage | CallMessage[]) => void; bridge: Bridge } {
    const mailbox = NatsMailbox.open<
      ReplyMessage | ReplyMessage[] | GoneMessage | ResetMessage,
      CallMessage | CallMessage[] | { t: "bye" }
    >(this.nc);
    // The calls sent on and not answered yet (not a Set: see CallTable).
    const pending = new CallTable<true>();
    let closed = false;
    const failPending = (reason: string, lost = false): void => {
      if (pending.size === 0) return;
      const e = serializeError(
        new ReplicaDiedError(target.deployment, target.replica, reason, lost),
      );
      toLocal(pending.ids().map((id) => ({ t: "err", id, e, user: false }) as const));
      pending.clear();
    };
    const bridge: Bridge = {
      node: target.node,
      reset: (reason) => {
        if (closed) return;
        // The target may still run them: it is told to stop (it ignores an id it never saw).
        for (const id of pending.ids()) {
          try {
            mailbox.send(subject, { t: "cancel", id, reason: "abort" });
          } catch {
            // the target's own reset cancels them
          }
        }
        failPending(reason, true);
        // A `free` it sent may be lost too: the local side counts the slot free again.
        toLocal({ t: "free" });
      },
      close: (reason?: string) => {
        if (closed) return;
        closed = true;
        this.#bridges.delete(bridge);
        clearTimeout(away);
        if (reason !== undefined) failPending(reason);
        pending.clear();
        try {
          mailbox.send(subject, { t: "bye" });
        } catch {
          // the connection is closed: the target's node drops the channel with it
        }
        mailbox.close();
        closeLocal();
      },
    };
    this.#bridges.add(bridge);
    // NATS had no subscriber for the target (it stopped, or its connection is away): what
    // is pending fails, and for AWAY_MS (or until the target speaks) calls are answered
    // busy unsent, so the local router's queue does not drain into it.
    let away: NodeJS.Timeout | undefined;
    const back = (): void => {
      if (!away) return;
      clearTimeout(away);
      away = undefined;
      if (!closed) toLocal({ t: "free" });
    };
    // After AWAY_MS a probe, not a user's call, asks NATS again (see ReplicaConnection):
    // another "no subscriber" within PROBE_WAIT_MS keeps the target away.
    const probe = (): void => {
      if (closed) return;
      try {
        mailbox.send(subject, { t: "credit", id: PROBE_ID, n: 0 });
      } catch {
        // the connection is away: the next "no subscriber" or reset decides
      }
      away = setTimeout(back, PROBE_WAIT_MS);
      away.unref();
    };
    mailbox.onNoResponders(() => {
      if (closed) return;
      failPending(noSubscriber(target.node), true);
      clearTimeout(away);
      away = setTimeout(probe, AWAY_MS);
      away.unref();
    });
    mailbox.onMessage((data) => {
      back();
      if (!Array.isArray(data) && data.t === "gone") {
        bridge.close(data.reason);
        return;
      }
      if (!Array.isArray(data) && data.t === "reset") {
        bridge.reset(data.reason);
        return;
      }
      for (const m of Array.isArray(data) ? data : [data])
        if (m.t === "ok" || m.t === "err" || m.t === "end" || m.t === "busy") pending.delete(m.id);
      toLocal(data);
    });
    const fromLocal = (data: CallMessage | CallMessage[]): void => {
      const list = Array.isArray(data) ? data : [data];
      if (away) {
        const busy = list.flatMap((m) =>
          m.t === "call" ? [{ t: "busy", id: m.id } as const] : [],
        );
        if (busy.length > 0) toLocal(busy);
        return;
      }
      try {
        mailbox.send(subject, data);
      } catch (error) {
        // An argument that cannot be serialized: the calls fail at once.
        toLocal(
          list.flatMap((m) =>
            m.t === "call"
              ? [
                  {
                    t: "err",
                    id: m.id,
                    e: serializeError(
                      unsendableArguments(target.deployment, m.m ?? "call", m.a, error as Error),
                    ),
                    user: false,
                  } as const,
                ]
              : [],
          ),
        );
        return;
      }
      for (const m of list) {
        if (m.t === "call") pending.set(m.id, true);
        else if (m.t === "cancel") pending.delete(m.id);
      }
    };
    return { fromLocal, bridge };
  }

  /** A Unix socket whose connections this node links to the replica at `subject`. */
  #socketBridge(
    subject: string,
    target: { readonly node: string; readonly deployment: string; readonly replica: string },
  ): string {
    const path = join(tmpdir(), `tributary-${process.pid}-b${++this.#bridgeNumber}.sock`);
    rmSync(path, { force: true });
    const links = new Set<Bridge>();
    const server: Server = createServer((socket) => {
      // Replies come only after calls, so `channel` exists before the link uses it.
      const link = this.#link(
        subject,
        target,
        (data) => channel.send(data),
        () => socket.end(),
      );
      const channel = new SocketChannel<CallMessage, ReplyMessage>(socket, (data) =>
        link.fromLocal(data),
      );
      links.add(link.bridge);
      const { bridge } = link;
      channel.onClose(() => {
        links.delete(bridge);
        bridge.close();
      });
    });
    server.listen(path);
    server.unref();
    // The listener goes with the target's node; each connection's link closes on its own.
    const listener: Bridge = {
      node: target.node,
      reset: (reason) => {
        for (const link of links) link.reset(reason);
      },
      close: (reason?: string) => {
        this.#bridges.delete(listener);
        for (const link of [...links]) link.close(reason);
        server.close();
        bridgeFiles.delete(path);
        rmSync(path, { force: true });
      },
    };
    this.#bridges.add(listener);
    bridgeFiles.add(path);
    removeBridgeFilesOnExit();
    return path;
  }
}

/** The socket files of this process's bridges, removed when it exits. */
const bridgeFiles = new Set<string>();
let removingOnExit = false;

/**
 * One exit listener for every bridge's file (one each made Node warn of a leak, "11 exit
 * listeners", on a node with more than ten bridges open at once).
 */
function removeBridgeFilesOnExit(): void {
  if (removingOnExit) return;
  removingOnExit = true;
  process.once("exit", () => {
    for (const file of bridgeFiles) rmSync(file, { force: true });
  });
}

/** A default node name: this machine's host name, as NATS subjects accept it. */
export const defaultNodeName = (): string =>
  hostname()
    .replace(/[^A-Za-z0-9_-]/g, "-")
    .slice(0, 64) || "node";
