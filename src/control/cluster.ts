/**
 * @internal The head's view of a cluster on NATS: the nodes (from their heartbeats in
 * JetStream KV), what each has free, where each replica runs (kept in KV, so that a head
 * that restarts finds it), and a {@link TransportFactory} that places a replica on a node
 * whose free resources fit, or adopts one that runs from before a restart. A node whose
 * heartbeat stops for `nodeTimeout` is DEAD: its replicas exit (their calls in flight fail
 * with ReplicaDiedError) and the controllers start replacements elsewhere. A node that
 * leaves is LEAVING while it drains (it heartbeats, and nothing new is placed on it).
 */
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { RemoteReplicaTransport } from "../data/transport/remote.js";
import { NatsMailbox } from "../data/transport/nats-link.js";
import type { Controller, Subscriber } from "./controller.js";
import {
  NoPlacementError,
  type Placement,
  type ReplicaTransport,
  type TransportFactory,
} from "../data/transport/transport.js";
import { requirePackages } from "../optional-package.js";
import { TributaryError } from "../errors.js";
import {
  NODE_LEAVING,
  subjects,
  type NodeRecord,
  type NodeResources,
  type PlacementRecord,
  type FrontDoorMembers,
  type HeadHello,
  type ToHead,
} from "../wire/cluster.js";
import { choose, freeResources, type Need } from "./placement.js";

/**
 * `LEAVING`: the node has begun to leave (`tributary node` stopped with SIGTERM or SIGINT):
 * it heartbeats while it drains what it runs, and nothing new is placed on it.
 */
export type NodeState = "ALIVE" | "LEAVING" | "DEAD";

/** A node as `tributary status` lists it. */
export interface NodeStatusInfo {
  readonly name: string;
  readonly state: NodeState;
  readonly resources: NodeResources;
  readonly free: NodeResources;
  /** When the head last heard its heartbeat (ms since the epoch, the head's clock). */
  readonly lastHeartbeat: number;
  readonly replicas: readonly string[];
  readonly httpUrl?: string | undefined;
  readonly pid: number;
}

export interface ClusterSettings {
  /** The cluster's name: the prefix of its subjects and buckets (default `tributary`). */
  readonly name: string;
  /** A node that misses heartbeats this long is DEAD. */
  readonly nodeTimeoutMs: number;
}

interface NodeEntry {
  record: NodeRecord;
  state: NodeState;
  lastSeen: number;
  readonly transports: Set<RemoteReplicaTransport>;
}

/** A node front door's subscriber, as the head's controllers see it. */
interface FrontDoorSubscription {
  readonly from: string;
  readonly key: number;
  readonly app: string;
  readonly deployments: Set<string>;
  readonly subscriber: Subscriber;
  controller: Controller | undefined;
}

interface Placed {
  readonly record: PlacementRecord;
  readonly transport: RemoteReplicaTransport;
}

/** KV buckets of a cluster, created when missing. */
export async function openBuckets(
  nc: NatsConnection,
  cluster: string,
  nodeTimeoutMs: number,
): Promise<{ nodes: KV; state: KV }> {
  requirePackages("The cluster", ["@nats-io/kv", "@nats-io/jetstream"]);
  const { Kvm } = await import("@nats-io/kv");
  const kvm = new Kvm(nc);
  // A node's key expires a while after its last heartbeat (the bucket's TTL): a node that
  // stopped is forgotten, though the head judges DEAD by its own clock much sooner.
  // Opened as they are when they exist (the first head or node made them; a second create
  // with other settings would be refused).
  const bucket = async (name: string, options: { history: number; ttl?: number }): Promise<KV> => {
    try {
      const kv = await kvm.open(name);
      await kv.status(); // open() only binds: this is what fails when the bucket is missing
      return kv;
    } catch {
      return kvm.create(name, options);
    }
  };
  const nodes = await bucket(subjects.nodesBucket(cluster), {
    history: 1,
    ttl: Math.max(nodeTimeoutMs * 6, 60_000),
  });
  const state = await bucket(subjects.stateBucket(cluster), { history: 1 });
  return { nodes, state };
}

