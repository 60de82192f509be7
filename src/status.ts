/**
 * What `server.status()` reports: the information of Ray Serve's `serve status`.
 */
/**
 * - `STARTING`: importing the module and constructing the deployment.
 * - `RUNNING`: taking requests.
 * - `STOPPING`: draining, then `close()`; takes no new requests.
 * - `STOPPED`: exited after a graceful stop.
 * - `DEAD`: failed to start, crashed, or was killed after a failed health check.
 */
export type ReplicaState = "STARTING" | "RUNNING" | "STOPPING" | "STOPPED" | "DEAD";

/**
 * - `UPDATING`: replicas are starting (or being replaced) towards the target count.
 * - `HEALTHY`: the target count of replicas is running.
 * - `UNHEALTHY`: no replica is running after crashes or failed health checks; replacing.
 * - `DEPLOY_FAILED`: the deployment could not start (import or constructor failure).
 */
/**
 * `PENDING`: some replica fits on no node of the cluster (its `resources`); it is placed
 * as soon as a node that fits joins. The message names the missing resource.
 */
export type DeploymentStatus = "UPDATING" | "HEALTHY" | "UNHEALTHY" | "DEPLOY_FAILED" | "PENDING";

/**
 * - `DEPLOYING`: some deployment is UPDATING.
 * - `RUNNING`: every deployment is HEALTHY.
 * - `UNHEALTHY`: some deployment is UNHEALTHY.
 * - `DEPLOY_FAILED`: some deployment failed to deploy.
 * - `DELETING`: the application is shutting down.
 */
export type ApplicationStatus =
  "DEPLOYING" | "RUNNING" | "UNHEALTHY" | "DEPLOY_FAILED" | "DELETING";

export interface ReplicaStatusInfo {
  readonly id: string;
  readonly state: ReplicaState;
  readonly isolation: "thread" | "process";
  /** `thread 3` or `pid 1234`. */
  readonly host: string;
  readonly ongoing: number;
  readonly message: string;
  /** In a cluster: the name of the node the replica runs on. */
  readonly node?: string | undefined;
}

export interface DeploymentStatusInfo {
  readonly name: string;
  readonly status: DeploymentStatus;
  /** The latest event: a start failure with its error, a replaced replica and why. */
  readonly message: string;
  readonly targetReplicas: number;
  readonly ongoing: number;
  readonly queued: number;
  readonly replicas: readonly ReplicaStatusInfo[];
}

export interface ApplicationStatusInfo {
  readonly name: string;
  readonly routePrefix: string;
  readonly status: ApplicationStatus;
  readonly message: string;
  readonly deployments: Readonly<Record<string, DeploymentStatusInfo>>;
  /** When the application was last deployed or changed by an update (ISO 8601). */
  readonly lastDeployedAt?: string;
  /** What that update changed, per deployment (`{ m1: ["scale"] }`; empty for a start). */
  readonly lastChanges?: Readonly<Record<string, readonly string[]>>;
}

/** An application's status from its deployments'. */
export function aggregateStatus(
  deployments: readonly DeploymentStatusInfo[],
  closing: boolean,
): { status: ApplicationStatus; message: string } {
  if (closing) return { status: "DELETING", message: "shutting down" };
  const failed = deployments.filter((d) => d.status === "DEPLOY_FAILED");
  if (failed.length > 0) {
    return {
      status: "DEPLOY_FAILED",
      message: failed.map((d) => `${d.name}: ${d.message}`).join("; "),
    };
  }
  const unhealthy = deployments.filter((d) => d.status === "UNHEALTHY");
  if (unhealthy.length > 0) {
    return {
      status: "UNHEALTHY",
      message: unhealthy.map((d) => `${d.name}: ${d.message}`).join("; "),
    };
  }
  if (deployments.some((d) => d.status === "UPDATING")) return { status: "DEPLOYING", message: "" };
  const pending = deployments.filter((d) => d.status === "PENDING");
  if (pending.length > 0)
    return {
      status: "DEPLOYING",
      message: pending.map((d) => `${d.name}: ${d.message}`).join("; "),
    };
  return { status: "RUNNING", message: "" };
}
