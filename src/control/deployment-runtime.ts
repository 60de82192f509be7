/**
 * @internal What the control plane keeps per deployment: its replicas, its state machine,
 * the target count, timers, and who subscribed to its membership.
 */
import type { JsonValue, ResolvedDeploymentOptions } from "../options.js";
import type { DeploymentSpec } from "../dag/compile.js";
import type { Router } from "../data/router.js";
import type { DeploymentStatus } from "../status.js";
import { Autoscaler } from "./autoscaler.js";
import { DeploymentState } from "./deployment-state.js";
import type { Subscriber } from "./membership.js";
import type { ReplicaClient } from "./replica-client.js";

export class DeploymentRuntime {
  readonly replicas: ReplicaClient[] = [];
  readonly state: DeploymentState;
  /** Replicas that call this deployment and get its membership. */
  readonly subscribers = new Set<Subscriber>();
  /** Why calls fail at once while no replica runs (a failed deploy, the server closing). */
  unavailable: Error | undefined;
  message = "";
  /**
   * The message when it says what is under way (scaling): it is cleared once the deployment
   * is HEALTHY at its target, unless another replaced it. Why a replica died or failed to
   * start stays: it is what an operator looks for.
   */
  progress: string | undefined;
  startFailures = 0;
  crashes = 0;
  replicaNumber = 0;
  retryTimer: NodeJS.Timeout | undefined;
  healthTimer: NodeJS.Timeout | undefined;
  readonly checking = new Set<ReplicaClient>();
  /** Health checks each replica has failed in a row (reset by one it passes). */
  readonly healthFailures = new Map<ReplicaClient, number>();
  userConfig: JsonValue | undefined;
  /** The replica count to converge on: numReplicas, or the autoscaler's decision. */
  target: number;
  autoscaler: Autoscaler | undefined;
  /** Replicas the target needs that fit on no node (a cluster), as of the last reconcile. */
  unplaced = 0;
  /** During a rolling restart the live count may exceed the target by one. */
  rolling = false;
  scaleTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly name: string,
    readonly spec: DeploymentSpec,
    public options: ResolvedDeploymentOptions,
    readonly router: Router,
  ) {
    this.state = new DeploymentState(name);
    this.userConfig = options.userConfig;
    this.target = options.autoscaling ? options.autoscaling.initialReplicas : options.numReplicas;
    this.autoscaler = options.autoscaling ? new Autoscaler(options.autoscaling) : undefined;
  }

  get live(): ReplicaClient[] {
    return this.replicas.filter((r) => r.state === "STARTING" || r.state === "RUNNING");
  }

  get running(): ReplicaClient[] {
    return this.replicas.filter((r) => r.state === "RUNNING");
  }

  get status(): DeploymentStatus {
    return this.state.status;
  }

  /** Requests running on this deployment's replicas, as they last reported. */
  get ongoing(): number {
    let total = 0;
    for (const r of this.replicas) total += r.load.ongoing;
    return total;
  }
}

/**
 * Whether `replica` is running, waiting (until `deadline`) for one still starting: its
 * constructor may be loading a model natively, and ending the thread under that can abort
 * the process, so it is let finish and then stopped like the others.
 */
export async function runningOnceStarted(
  replica: ReplicaClient,
  deadline: number,
): Promise<boolean> {
  if (replica.state === "RUNNING") return true;
  if (replica.state !== "STARTING") return false;
  return replica.whenStarted(Math.max(deadline - Date.now(), 1000));
}
