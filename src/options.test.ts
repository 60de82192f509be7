import assert from "node:assert/strict";
import { test } from "node:test";
import { OptionsError } from "./errors.js";
import {
  MAX_DURATION_MS,
  MAX_REPLICAS,
  resolveOptions,
  toMilliseconds,
  validateOptions,
} from "./options.js";

test("options - durations accept milliseconds or a number with a unit", () => {
  assert.equal(toMilliseconds(250), 250);
  assert.equal(toMilliseconds("250ms"), 250);
  assert.equal(toMilliseconds("1.5s"), 1500);
  assert.equal(toMilliseconds("5m"), 300_000);
  assert.equal(toMilliseconds("1h"), 3_600_000);
  assert.throws(() => toMilliseconds("5 minutes"), OptionsError);
  // Past 2^31 - 1 ms Node fires a timer after 1 ms: refused, not a timeout of 1 ms.
  assert.equal(toMilliseconds(MAX_DURATION_MS), 2_147_483_647);
  assert.throws(() => toMilliseconds("1000h"), /from 0 to 24 days/);
  assert.throws(() => toMilliseconds(-1), OptionsError);
  assert.throws(() => toMilliseconds(NaN), OptionsError);
});

test("options - a period or timeout of 0, and a duration past 24 days, are refused by name", () => {
  for (const [options, reason] of [
    [{ healthCheckPeriod: 0 }, /healthCheckPeriod: expected a duration longer than 0/],
    [{ healthCheckTimeout: "0s" }, /healthCheckTimeout: expected a duration longer than 0/],
    [{ healthCheckPeriod: "1000h" }, /healthCheckPeriod: expected at most 24 days/],
    [{ gracefulShutdownTimeout: 2 ** 31 }, /gracefulShutdownTimeout: expected at most 24 days/],
    [{ maxQueueWait: "1000h" }, /maxQueueWait: expected at most 24 days.*or "off"/],
    [
      { maxQueueWait: "soon" },
      /maxQueueWait: expected a duration such as "250ms" or "2s", or "off"/,
    ],
    [
      { autoscaling: { lookBackPeriod: 0 } },
      /autoscaling\.lookBackPeriod: expected a duration longer than 0/,
    ],
  ] as const)
    assert.throws(() => validateOptions(options, "d"), reason);
  assert.doesNotThrow(() => validateOptions({ gracefulShutdownTimeout: 0, maxQueueWait: 0 }, "d"));
  // A negative one is told so, once (not also "at most 24 days").
  assert.throws(
    () => validateOptions({ healthCheckPeriod: -1 }, "d"),
    (error: Error) => /healthCheckPeriod: /.test(error.message) && !/24 days/.test(error.message),
  );
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

test("options - replica counts are bounded, and initialReplicas lies between minReplicas and maxReplicas", () => {
  for (const [options, reason] of [
    [{ numReplicas: 100_000 }, /numReplicas: expected at most 1024 replicas per deployment/],
    [{ autoscaling: { maxReplicas: 5000 } }, /autoscaling\.maxReplicas: expected at most 1024/],
    [
      { autoscaling: { minReplicas: 1, maxReplicas: 2, initialReplicas: 5 } },
      /autoscaling\.initialReplicas: initialReplicas must be between minReplicas \(1\) and maxReplicas \(2\)/,
    ],
    [
      { autoscaling: { minReplicas: 2, maxReplicas: 4, initialReplicas: 1 } },
      /initialReplicas must be between minReplicas \(2\) and maxReplicas \(4\)/,
    ],
    [{ numReplicas: 0 }, /numReplicas: /],
  ] as const) {
    assert.throws(() => validateOptions(options, "d"), reason);
  }
  validateOptions({ numReplicas: MAX_REPLICAS }, "d");
  validateOptions({ autoscaling: { minReplicas: 0, maxReplicas: 3, initialReplicas: 0 } }, "d");
  validateOptions({ autoscaling: { maxReplicas: 3, initialReplicas: 3 } }, "d");
});
