import assert from "node:assert/strict";
import { test } from "node:test";
import { OptionsError } from "./errors.js";
import { resolveOptions, toMilliseconds, validateOptions } from "./options.js";

test("options - durations accept milliseconds or a number with a unit", () => {
  assert.equal(toMilliseconds(250), 250);
  assert.equal(toMilliseconds("250ms"), 250);
  assert.equal(toMilliseconds("1.5s"), 1500);
  assert.equal(toMilliseconds("5m"), 300_000);
  assert.equal(toMilliseconds("1h"), 3_600_000);
  assert.throws(() => toMilliseconds("5 minutes"), OptionsError);
});

test("options - resolving fills the documented defaults and converts durations once", () => {
  assert.deepEqual(resolveOptions({}), {
    numReplicas: 1,
    maxOngoingRequests: 5,
    maxQueuedRequests: 100,
    isolation: "thread",
    resources: { cpus: 1 },
    // A hung replica is replaced within about 15 s (period + timeout), not Ray's 40 s.
    healthCheckPeriodMs: 5_000,
    healthCheckTimeoutMs: 10_000,
    gracefulShutdownTimeoutMs: 20_000,
  });
  const resolved = resolveOptions({
    numReplicas: 3,
    healthCheckPeriod: "250ms",
    autoscaling: { minReplicas: 0, maxReplicas: 4, upscaleDelay: "2s" },
    userConfig: { threshold: 0.4 },
  });
  assert.equal(resolved.numReplicas, 3);
  assert.equal(resolved.healthCheckPeriodMs, 250);
  assert.deepEqual(resolved.userConfig, { threshold: 0.4 });
  assert.equal(resolved.autoscaling?.minReplicas, 0);
  assert.equal(resolved.autoscaling?.initialReplicas, 0);
  assert.equal(resolved.autoscaling?.upscaleDelayMs, 2000);
});

test("options - userConfig must be JSON", () => {
  assert.doesNotThrow(() => validateOptions({ userConfig: { a: [1, "x", null, true] } }, "d"));
  assert.throws(() => validateOptions({ userConfig: { a: () => 1 } }, "d"), /userConfig/);
});
