/**
 * @internal How routers learn which replicas run (Ray Serve's long poll): the control
 * plane publishes each deployment's running replicas to this thread's router and to every
 * subscriber (a replica that calls the deployment, or a front-door worker). A subscriber
 * in this process's threads gets a `MessageChannel` port per target thread replica; any
 * other pair gets the target's Unix socket path. The control plane hands out channels and
 * is on no call's path.
 */
import { MessageChannel, type MessagePort } from "node:worker_threads";
import { serializeError } from "../wire/error-codec.js";
import type { MembersMessage, PeerEndpoint } from "../wire/protocol.js";
import type { DeploymentRuntime } from "./deployment-runtime.js";
import type { ReplicaClient } from "./replica-client.js";

/** Who gets a deployment's membership: a replica that calls it, or a front-door worker. */
export interface Subscriber {
  /** A thread of this process gets `MessageChannel` ports; a process gets socket paths. */
  readonly isolation: "thread" | "process";
  /**
   * A replica on a cluster node: it gets each target's NATS subject, which it calls on its
   * own connection (its node hands it a direct channel to a target on the same node).
   */
  readonly remote?: unknown;
  tell(message: MembersMessage, transfer?: readonly MessagePort[]): void;
}

/** Whether a `MessageChannel` can join the two (both are threads of this process). */
const bothThreads = (a: Subscriber, b: ReplicaClient): boolean =>
  a.isolation === "thread" &&
  b.transport.isolation === "thread" &&
  !a.remote &&
  !b.transport.remote;

export class Membership {
  readonly #deployments: ReadonlyMap<string, DeploymentRuntime>;
  readonly #notFound: (name: string) => Error;
  readonly #current: (subscriber: Subscriber) => boolean;
  /** For each subscriber and deployment, the replicas it has a channel to. */
  readonly #peers = new Map<Subscriber, Map<string, Set<string>>>();
  /** False once a shutdown has drained: from then on nothing is routed. */
  #routing = true;

  /**
   * `notFound` makes the error for a deployment the application lacks; `current` tells
   * whether a subscriber still runs.
   */
  constructor(
    deployments: ReadonlyMap<string, DeploymentRuntime>,
    notFound: (name: string) => Error,
    current: (subscriber: Subscriber) => boolean,
  ) {
    this.#deployments = deployments;
    this.#notFound = notFound;
    this.#current = current;
  }

  /** Routes nothing from now on (the shutdown has drained); publish to say so. */
  stopRouting(): void {
    this.#routing = false;
  }

  /**
   * Publishes the running replicas of `d` (Ray Serve's long poll): to this thread's router,
   * and to every replica that calls `d`, each new one with a port of its own. `gone`: why
   * replicas ended, by id (see {@link MembersMessage.gone}).
   */
  publish(d: DeploymentRuntime, gone?: Readonly<Record<string, string>>): void {
    const running = this.#routable(d);
    d.router.setReplicas(running.map((r) => r.connection));
    d.router.setUnavailable(running.length === 0 ? d.unavailable : undefined);
    for (const subscriber of d.subscribers) this.#sendMembers(subscriber, d, gone);
  }

  /** The replicas routers may send to: the running ones, none once the server closes. */
  #routable(d: DeploymentRuntime): ReplicaClient[] {
    return this.#routing ? d.running : [];
  }

  /** `subscriber` no longer calls anything (it stopped). */
  unsubscribe(subscriber: Subscriber): void {
    for (const d of this.#deployments.values()) d.subscribers.delete(subscriber);
    this.#peers.delete(subscriber);
  }

  /**
   * `replica` (or a front-door worker) calls deployment `name`: it gets the running
   * replicas now and at every change, until {@link unsubscribe}.
   */
  subscribe(replica: Subscriber, name: string): void {
    const d = this.#deployments.get(name);
    if (!d) {
      // A deployment this application does not have: calls to it fail at once.
      replica.tell({
        t: "members",
        d: name,
        label: name,
        maxOngoing: 1,
        maxQueued: 0,
        add: [],
        remove: [],
        unavailable: serializeError(this.#notFound(name)),
      });
      return;
    }
    if (!this.#current(replica)) return;
    d.subscribers.add(replica);
    this.#sendMembers(replica, d);
  }

  #sendMembers(
    subscriber: Subscriber,
    d: DeploymentRuntime,
    gone?: Readonly<Record<string, string>>,
  ): void {
    let byDeployment = this.#peers.get(subscriber);
    if (!byDeployment) this.#peers.set(subscriber, (byDeployment = new Map<string, Set<string>>()));
    let known = byDeployment.get(d.name);
    if (!known) byDeployment.set(d.name, (known = new Set()));
    const running = this.#routable(d);
    // Between threads a MessageChannel; a port cannot reach another process, so to or from
    // a process the target's Unix socket.
    const ids = new Set(running.map((r) => r.id));
    const remove = [...known].filter((id) => !ids.has(id));
    for (const id of remove) known.delete(id);
    const add: PeerEndpoint[] = [];
    const ports: MessagePort[] = [];
    for (const target of running) {
      if (known.has(target.id)) continue;
      if (bothThreads(subscriber, target)) {
        const { port1, port2 } = new MessageChannel();
        target.tell({ t: "accept", port: port2 }, [port2]);
        add.push({ replica: target.id, port: port1 });
        ports.push(port1);
      } else if (target.transport.remote) {
        // On a cluster node: the replica serves callers on this subject itself.
        add.push({
          replica: target.id,
          nats: target.transport.remote.subject,
          node: target.transport.remote.node,
        });
      } else {
        add.push({ replica: target.id, socket: target.socket });
      }
      known.add(target.id);
    }
    // Which models each multiplexing replica has loaded: all of them, so a subscriber
    // replaces what it knew.
    let models: Record<string, readonly string[]> | undefined;
    for (const target of running)
      if (target.connection.multiplexed) (models ??= {})[target.id] = [...target.connection.models];
    subscriber.tell(
      {
        t: "members",
        d: d.name,
        label: d.spec.deployment.sourceName || d.name,
        maxOngoing: d.options.maxOngoingRequests,
        maxQueued: d.options.maxQueuedRequests,
        maxQueueWait: d.options.maxQueueWaitMs,
        add,
        remove,
        unavailable:
          running.length === 0 && d.unavailable ? serializeError(d.unavailable) : undefined,
        models,
        gone,
      },
      ports,
    );
  }
}
