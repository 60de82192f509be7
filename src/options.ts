/**
 * Deployment options: one zod schema shared by code (`deployment(fn, options)`,
 * `.options()`), `Application.withOptions` and the YAML config. Options are written with
 * human units and compiled once into a filled, millisecond form.
 */
import type { z as Zod } from "zod";
import { OptionsError } from "./errors.js";
import { zod } from "./zod.js";
import { inReplicaContext } from "./replica-context.js";

const DURATION_UNITS_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;
const DURATION_PATTERN = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)$/;

/** Milliseconds, or a string with a unit: `"250ms"`, `"30s"`, `"5m"`, `"1h"`. */
export type Duration = number | `${number}${"ms" | "s" | "m" | "h"}`;

/**
 * The longest duration: what a timer can wait (2³¹ − 1 ms, about 24.8 days). Node fires a
 * longer `setTimeout` after 1 ms, so a longer timeout would fail every request at once.
 */
export const MAX_DURATION_MS = 2 ** 31 - 1;

/** A {@link Duration} in milliseconds; `undefined` when it is not one (or out of range). */
function durationMs(duration: unknown): number | undefined {
  let ms: number;
  if (typeof duration === "number") ms = duration;
  else if (typeof duration === "string") {
    const match = DURATION_PATTERN.exec(duration.trim());
    if (!match) return undefined;
    ms = Number(match[1]) * DURATION_UNITS_MS[match[2] as keyof typeof DURATION_UNITS_MS];
  } else return undefined;
  return ms >= 0 && ms <= MAX_DURATION_MS ? ms : undefined;
}

/** Converts a {@link Duration} to milliseconds (from 0 to 2³¹ − 1, about 24.8 days). */
export function toMilliseconds(duration: number | string): number {
  const ms = durationMs(duration);
  if (ms === undefined) {
    throw new OptionsError(
      `${JSON.stringify(duration)} is not a duration: use milliseconds or a number with ms, s, m or h, ` +
        `from 0 to 24 days`,
    );
  }
  return ms;
}

/** Names operators use in YAML: letters, digits, `_`, `-` and `.`, not starting with `-` or `.`. */
export const DEPLOYMENT_NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$/;

function buildSchemas(z: typeof Zod) {
  const durationSchema = z
    .union(
      [
        z.number().nonnegative().finite(),
        z
          .string()
          .regex(DURATION_PATTERN, 'expected a duration such as 250, "250ms", "30s" or "5m"'),
      ],
      { error: 'expected a duration such as 250, "250ms", "30s" or "5m"' },
    )
    .refine(
      // (A value that is no duration at all was reported above.)
      (value) =>
        durationMs(value) !== undefined ||
        (typeof value === "string" && !DURATION_PATTERN.test(value.trim())) ||
        (typeof value === "number" && !(Number.isFinite(value) && value >= 0)) ||
        (typeof value !== "string" && typeof value !== "number"),
      `expected at most 24 days (${MAX_DURATION_MS} ms, the longest a timer waits)`,
    );
  /** A duration that must not be 0 (a period, a timeout). */
  const positiveDuration = durationSchema.refine(
    (value) => durationMs(value) !== 0,
    "expected a duration longer than 0",
  );

  const positiveInt = z.number().int().positive();
  const nonNegativeInt = z.number().int().nonnegative();
  const replicaCount = (least: 0 | 1) =>
    z
      .number()
      .int()
      .min(least)
      .max(
        MAX_REPLICAS,
        `expected at most ${MAX_REPLICAS} replicas per deployment (each is a thread or a process of this machine)`,
      );

  const autoscalingSchema = z
    .strictObject({
      minReplicas: replicaCount(0),
      maxReplicas: replicaCount(1),
      initialReplicas: replicaCount(0),
      targetOngoingRequests: z.number().positive(),
      upscaleDelay: durationSchema,
      downscaleDelay: durationSchema,
      lookBackPeriod: positiveDuration,
      smoothingFactor: z.number().positive(),
    })
    .partial()
    .refine(
      (a) =>
        a.minReplicas === undefined ||
        a.maxReplicas === undefined ||
        a.minReplicas <= a.maxReplicas,
      {
        message: "minReplicas must not be greater than maxReplicas",
        path: ["minReplicas"],
      },
    )
    .superRefine((a, context) => {
      if (a.initialReplicas === undefined) return;
      const min = a.minReplicas ?? DEFAULT_AUTOSCALING.minReplicas;
      const max = a.maxReplicas ?? Math.max(min, DEFAULT_AUTOSCALING.maxReplicas);
      if (a.initialReplicas >= min && a.initialReplicas <= max) return;
      context.addIssue({
        code: "custom",
        input: a.initialReplicas,
        path: ["initialReplicas"],
        message: `initialReplicas must be between minReplicas (${min}) and maxReplicas (${max})`,
      });
    });

  const resourcesSchema = z
    .strictObject({
      cpus: z.number().nonnegative(),
      gpus: z.number().nonnegative(),
      memory: z.number().nonnegative(),
      custom: z.record(z.string(), z.number().nonnegative()),
    })
    .partial();

  const deploymentOptionsSchema = z
    .strictObject({
      name: z
        .string()
        .regex(
          DEPLOYMENT_NAME_PATTERN,
          "expected at most 100 letters, digits, '_', '-' or '.', not starting with '-' or '.'",
        ),
      numReplicas: replicaCount(1),
      maxOngoingRequests: positiveInt,
      maxQueuedRequests: nonNegativeInt,
      maxQueueWait: z.union([z.number(), z.string()]).superRefine((value, context) => {
        if (value === "off" || durationMs(value) !== undefined) return;
        const shaped =
          typeof value === "number"
            ? Number.isFinite(value) && value >= 0
            : DURATION_PATTERN.test(value.trim());
        context.addIssue({
          code: "custom",
          input: value,
          message: shaped
            ? `expected at most 24 days (${MAX_DURATION_MS} ms, the longest a timer waits), or "off"`
            : 'expected a duration such as "250ms" or "2s", or "off"',
        });
      }),
      autoscaling: autoscalingSchema,
      userConfig: z.json(),
      isolation: z.enum(["thread", "process"]),
      resources: resourcesSchema,
      healthCheckPeriod: positiveDuration,
      healthCheckTimeout: positiveDuration,
      gracefulShutdownTimeout: durationSchema,
    })
    .partial()
    .refine((o) => o.numReplicas === undefined || o.autoscaling === undefined, {
      message:
        "numReplicas and autoscaling cannot both be set: autoscaling decides the number of " +
        "replicas (minReplicas, initialReplicas, maxReplicas). Keep one of them",
      path: ["numReplicas"],
    });
  return { durationSchema, positiveDuration, deploymentOptionsSchema };
}

