import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { deployment, OptionsError } from "../index.js";

class Model {
  forward(x: number): number {
    return x;
  }
}

describe("deployment()", () => {
  test("deployment - options() returns a new deployment with merged options and never mutates", () => {
    const base = deployment(Model, { numReplicas: 2, resources: { cpus: 2, gpus: 1 } });
    const scaled = base.options({ maxOngoingRequests: 8, resources: { cpus: 4 } });
    const named = scaled.options({ name: "m1" });
    assert.notEqual(scaled, base);
    assert.deepEqual(base.config, { numReplicas: 2, resources: { cpus: 2, gpus: 1 } });
    // An object-valued field is replaced whole, as in YAML.
    assert.deepEqual(scaled.config, {
      numReplicas: 2,
      maxOngoingRequests: 8,
      resources: { cpus: 4 },
    });
    assert.equal(base.name, "Model");
    assert.equal(named.name, "m1");
    assert.equal(scaled.name, "Model");
    assert.ok(Object.isFrozen(base.config));
    assert.equal(base.kind, "class");
  });

  test("deployment - functions and classes are told apart, including async and generator functions", () => {
    assert.equal(deployment(async function a() {}).kind, "function");
    assert.equal(deployment(async function* g() {}).kind, "function");
    const arrow = (x: number): number => x;
    assert.equal(deployment(arrow).kind, "function");
    assert.equal(deployment(arrow).name, "arrow");
    assert.equal(deployment(class Named {}).kind, "class");
  });

  test("deployment - invalid options are rejected with every failing field", () => {
    assert.throws(
      () =>
        deployment(Model, {
          numReplicas: -1,
          isolation: "vm" as never,
          healthCheckPeriod: "soon" as never,
        }),
      (error: unknown) => {
        assert.ok(error instanceof OptionsError);
        assert.equal(error.code, "INVALID_OPTIONS");
        assert.match(error.message, /Invalid options for deployment "Model"/);
        assert.match(error.message, /numReplicas: /);
        assert.match(error.message, /isolation: /);
        assert.match(error.message, /healthCheckPeriod: expected a duration/);
        return true;
      },
    );
    assert.throws(
      () => deployment(Model).options({ nmReplicas: 2 } as never),
      /Unrecognized key.*nmReplicas/,
    );
    assert.throws(
      () => deployment(Model, { autoscaling: { minReplicas: 3, maxReplicas: 1 } }),
      /autoscaling\.minReplicas: minReplicas must not be greater than maxReplicas/,
    );
    assert.throws(
      () => deployment(Model, { name: "has space" }),
      /name: expected at most 100 letters/,
    );
  });

  test("deployment - an anonymous function without a name is rejected, saying how to name it", () => {
    assert.throws(
      () => deployment([(x: number) => x][0]!),
      (error: unknown) =>
        error instanceof OptionsError &&
        /has no name: declare it with a name, or pass \{ name: "…" \}/.test(error.message) &&
        /deployment\.test\.ts:\d+/.test(error.message),
    );
    assert.equal(deployment([(x: number) => x][0]!, { name: "anon" }).name, "anon");
  });

  test("deployment - non-functions and deployments are rejected", () => {
    assert.throws(() => deployment(42 as never), /expects a function or a class, got number/);
    const d = deployment(Model);
    assert.throws(() => deployment(d as never), /was given a deployment; use \.options\(\)/);
  });
});