/** The key of the head's lease in the state bucket: one head per cluster. */
const HEAD_KEY = "head";

/** Who holds a cluster's head lease (renewed every `renewMs` while it runs). */
interface HeadLease {
  readonly id: string;
  readonly pid: number;
  readonly host: string;
  readonly startedAt: number;
  /** How often its head renews it (each head's own nodeTimeout / 5). */
  readonly renewMs: number;
}

const renewEvery = (nodeTimeoutMs: number): number => Math.max(50, nodeTimeoutMs / 5);

/** A KV write refused because the key moved on (another writer won): not a NATS failure. */
const lostRace = (error: unknown): boolean =>
  /wrong last sequence|key exists/i.test((error as Error).message ?? "");

/**
 * Takes the cluster's head lease: at once when no head holds it, after the lease has gone
 * unrenewed for `nodeTimeoutMs` (or five of its holder's renewal periods, if longer) when
 * the head that held it is gone (killed: it left its lease), and never while another head
 * renews it (a second head would take over the first one's replicas). Judged by the
 * lease's revision changing, not by clocks. NATS failures are retried within the wait.
 * Resolves with the revision this head's renewals must follow.
 */
async function acquireLease(
  kv: KV,
  cluster: string,
  lease: HeadLease,
  nodeTimeoutMs: number,
): Promise<number> {
  const value = JSON.stringify(lease);
  const pause = (): Promise<void> => sleep(Math.min(200, renewEvery(nodeTimeoutMs) / 2));
  let seen: { revision: number; since: number } | undefined;
  let failures = 0;
  const failed = async (error: unknown): Promise<void> => {
    // NATS away: tried again, for about as long as a lease takes to go stale.
    if (++failures * 200 > Math.max(nodeTimeoutMs, 5_000)) throw error;
    await pause();
  };
  for (;;) {
    let entry: Awaited<ReturnType<KV["get"]>>;
    try {
      entry = await kv.get(HEAD_KEY);
    } catch (error) {
      await failed(error);
      continue;
    }
    const holder = entry?.operation === "PUT" ? entry.json<HeadLease>() : undefined;
    // A write of ours that timed out but was applied.
    if (entry && holder?.id === lease.id) return entry.revision;
    if (holder && seen && entry!.revision !== seen.revision) {
      throw new TributaryError(
        "INVALID_CONFIG",
        `A head already runs cluster "${cluster}" (pid ${holder.pid} on ${holder.host}, started ` +
          `${new Date(holder.startedAt).toISOString()}): a cluster has one head. Stop that one ` +
          `first, or start this one with another --cluster-name.`,
      );
    }
    const staleAfter = Math.max(nodeTimeoutMs, 5 * (holder?.renewMs ?? 0));
    const free = !holder || (seen !== undefined && Date.now() - seen.since > staleAfter);
    if (free) {
      // None, deleted by a head that stopped, or not renewed in time: its head is gone.
      try {
        return entry
          ? await kv.update(HEAD_KEY, value, entry.revision)
          : await kv.create(HEAD_KEY, value);
      } catch (error) {
        if (!lostRace(error)) await failed(error);
        seen = undefined; // another head wrote first: watch that one
        continue;
      }
    }
    seen ??= { revision: entry!.revision, since: Date.now() };
    await pause();
  }
}

