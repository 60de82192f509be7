/**
 * @internal Whether this thread or process is a replica: there `run()` must not start
 * servers, and options are not validated again.
 */
let replicaContext = false;

export function markReplicaContext(): void {
  replicaContext = true;
}

export function inReplicaContext(): boolean {
  return replicaContext;
}

/** This replica's maxOngoingRequests (undefined outside a replica). */
let maxOngoing: number | undefined;

export function setReplicaMaxOngoing(n: number): void {
  maxOngoing = n;
}

/** The most calls this replica runs at once, when this is a replica. */
export function replicaMaxOngoing(): number | undefined {
  return maxOngoing;
}
