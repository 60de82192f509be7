/**
 * Autoscaling on load: ongoing plus queued requests, averaged over `lookBackPeriod`,
 * divided by `targetOngoingRequests` per replica, smoothed, bounded by min/max, and applied
 * only once the decision has held for `upscaleDelay` (or `downscaleDelay`). A deployment at
 * zero replicas scales up at once when a request arrives (it waits in the queue meanwhile).
 */
import type { ResolvedAutoscaling } from "../options.js";

/** Decides a replica count from the load seen; a function type, so the policy can be swapped. */
export type AutoscalingPolicy = (
  config: ResolvedAutoscaling,
  averageLoad: number,
  current: number,
) => number;

/** Ray Serve's default policy: replicas for the load at the target, smoothed and bounded. */
export const targetOngoingRequestsPolicy: AutoscalingPolicy = (config, averageLoad, current) => {
  const wanted = averageLoad / config.targetOngoingRequests;
  const smoothed = current + (wanted - current) * config.smoothingFactor;
  // Round up while there is load (any load needs a replica); with none, round down so a
  // smoothed decision still reaches minReplicas (zero included).
  const rounded = averageLoad === 0 ? Math.floor(smoothed + 1e-9) : Math.ceil(smoothed - 1e-9);
  return Math.min(config.maxReplicas, Math.max(config.minReplicas, rounded));
};

export class Autoscaler {
  readonly #config: ResolvedAutoscaling;
  readonly #policy: AutoscalingPolicy;
  readonly #samples: { at: number; load: number }[] = [];
  #pending: { direction: "up" | "down"; since: number } | undefined;

  constructor(
    config: ResolvedAutoscaling,
    policy: AutoscalingPolicy = targetOngoingRequestsPolicy,
  ) {
    this.#config = config;
    this.#policy = policy;
  }

  /** Records the load now; returns the replica count to scale to, or `undefined` to stay. */
  observe(now: number, load: number, current: number): number | undefined {
    this.#samples.push({ at: now, load });
    while (this.#samples.length > 0 && this.#samples[0]!.at < now - this.#config.lookBackPeriodMs)
      this.#samples.shift();
    if (current === 0 && load > 0) {
      this.#pending = undefined;
      return Math.max(1, this.#config.minReplicas);
    }
    const average = this.#samples.reduce((sum, s) => sum + s.load, 0) / this.#samples.length;
    const desired = this.#policy(this.#config, average, current);
    if (desired === current) {
      this.#pending = undefined;
      return undefined;
    }
    const direction = desired > current ? "up" : "down";
    if (this.#pending?.direction !== direction) {
      this.#pending = { direction, since: now };
      return undefined;
    }
    const delay = direction === "up" ? this.#config.upscaleDelayMs : this.#config.downscaleDelayMs;
    if (now - this.#pending.since < delay) return undefined;
    this.#pending = undefined;
    this.#samples.length = 0;
    return desired;
  }
}