let schemas: ReturnType<typeof buildSchemas> | undefined;

/**
 * @internal The zod schemas of deployment options as written in code or YAML (every field
 * optional), built on first use (see `zod.ts`).
 */
export function optionsSchemas(): ReturnType<typeof buildSchemas> {
  schemas ??= buildSchemas(zod());
  return schemas;
}

/** Deployment options as a user writes them; every field is optional. */
export type DeploymentOptions = {
  name?: string;
  numReplicas?: number;
  maxOngoingRequests?: number;
  maxQueuedRequests?: number;
  /**
   * How long a request may wait in a router's queue for a replica before it fails with
   * `QueueTimeoutError` (HTTP 503, gRPC UNAVAILABLE); `"off"` (the default) waits up to the
   * request's own timeout.
   */
  maxQueueWait?: Duration | "off";
  autoscaling?: {
    minReplicas?: number;
    maxReplicas?: number;
    initialReplicas?: number;
    targetOngoingRequests?: number;
    upscaleDelay?: Duration;
    downscaleDelay?: Duration;
    lookBackPeriod?: Duration;
    smoothingFactor?: number;
  };
  userConfig?: JsonValue;
  isolation?: "thread" | "process";
  resources?: { cpus?: number; gpus?: number; memory?: number; custom?: Record<string, number> };
  healthCheckPeriod?: Duration;
  healthCheckTimeout?: Duration;
  gracefulShutdownTimeout?: Duration;
};

/** A JSON value (what `userConfig` may hold). */
export type JsonValue =
  string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** Options with every default filled in and every duration in milliseconds. */
export interface ResolvedDeploymentOptions {
  readonly numReplicas: number;
  readonly maxOngoingRequests: number;
  readonly maxQueuedRequests: number;
  /** Absent when off: a queued request waits up to its own timeout. */
  readonly maxQueueWaitMs?: number;
  /** Absent when autoscaling is off. */
  readonly autoscaling?: ResolvedAutoscaling;
  /** Absent when none is set. */
  readonly userConfig?: JsonValue;
  readonly isolation: "thread" | "process";
  readonly resources: NonNullable<DeploymentOptions["resources"]>;
  readonly healthCheckPeriodMs: number;
  readonly healthCheckTimeoutMs: number;
  readonly gracefulShutdownTimeoutMs: number;
}

export interface ResolvedAutoscaling {
  readonly minReplicas: number;
  readonly maxReplicas: number;
  readonly initialReplicas: number;
  readonly targetOngoingRequests: number;
  readonly upscaleDelayMs: number;
  readonly downscaleDelayMs: number;
  readonly lookBackPeriodMs: number;
  readonly smoothingFactor: number;
}

