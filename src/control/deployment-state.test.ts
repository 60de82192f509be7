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
