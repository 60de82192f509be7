/**
 * @internal One state machine per deployment. Its states are the deployment's status;
 * {@link nextStatus} derives the next one from what runs, and {@link DeploymentState.set}
 * refuses a transition the table does not allow (it throws: a bug, not a user error).
 */
import type { DeploymentStatus } from "../status.js";

/** Which states may follow each state (staying is always allowed). */
const TRANSITIONS: Readonly<Record<DeploymentStatus, readonly DeploymentStatus[]>> = {
  // Replicas are starting or being replaced towards the target.
  UPDATING: ["HEALTHY", "UNHEALTHY", "DEPLOY_FAILED", "PENDING"],
  // The target count runs; a scale, an update, a crash or a failed start moves it on.
  HEALTHY: ["UPDATING", "UNHEALTHY", "DEPLOY_FAILED", "PENDING"],
  // Nothing runs after crashes: replacements start (UPDATING), run, or fail to start.
  UNHEALTHY: ["UPDATING", "HEALTHY", "DEPLOY_FAILED", "PENDING"],
  // Could not start; a retry, a new target or an update starts again. A deployment that
  // never ran cannot have become unhealthy.
  DEPLOY_FAILED: ["UPDATING", "HEALTHY", "PENDING"],
  // A replica fits on no node: a node that fits joins (UPDATING), or the target shrinks.
  PENDING: ["UPDATING", "HEALTHY", "UNHEALTHY", "DEPLOY_FAILED"],
};

export class IllegalTransitionError extends Error {
  constructor(deployment: string, from: DeploymentStatus, to: DeploymentStatus) {
    super(`Deployment "${deployment}": illegal status transition ${from} → ${to}`);
    this.name = "IllegalTransitionError";
  }
}

/** What the controller knows of a deployment's replicas when it re-derives the status. */
export interface DeploymentFacts {
  /** Replicas taking requests. */
  readonly running: number;
  /** Replicas starting or running. */
  readonly live: number;
  readonly target: number;
  /** Crashes since the replicas last ran for a while. */
  readonly crashes: number;
  /** Starts failed as many times as allowed, and fewer than the target run. */
  readonly givenUp: boolean;
  /** A rolling restart is under way. */
  readonly rolling: boolean;
  /** Replicas the target needs that fit on no node (a cluster); absent: none. */
  readonly unplaced?: number | undefined;
}

/** The status that follows `current` given `facts` (a pure function). */
export function nextStatus(current: DeploymentStatus, facts: DeploymentFacts): DeploymentStatus {
  // Failed to start and not retrying any more: DEPLOY_FAILED until something changes, even
  // while older replicas serve (a scale-up whose new replicas cannot start).
  if (current === "DEPLOY_FAILED" && (facts.running === 0 || facts.givenUp) && !facts.rolling)
    return "DEPLOY_FAILED";
  if (facts.running >= facts.target && facts.live === facts.running) return "HEALTHY";
  if ((facts.unplaced ?? 0) > 0 && facts.live < facts.target) return "PENDING";
  if (facts.running === 0 && facts.crashes > 0 && current !== "DEPLOY_FAILED") return "UNHEALTHY";
  return "UPDATING";
}

export class DeploymentState {
  readonly deployment: string;
  #status: DeploymentStatus = "UPDATING";

  constructor(deployment: string) {
    this.deployment = deployment;
  }

  get status(): DeploymentStatus {
    return this.#status;
  }

  /** Moves to `next`; throws {@link IllegalTransitionError} if the table forbids it. */
  set(next: DeploymentStatus): void {
    if (next === this.#status) return;
    if (!TRANSITIONS[this.#status].includes(next))
      throw new IllegalTransitionError(this.deployment, this.#status, next);
    this.#status = next;
  }

  /** Moves to the status {@link nextStatus} derives from `facts`. */
  derive(facts: DeploymentFacts): DeploymentStatus {
    this.set(nextStatus(this.#status, facts));
    return this.#status;
  }
}