/** The defaults of DESIGN.md §4. */
export const DEFAULT_OPTIONS = {
  numReplicas: 1,
  maxOngoingRequests: 5,
  maxQueuedRequests: 100,
  // Off, as in Ray Serve: how long a wait is too long depends on the model, and a request
  // already has `requestTimeout`. Operators who want fast failure set it per deployment.
  maxQueueWait: "off",
  isolation: "thread",
  resources: { cpus: 1 },
  // Ray Serve checks every 10 s and waits 30 s, because there a health check queues behind
  // the actor's requests. Here a replica answers a check at once unless its event loop is
  // blocked, so a shorter wait still leaves room for a long synchronous step, and a hung
  // replica is replaced within about 45 s (3 failed checks in a row) instead of 120 s. A
  // check costs one message. (DESIGN.md §4's table still says 10 s and 30 s.)
  healthCheckPeriod: "5s",
  healthCheckTimeout: "10s",
  gracefulShutdownTimeout: "20s",
} as const satisfies DeploymentOptions;

/** The most replicas one deployment may ask for (numReplicas, autoscaling's bounds). */
export const MAX_REPLICAS = 1024;

const DEFAULT_AUTOSCALING = {
  minReplicas: 1,
  maxReplicas: 1,
  targetOngoingRequests: 2,
  upscaleDelay: "30s",
  downscaleDelay: "10m",
  lookBackPeriod: "30s",
  smoothingFactor: 1,
} as const;

/**
 * Checks options against the schema (in the serving process; replicas skip it). `where` names what the options belong to (for the
 * error message). Throws {@link OptionsError} listing every failing field.
 */
export function validateOptions(options: unknown, where: string): DeploymentOptions {
  // A replica runs the same module the serving process has validated; it checks nothing.
  if (inReplicaContext()) return options as DeploymentOptions;
  const result = optionsSchemas().deploymentOptionsSchema.safeParse(options);
  if (result.success) return options as DeploymentOptions;
  const lines = result.error.issues.map((issue) => {
    const path = issue.path.map(String).join(".");
    return `  - ${path || "(options)"}: ${issue.message}`;
  });
  throw new OptionsError(`Invalid options for ${where}:\n${lines.join("\n")}`);
}

/**
 * `over` on top of `base`: each field `over` sets replaces the one in `base` (an object whole),
 * and the replica count is decided by the later of the two: `numReplicas` in `over` turns off
 * autoscaling `base` set, and `autoscaling` in `over` replaces a `numReplicas` of `base`.
 */
export function mergeOptions(base: DeploymentOptions, over: DeploymentOptions): DeploymentOptions {
  const merged: DeploymentOptions = { ...base, ...over };
  if (over.numReplicas !== undefined) delete merged.autoscaling;
  if (over.autoscaling !== undefined) delete merged.numReplicas;
  return merged;
}

/** Fills defaults and converts durations: done once, when an application is built. */
export function resolveOptions(options: DeploymentOptions): ResolvedDeploymentOptions {
  const d = DEFAULT_OPTIONS;
  const a = options.autoscaling;
  let autoscaling: ResolvedAutoscaling | undefined;
  if (a) {
    const minReplicas = a.minReplicas ?? DEFAULT_AUTOSCALING.minReplicas;
    const maxReplicas = a.maxReplicas ?? Math.max(minReplicas, DEFAULT_AUTOSCALING.maxReplicas);
    autoscaling = {
      minReplicas,
      maxReplicas,
      initialReplicas: a.initialReplicas ?? minReplicas,
      targetOngoingRequests: a.targetOngoingRequests ?? DEFAULT_AUTOSCALING.targetOngoingRequests,
      upscaleDelayMs: toMilliseconds(a.upscaleDelay ?? DEFAULT_AUTOSCALING.upscaleDelay),
      downscaleDelayMs: toMilliseconds(a.downscaleDelay ?? DEFAULT_AUTOSCALING.downscaleDelay),
      lookBackPeriodMs: toMilliseconds(a.lookBackPeriod ?? DEFAULT_AUTOSCALING.lookBackPeriod),
      smoothingFactor: a.smoothingFactor ?? DEFAULT_AUTOSCALING.smoothingFactor,
    };
  }
  return {
    numReplicas: options.numReplicas ?? d.numReplicas,
    maxOngoingRequests: options.maxOngoingRequests ?? d.maxOngoingRequests,
    maxQueuedRequests: options.maxQueuedRequests ?? d.maxQueuedRequests,
    ...(options.maxQueueWait !== undefined &&
      options.maxQueueWait !== "off" && { maxQueueWaitMs: toMilliseconds(options.maxQueueWait) }),
    ...(autoscaling && { autoscaling }),
    // null (a YAML key left empty) is no config, as in Ray Serve: reconfigure() never sees it.
    ...(options.userConfig !== undefined &&
      options.userConfig !== null && { userConfig: options.userConfig }),
    isolation: options.isolation ?? d.isolation,
    resources: options.resources ?? d.resources,
    healthCheckPeriodMs: toMilliseconds(options.healthCheckPeriod ?? d.healthCheckPeriod),
    healthCheckTimeoutMs: toMilliseconds(options.healthCheckTimeout ?? d.healthCheckTimeout),
    gracefulShutdownTimeoutMs: toMilliseconds(
      options.gracefulShutdownTimeout ?? d.gracefulShutdownTimeout,
    ),
  };
}