export class ClusterHead {
  readonly settings: ClusterSettings;
  readonly nc: NatsConnection;
  readonly #nodesKv: KV;
  readonly #stateKv: KV;
  readonly #nodes = new Map<string, NodeEntry>();
  readonly #placed = new Map<RemoteReplicaTransport, Placed>();
  /** Replicas that ran under a previous head, not yet adopted. */
  #orphans: PlacementRecord[] = [];
  readonly #capacity = new Set<() => void>();
  #timer: NodeJS.Timeout | undefined;
  #leaseTimer: NodeJS.Timeout | undefined;
  #renewing: Promise<void> | undefined;
  /** When this head last renewed its lease (its own clock). */
  #renewedAt = 0;
  /** This head went unrenewed past half of nodeTimeout (see `#checkHeartbeats`). */
  #blind = false;
  #lease: { readonly id: string; readonly value: string; revision: number } | undefined;
  readonly #onLost = new Set<(reason: string) => void>();
  #stopWatch: (() => void) | undefined;
  #closed = false;
  /**
   * Each application's controllers, the newest last: a code roll runs a second one beside
   * the first until one of them closes.
   */
  readonly #controllers = new Map<string, Controller[]>();
  /** The controller each application's front doors on nodes follow: the one that serves. */
  readonly #serving = new Map<string, Controller>();
  readonly #frontDoors = new Map<string, FrontDoorSubscription>();
  readonly #headMailbox: NatsMailbox<ToHead, FrontDoorMembers | HeadHello>;

  private constructor(
    nc: NatsConnection,
    buckets: { nodes: KV; state: KV },
    settings: ClusterSettings,
  ) {
    this.nc = nc;
    this.settings = settings;
    this.#nodesKv = buckets.nodes;
    this.#stateKv = buckets.state;
    this.#headMailbox = NatsMailbox.open(nc, subjects.head(settings.name));
    this.#headMailbox.onMessage((message, from) => this.#onFrontDoor(message, from));
  }

  /**
   * `controller` runs application `app` from now on. Front doors on nodes get its
   * membership: at once when it is the application's first, and in a code roll once every
   * deployment of the new version runs a replica (before, calls at a node's door queued on
   * a version with none). The function returned unregisters it, at the start of its
   * server's close: if the front doors followed it, they follow the newest controller left
   * (after a roll that failed or was refused, the old one, which serves on).
   */
  register(app: string, controller: Controller): () => void {
    const controllers = this.#controllers.get(app) ?? [];
    this.#controllers.set(app, controllers);
    controllers.push(controller);
    let stopWaiting: (() => void) | undefined;
    if (!this.#serving.has(app) || controller.ready()) this.#serve(app, controller);
    else {
      const serveOnceReady = (): void => {
        if (!controller.ready()) return;
        stopWaiting?.();
        if (controllers.at(-1) === controller) this.#serve(app, controller);
      };
      stopWaiting = controller.onChange(serveOnceReady);
    }
    return () => {
      stopWaiting?.();
      const at = controllers.indexOf(controller);
      if (at < 0) return;
      controllers.splice(at, 1);
      if (controllers.length === 0) this.#controllers.delete(app);
      if (this.#serving.get(app) !== controller) return;
      // The application's last one keeps its front doors while it closes (they hear from it
      // that it closed); else they follow the newest one left at once.
      const next = controllers.at(-1);
      if (next) this.#serve(app, next);
      else this.#serving.delete(app);
    };
  }

  /** The front doors of `app` on nodes follow `controller` from now on. */
  #serve(app: string, controller: Controller): void {
    this.#serving.set(app, controller);
    for (const fd of this.#frontDoors.values()) {
      if (fd.app !== app || fd.controller === controller) continue;
      fd.controller?.unsubscribe(fd.subscriber);
      fd.controller = controller;
      for (const d of fd.deployments) controller.subscribe(fd.subscriber, d);
    }
  }

  #onFrontDoor(message: ToHead, from: string): void {
    if (message.t === "fd-queued") {
      const fd = this.#frontDoors.get(`${from} ${message.key}`);
      if (fd) fd.controller?.reportQueued(fd.subscriber, message.queued);
      return;
    }
    if (message.t === "fd-unsubscribe") {
      const id = `${from} ${message.key}`;
      const fd = this.#frontDoors.get(id);
      if (fd) {
        fd.controller?.unsubscribe(fd.subscriber);
        this.#frontDoors.delete(id);
      }
      return;
    }
    const id = `${from} ${message.key}`;
    let fd = this.#frontDoors.get(id);
    if (!fd) {
      const key = message.key;
      fd = {
        from,
        key,
        app: message.app,
        deployments: new Set(),
        controller: undefined,
        subscriber: {
          isolation: "process",
          remote: true,
          tell: (m) => {
            try {
              this.#headMailbox.send(from, { t: "fd-members", key, m });
            } catch {
              // the connection closed: the head is stopping
            }
          },
        },
      };
      this.#frontDoors.set(id, fd);
    }
    fd.deployments.add(message.d);
    const controller = this.#serving.get(message.app);
    if (controller) {
      fd.controller = controller;
      controller.subscribe(fd.subscriber, message.d);
    }
  }

