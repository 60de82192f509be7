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
