import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DeploymentState, IllegalTransitionError, nextStatus } from "./deployment-state.js";
import { planUpdate } from "./update-plan.js";
import { resolveOptions } from "../options.js";

const facts = { running: 0, live: 0, target: 2, crashes: 0, givenUp: false, rolling: false };

describe("deployment state machine", () => {
  test("state - derives UPDATING, HEALTHY and UNHEALTHY from what runs", () => {
    assert.equal(nextStatus("UPDATING", { ...facts, live: 2, running: 1 }), "UPDATING");
    assert.equal(nextStatus("UPDATING", { ...facts, live: 2, running: 2 }), "HEALTHY");
    assert.equal(nextStatus("HEALTHY", { ...facts, running: 0, crashes: 1 }), "UNHEALTHY");
    assert.equal(nextStatus("UNHEALTHY", { ...facts, live: 1, running: 0 }), "UPDATING");
  });

  test("state - PENDING while replicas fit on no node, and out of it once they are placed", () => {
    assert.equal(nextStatus("UPDATING", { ...facts, unplaced: 2 }), "PENDING");
    assert.equal(nextStatus("HEALTHY", { ...facts, running: 1, live: 1, unplaced: 1 }), "PENDING");
    assert.equal(nextStatus("PENDING", { ...facts, live: 2, running: 0 }), "UPDATING");
    assert.equal(nextStatus("PENDING", { ...facts, live: 2, running: 2 }), "HEALTHY");
    const state = new DeploymentState("m");
    state.set("PENDING");
    state.set("UPDATING");
    state.set("PENDING");
    state.set("HEALTHY");
  });

  test("state - DEPLOY_FAILED stays until a replica runs, or holds while starts have been given up", () => {
    assert.equal(nextStatus("DEPLOY_FAILED", { ...facts, live: 1 }), "DEPLOY_FAILED");
    assert.equal(
      nextStatus("DEPLOY_FAILED", { ...facts, running: 1, live: 1, givenUp: true }),
      "DEPLOY_FAILED",
    );
    assert.equal(nextStatus("DEPLOY_FAILED", { ...facts, running: 2, live: 2 }), "HEALTHY");
    assert.equal(
      nextStatus("DEPLOY_FAILED", { ...facts, crashes: 3, rolling: true }),
      "UPDATING",
      "never UNHEALTHY: it never ran",
    );
  });

  test("state - an illegal transition throws", () => {
    const state = new DeploymentState("m");
    state.set("DEPLOY_FAILED");
    assert.throws(() => state.set("UNHEALTHY"), IllegalTransitionError);
    assert.equal(state.status, "DEPLOY_FAILED");
    state.set("UPDATING");
    state.derive({ ...facts, running: 2, live: 2 });
    assert.equal(state.status, "HEALTHY");
  });

  test("state - HEALTHY only when every live replica runs; PENDING only while fewer than the target are live", () => {
    // A rolling restart's new replica is starting beside the target count.
    assert.equal(nextStatus("HEALTHY", { ...facts, running: 2, live: 3 }), "UPDATING");
    assert.equal(nextStatus("UPDATING", { ...facts, running: 2, live: 2 }), "HEALTHY");
    // Unplaced replicas of an earlier target, while the target's replicas are live.
    assert.equal(nextStatus("UPDATING", { ...facts, live: 2, unplaced: 1 }), "UPDATING");
    assert.equal(nextStatus("UPDATING", { ...facts, live: 1, unplaced: 1 }), "PENDING");
    assert.equal(nextStatus("HEALTHY", { ...facts, crashes: 1, rolling: true }), "UNHEALTHY");
  });

  test("state - every status nextStatus derives is a transition the table allows, from every status", () => {
    const statuses = ["UPDATING", "HEALTHY", "UNHEALTHY", "DEPLOY_FAILED", "PENDING"] as const;
    let checked = 0;
    for (const from of statuses)
      for (const running of [0, 1, 2, 3])
        for (const live of [running, running + 1])
          for (const crashes of [0, 1])
            for (const givenUp of [false, true])
              for (const rolling of [false, true])
                for (const unplaced of [0, 1]) {
                  const state = new DeploymentState("m");
                  if (from !== "UPDATING") state.set(from);
                  const f = { running, live, target: 2, crashes, givenUp, rolling, unplaced };
                  const to = nextStatus(from, f);
                  assert.doesNotThrow(() => state.derive(f), `${from} → ${to}`);
                  checked++;
                }
    assert.equal(checked, 5 * 4 * 2 * 2 * 2 * 2 * 2);
  });

  test("update plan - each option maps to its step; the same values in another key order are no change", () => {
    const old = resolveOptions({
      resources: { cpus: 1, memory: 1e9 },
      userConfig: { a: 1, b: { c: 2, d: 3 } },
    });
    const cases: [Parameters<typeof resolveOptions>[0], string[]][] = [
      [{ maxOngoingRequests: 9 }, ["router"]],
      [{ maxQueuedRequests: 9 }, ["router"]],
      [{ maxQueueWait: "1s" }, ["router"]],
      [{ healthCheckPeriod: "1s" }, ["controller"]],
      [{ healthCheckTimeout: "1s" }, ["controller"]],
      [{ gracefulShutdownTimeout: "1s" }, ["controller"]],
      [{ userConfig: { a: 2 } }, ["reconfigure"]],
      [{ isolation: "process" }, ["restart"]],
      [{ resources: { cpus: 2 } }, ["restart"]],
      [{ numReplicas: 3 }, ["scale"]],
      [{ autoscaling: { minReplicas: 1, maxReplicas: 4 } }, ["scale"]],
    ];
    const base = { resources: { cpus: 1, memory: 1e9 }, userConfig: { a: 1, b: { c: 2, d: 3 } } };
    for (const [change, steps] of cases)
      assert.deepEqual(
        planUpdate(old, resolveOptions({ ...base, ...change })),
        steps,
        JSON.stringify(change),
      );
    const reordered = resolveOptions({
      resources: { memory: 1e9, cpus: 1 },
      userConfig: { b: { d: 3, c: 2 }, a: 1 },
    });
    assert.deepEqual(planUpdate(old, reordered), []);
    // Removed: the replicas start again without one (reconfigure() is never handed null).
    const { userConfig: _, ...withoutConfig } = base;
    assert.deepEqual(planUpdate(old, resolveOptions(withoutConfig)), ["restart"]);
    assert.deepEqual(planUpdate(resolveOptions(withoutConfig), old), ["reconfigure"]);
    // null (a YAML key left empty) is none.
    assert.deepEqual(planUpdate(old, resolveOptions({ ...base, userConfig: null })), ["restart"]);
    assert.equal(resolveOptions({ userConfig: null }).userConfig, undefined);
  });

  test("update plan - a pure function from old and new options to the steps, in order", () => {
    const old = resolveOptions({});
    assert.deepEqual(planUpdate(old, old), []);
    assert.deepEqual(planUpdate(old, resolveOptions({ numReplicas: 3 })), ["scale"]);
    assert.deepEqual(
      planUpdate(
        old,
        resolveOptions({
          numReplicas: 3,
          isolation: "process",
          maxOngoingRequests: 9,
          userConfig: { t: 1 },
          healthCheckPeriod: "1s",
        }),
      ),
      ["router", "controller", "reconfigure", "restart", "scale"],
    );
  });
});
