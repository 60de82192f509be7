/**
 * @internal What applying new options to a running deployment takes, as a pure function
 * of the old and the new options: the controller carries the steps out in this order, and
 * undoes the ones that ran when a later one fails.
 */
import type { ResolvedDeploymentOptions } from "../options.js";
import { canonicalJson } from "../values.js";

/**
 * - `router`: new `maxOngoingRequests` / `maxQueuedRequests` / `maxQueueWait`, in place
 *   (routers and replicas).
 * - `controller`: new health check or shutdown timing, in place.
 * - `reconfigure`: the new `userConfig` through `reconfigure()` on live replicas.
 * - `restart`: isolation or resources changed, or the `userConfig` was removed: a rolling
 *   restart. (A replica started without a `userConfig` never has `reconfigure()` called, as
 *   in Ray Serve; one whose config is taken away is replaced by such a replica, instead of
 *   being handed `null`, which a `reconfigure(config)` written for its config cannot read.)
 * - `scale`: a new replica count or autoscaling policy.
 */
export type UpdateKind = "router" | "controller" | "reconfigure" | "restart" | "scale";

const STEPS: readonly [UpdateKind, readonly (keyof ResolvedDeploymentOptions)[]][] = [
  ["router", ["maxOngoingRequests", "maxQueuedRequests", "maxQueueWaitMs"]],
  ["controller", ["healthCheckPeriodMs", "healthCheckTimeoutMs", "gracefulShutdownTimeoutMs"]],
  ["reconfigure", ["userConfig"]],
  ["restart", ["isolation", "resources"]],
  ["scale", ["numReplicas", "autoscaling"]],
];

/** The steps that take `old` to `next`, in the order they run; none when nothing changed. */
export function planUpdate(
  old: ResolvedDeploymentOptions,
  next: ResolvedDeploymentOptions,
): UpdateKind[] {
  // Values as JSON has them (an absent field and `undefined` alike), in any key order: the
  // same resources or userConfig written in another order is no change.
  const changed = (key: keyof ResolvedDeploymentOptions): boolean =>
    canonicalJson(old[key]) !== canonicalJson(next[key]);
  const removed = old.userConfig !== undefined && next.userConfig === undefined;
  return STEPS.filter(([kind, keys]) =>
    kind === "reconfigure"
      ? !removed && keys.some(changed)
      : kind === "restart"
        ? removed || keys.some(changed)
        : keys.some(changed),
  ).map(([kind]) => kind);
}
