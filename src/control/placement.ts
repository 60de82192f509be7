/**
 * @internal Placement by resources, as pure functions: what a node has free, whether a
 * replica's `resources` fit in it (and if not, what is missing), and which node a replica
 * goes to. Spread by default (Ray Serve's default for replicas): the fitting node with the
 * fewest replicas of the deployment, then the most free CPUs, then its name.
 */
import type { NodeResources } from "../wire/cluster.js";
import type { Placement } from "../data/transport/transport.js";

export type Need = Placement["resources"];

/** A node as placement sees it. */
export interface Candidate {
  readonly name: string;
  readonly free: NodeResources;
  /** Replicas of the deployment being placed that already run there. */
  readonly sameDeployment: number;
}

/** What `total` has left after `used`. */
export function freeResources(total: NodeResources, used: readonly Need[]): NodeResources {
  let cpus = total.cpus;
  let gpus = total.gpus;
  let memory = total.memory;
  const custom: Record<string, number> = { ...total.custom };
  for (const need of used) {
    cpus -= need.cpus ?? 0;
    gpus -= need.gpus ?? 0;
    memory -= need.memory ?? 0;
    for (const [name, amount] of Object.entries(need.custom ?? {}))
      custom[name] = (custom[name] ?? 0) - amount;
  }
  return { cpus: round(cpus), gpus: round(gpus), memory, custom };
}

const round = (n: number): number => Math.round(n * 1000) / 1000;

/** Undefined when `need` fits in `free`; otherwise the first resource short, in words. */
export function shortfall(free: NodeResources, need: Need): string | undefined {
  if ((need.cpus ?? 0) > free.cpus) return `cpus ${need.cpus} (free: ${free.cpus})`;
  if ((need.gpus ?? 0) > free.gpus) return `gpus ${need.gpus} (free: ${free.gpus})`;
  if ((need.memory ?? 0) > free.memory) return `memory ${need.memory} bytes (free: ${free.memory})`;
  for (const [name, amount] of Object.entries(need.custom ?? {}))
    if (amount > (free.custom[name] ?? 0))
      return `custom resource "${name}" ${amount} (free: ${free.custom[name] ?? 0})`;
  return undefined;
}

/**
 * The node a replica needing `need` goes to, or why none: `{ reason }` names the missing
 * resource on each node (or that there is no node).
 */
export function choose(
  nodes: readonly Candidate[],
  need: Need,
): { node: string } | { reason: string } {
  const fitting = nodes.filter((n) => shortfall(n.free, need) === undefined);
  if (fitting.length === 0) {
    if (nodes.length === 0) return { reason: "no node has joined the cluster" };
    return {
      reason: `no node has the resources free: ${nodes
        .map((n) => `${n.name} lacks ${shortfall(n.free, need)}`)
        .join("; ")}`,
    };
  }
  const best = [...fitting].sort(
    (a, b) =>
      a.sameDeployment - b.sameDeployment ||
      b.free.cpus - a.free.cpus ||
      (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  )[0]!;
  return { node: best.name };
}