  /**
   * Joins the cluster as its head: reads the nodes and the replicas placed before (by a
   * head that ran earlier), then follows the heartbeats.
   */
  static async open(nc: NatsConnection, settings: ClusterSettings): Promise<ClusterHead> {
    const buckets = await openBuckets(nc, settings.name, settings.nodeTimeoutMs);
    // Before anything a head does: a second head would adopt the first one's replicas.
    const lease: HeadLease = {
      id: randomUUID(),
      pid: process.pid,
      host: hostname(),
      startedAt: Date.now(),
      renewMs: renewEvery(settings.nodeTimeoutMs),
    };
    const revision = await acquireLease(
      buckets.state,
      settings.name,
      lease,
      settings.nodeTimeoutMs,
    );
    const head = new ClusterHead(nc, buckets, settings);
    head.#lease = { id: lease.id, value: JSON.stringify(lease), revision };
    head.#renewedAt = Date.now();
    head.#leaseTimer = setInterval(() => void head.#renewLease(), lease.renewMs);
    head.#leaseTimer.unref();
    try {
      await buckets.state.put(
        "settings",
        JSON.stringify({ nodeTimeoutMs: settings.nodeTimeoutMs }),
      );
      await head.#watchNodes();
      await head.#readPlacements();
    } catch (error) {
      // Not left holding the lease (and renewing it) with no head to close.
      await head.close();
      throw error;
    }
    head.#timer = setInterval(
      () => head.#checkHeartbeats(),
      Math.min(250, settings.nodeTimeoutMs / 4),
    );
    head.#timer.unref();
    // Front doors on nodes subscribe again (to this head's controllers, once they run).
    head.#headMailbox.send(subjects.headHello(settings.name), { t: "head-hello" });
    return head;
  }

  /** The config the last head applied (`tributary start --cluster` restores it). */
  async appliedConfig(): Promise<{ file: string; text: string } | undefined> {
    const entry = await this.#stateKv.get("config");
    if (!entry || entry.operation !== "PUT" || entry.length === 0) return undefined;
    return entry.json<{ file: string; text: string }>();
  }

  async saveConfig(applied: { file: string; text: string }): Promise<void> {
    await this.#stateKv.put("config", JSON.stringify(applied));
  }

  /** Runs `listener` when capacity may have grown (a node joined, or replicas left one). */
  onCapacity(listener: () => void): () => void {
    this.#capacity.add(listener);
    return () => this.#capacity.delete(listener);
  }

  /** Places replicas on nodes (or adopts running ones); see the module comment. */
  readonly transports: TransportFactory = (isolation, name, limits = {}, placement) => {
    if (this.#closed) throw new NoPlacementError("the head is shutting down");
    if (!placement) throw new Error("a cluster places replicas by their deployment's resources");
    const adopted = this.#adopt(placement);
    if (adopted) return adopted;
    const result = choose(
      this.#candidates(placement.deployment, placement.app),
      placement.resources,
    );
    if ("reason" in result) throw new NoPlacementError(result.reason);
    const node = this.#nodes.get(result.node)!;
    const token = randomUUID().replaceAll("-", "");
    const record: PlacementRecord = {
      replica: name,
      app: placement.app,
      deployment: placement.deployment,
      node: result.node,
      subject: subjects.replica(this.settings.name, token),
      isolation,
      key: placement.key,
      resources: placement.resources,
    };
    const transport = new RemoteReplicaTransport(this.nc, {
      node: result.node,
      nodeAddress: node.record.address,
      replica: name,
      subject: record.subject,
      isolation,
      memoryBytes: limits.memoryBytes,
    });
    this.#track(node, record, transport);
    return transport;
  };

  /** Every node, for `tributary status`. */
  nodes(): NodeStatusInfo[] {
    return [...this.#nodes.values()]
      .map((n) => ({
        name: n.record.name,
        state: n.state,
        resources: n.record.resources,
        free: this.#free(n),
        lastHeartbeat: n.lastSeen,
        replicas: [...n.transports].map((t) => t.target.replica),
        httpUrl: n.record.httpUrl,
        pid: n.record.pid,
      }))
      .sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  /**
   * Ends the replicas a previous head left that no deployment adopted (their application or
   * options are gone): called once the restored config has been applied.
   */
  async dropOrphans(): Promise<void> {
    const orphans = this.#orphans;
    this.#orphans = [];
    for (const record of orphans) {
      const node = this.#notDead(record.node);
      if (node) {
        const transport = new RemoteReplicaTransport(
          this.nc,
          { ...record, nodeAddress: node.record.address },
          { replica: record.replica },
        );
        await transport.terminate();
      }
      await this.#stateKv.delete(placementKey(record)).catch(() => undefined);
    }
  }

  /**
   * Runs `listener` if another head took the lease (this one was cut off or frozen past
   * nodeTimeout, and a new head took over its replicas): this head must stop.
   */
  onLost(listener: (reason: string) => void): void {
    this.#onLost.add(listener);
  }

  #renewLease(): Promise<void> {
    this.#renewing ??= this.#renew().finally(() => (this.#renewing = undefined));
    return this.#renewing;
  }

  async #renew(): Promise<void> {
    const lease = this.#lease;
    if (!lease || this.#closed) return;
    try {
      lease.revision = await this.#stateKv.update(HEAD_KEY, lease.value, lease.revision);
      this.#renewedAt = Date.now();
    } catch {
      // NATS away (tried again next time), or another head took the lease.
      const entry = await this.#stateKv.get(HEAD_KEY).catch(() => undefined);
      if (!entry || this.#closed) return;
      const holder = entry.operation === "PUT" ? entry.json<HeadLease>() : undefined;
      if (holder?.id === lease.id) {
        lease.revision = entry.revision;
        this.#renewedAt = Date.now();
        return;
      }
      this.#lease = undefined;
      clearInterval(this.#leaseTimer);
      const reason = holder
        ? `another head (pid ${holder.pid} on ${holder.host}) took over cluster "${this.settings.name}": this head was cut off past nodeTimeout`
        : `this head's lease on cluster "${this.settings.name}" was removed`;
      for (const listener of this.#onLost) listener(reason);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    clearInterval(this.#leaseTimer);
    // A head that stops gives its lease back (after a renewal in flight, whose revision the
    // delete must name): the next one starts at once.
    await this.#renewing;
    const lease = this.#lease;
    this.#lease = undefined;
    if (lease)
      await this.#stateKv.delete(HEAD_KEY, { previousSeq: lease.revision }).catch(() => undefined);
    this.#stopWatch?.();
    this.#headMailbox.close();
  }

  /** A running replica of a previous head's that this placement can take over. */
  #adopt(placement: Placement): ReplicaTransport | undefined {
    const index = this.#orphans.findIndex(
      (o) =>
        o.app === placement.app &&
        o.deployment === placement.deployment &&
        o.key === placement.key &&
        // A LEAVING node's too: not adopted, they would be ended at once, mid-drain.
        this.#notDead(o.node)?.record.replicas.includes(o.replica) === true,
    );
    if (index < 0) return undefined;
    const [record] = this.#orphans.splice(index, 1) as [PlacementRecord];
    const node = this.#nodes.get(record.node)!;
    const transport = new RemoteReplicaTransport(
      this.nc,
      { ...record, nodeAddress: node.record.address },
      { replica: record.replica },
    );
    this.#track(node, record, transport);
    return transport;
  }

  #track(node: NodeEntry, record: PlacementRecord, transport: RemoteReplicaTransport): void {
    node.transports.add(transport);
    this.#placed.set(transport, { record, transport });
    void this.#stateKv.put(placementKey(record), JSON.stringify(record)).catch(() => undefined);
    transport.onExit((reason) => {
      // The node refused its start (or ended it) because it leaves: the head may hear this
      // before the heartbeat that says so. The node is LEAVING from now on, and every replica
      // placed there, this one included, is replaced by its controller, not counted as a
      // start that failed (before, it was, and the same node was tried again and again).
      if (reason === NODE_LEAVING && !this.#closed && node.state === "ALIVE") this.#leaves(node);
      node.transports.delete(transport);
      this.#placed.delete(transport);
      void this.#stateKv.delete(placementKey(record)).catch(() => undefined);
      // Its resources are free again: a PENDING deployment may fit now.
      // After its controller has heard why it ended (a replica that failed to start counts
      // first: the count decides whether a start has run out of attempts).
      if (!this.#closed) setImmediate(() => this.#capacityChanged());
    });
  }

  /** The node named so, unless it is unknown or DEAD. */
  #notDead(name: string): NodeEntry | undefined {
    const node = this.#nodes.get(name);
    return node?.state === "DEAD" ? undefined : node;
  }

  #free(node: NodeEntry): NodeResources {
    const used: Need[] = [];
    for (const t of node.transports) used.push(this.#placed.get(t)!.record.resources);
    // Orphans waiting for adoption keep their resources.
    for (const o of this.#orphans) if (o.node === node.record.name) used.push(o.resources);
    return freeResources(node.record.resources, used);
  }

  #candidates(deployment: string, app: string) {
    return [...this.#nodes.values()]
      .filter((n) => n.state === "ALIVE")
      .map((n) => ({
        name: n.record.name,
        free: this.#free(n),
        sameDeployment: [...n.transports].filter((t) => {
          const r = this.#placed.get(t)!.record;
          return r.deployment === deployment && r.app === app;
        }).length,
      }));
  }

  #capacityChanged(): void {
    for (const listener of [...this.#capacity]) listener();
  }

  async #watchNodes(): Promise<void> {
    const watch = await this.#nodesKv.watch();
    this.#stopWatch = () => watch.stop();
    let initial = true;
    const ready = new Promise<void>((resolve) => {
      void (async () => {
        // The watch first delivers every key's last value; an empty bucket says so at once.
        const timer = setTimeout(resolve, 500);
        for await (const entry of watch) {
          if (entry.operation === "PUT") this.#heartbeat(entry.json<NodeRecord>(), initial);
          else this.#lost(entry.key, "it left the cluster");
          if (initial && entry.delta === 0) {
            initial = false;
            clearTimeout(timer);
            resolve();
          }
        }
      })();
    });
    await ready;
  }

  #heartbeat(record: NodeRecord, initial = false): void {
    const existing = this.#nodes.get(record.name);
    if (initial && Date.now() - record.heartbeat > this.settings.nodeTimeoutMs) {
      // Left by a node that stopped before this head started (its key outlives it a while).
      this.#nodes.set(record.name, {
        record,
        state: "DEAD",
        lastSeen: record.heartbeat,
        transports: new Set(),
      });
      return;
    }
    if (existing && existing.state !== "DEAD") {
      if (existing.record.pid === record.pid && existing.record.startedAt === record.startedAt) {
        existing.record = record;
        existing.lastSeen = Date.now();
        // A node that leaves stays LEAVING until its key is deleted (or it stops heartbeating).
        if (record.leaving) this.#leaves(existing);
        return;
      }
      // Another process under the name (the last one was killed, perhaps mid-leave, and a new
      // one joined before its nodeTimeout ran out): the old one's replicas are gone.
      this.#lost(record.name, "a new node process joined under its name");
    }
    // A new node, or one that was DEAD and came back (its old replicas are gone: a node
    // cut off from NATS ends its replicas itself before the head gives up on it).
    this.#nodes.set(record.name, {
      record,
      state: record.leaving ? "LEAVING" : "ALIVE",
      lastSeen: Date.now(),
      transports: existing?.transports ?? new Set(),
    });
    if (!this.#closed) this.#capacityChanged();
  }

  /** `node` is LEAVING (it said so, or refused a start saying so). */
  #leaves(node: NodeEntry): void {
    node.state = "LEAVING";
    this.#replaceLeaving(node);
  }

  /**
   * Each controller starts a replacement for its replicas on a node that leaves, while they
   * drain there (as Ray Serve does for a draining node): capacity is back before they end.
   * At every heartbeat of the node: a replica adopted after a head's restart is RUNNING only
   * once its controller has started; one already replaced is left as it is.
   */
  #replaceLeaving(node: NodeEntry): void {
    if (this.#closed) return;
    for (const transport of node.transports) {
      const placed = this.#placed.get(transport);
      if (!placed) continue;
      // In a code roll, each controller knows only its own replicas' transports.
      for (const controller of this.#controllers.get(placed.record.app) ?? [])
        controller.replicaLeaving(transport);
    }
  }

  #checkHeartbeats(): void {
    const now = Date.now();
    if (now - this.#renewedAt > this.settings.nodeTimeoutMs / 2) {
      // This head was frozen or cut off: another may hold its lease now, and what it heard
      // of the nodes is stale. It judges no node until its lease is renewed (or it learns
      // it lost it, and stops), and then gives every node a fresh nodeTimeout.
      this.#blind = true;
      void this.#renewLease();
      return;
    }
    if (this.#blind) {
      this.#blind = false;
      for (const node of this.#nodes.values()) node.lastSeen = Math.max(node.lastSeen, now);
      return;
    }
    for (const node of this.#nodes.values())
      if (node.state !== "DEAD" && now - node.lastSeen > this.settings.nodeTimeoutMs)
        this.#lost(
          node.record.name,
          `no heartbeat for ${now - node.lastSeen} ms; nodeTimeout ${this.settings.nodeTimeoutMs} ms`,
        );
  }

  /** The node is DEAD: its replicas exit now, and the controllers replace them. */
  #lost(name: string, why: string): void {
    const node = this.#nodes.get(name);
    if (!node || node.state === "DEAD") return;
    node.state = "DEAD";
    for (const transport of [...node.transports])
      transport.lost(`is gone: its node ${name} is DEAD (${why})`);
    this.#orphans = this.#orphans.filter((o) => o.node !== name);
    // Its front door is gone with it.
    for (const [id, fd] of this.#frontDoors)
      if (fd.from === node.record.address) {
        fd.controller?.unsubscribe(fd.subscriber);
        this.#frontDoors.delete(id);
      }
  }

  async #readPlacements(): Promise<void> {
    const keys = await this.#stateKv.keys("replica.*");
    const records: PlacementRecord[] = [];
    for await (const key of keys) {
      const entry = await this.#stateKv.get(key);
      if (entry?.operation === "PUT") records.push(entry.json<PlacementRecord>());
    }
    this.#orphans = records;
  }
}

const placementKey = (record: PlacementRecord): string =>
  `replica.${record.subject.slice(record.subject.lastIndexOf(".") + 1)}`;
