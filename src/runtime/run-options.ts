/**
 * @internal `run()`'s options checked before anything starts: in JavaScript nothing else
 * stops a misspelt key from being ignored, or a limit of the wrong type from turning the
 * limit off (`bodyLimit: "1mb"` compared as a string) or refusing every request
 * (`requestTimeout: 0`). Each problem is named by its key, as serve.yaml's are.
 */
import { OptionsError } from "../errors.js";
import { optionsSchemas } from "../options.js";
import { zod } from "../zod.js";
import type { RunOptions } from "./server.js";

/** pino's levels, and `silent`. */
const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/** Where each of serve.yaml's `http` settings goes in `run()`'s options. */
const HTTP_SETTINGS = [
  "host",
  "port",
  "bodyLimit",
  "readTimeout",
  "requestTimeout",
  "maxConnections",
];

function schema() {
  const z = zod();
  const { positiveDuration } = optionsSchemas();
  const port = z.number().int().min(0).max(65_535);
  const positiveInt = z.number().int().positive();
  return z
    .strictObject({
      host: z.string().min(1),
      port,
      grpc: z.strictObject({ port }).partial(),
      requestTimeout: positiveDuration,
      readTimeout: positiveDuration,
      bodyLimit: positiveInt,
      maxConnections: positiveInt,
      http: z.strictObject({ workers: z.number().int().min(1).max(64) }).partial(),
      metrics: z.boolean(),
      debug: z.boolean(),
      logLevel: z.enum(LOG_LEVELS),
      logStream: z.custom<{ write(line: string): void }>(
        (value) => typeof (value as { write?: unknown } | null)?.write === "function",
        "expected an object with a write(line) method, such as a stream",
      ),
      tracing: z.strictObject({ otlpEndpoint: z.string(), serviceName: z.string().optional() }),
      // Internal: the CLI's instance, a cluster's head, tests.
      metricsRegistry: z.unknown(),
      transports: z.unknown(),
      cluster: z.unknown(),
      frontDoors: z.literal(false),
      replicaNumbers: z.unknown(),
    })
    .partial();
}

let compiled: ReturnType<typeof schema> | undefined;

/** Options of run() that are not the user's to give (the CLI's instance, a cluster's head, tests). */
const INTERNAL = new Set([
  "metricsRegistry",
  "transports",
  "cluster",
  "frontDoors",
  "replicaNumbers",
]);

/** The options a user may give at `path` ("" for the top, else a nested object's key). */
function knownAt(options: ReturnType<typeof schema>, path: string): string[] {
  let at: unknown = options;
  for (const key of path === "" ? [] : path.split(".")) {
    const field = (at as { shape: Record<string, { unwrap?: () => unknown }> }).shape[key];
    at = field?.unwrap ? field.unwrap() : field;
  }
  const shape = (at as { shape?: Record<string, unknown> } | undefined)?.shape ?? {};
  return Object.keys(shape).filter((key) => !INTERNAL.has(key));
}
/** Throws `OptionsError` naming each option of `run()` that is unknown or out of range. */
export function checkRunOptions(options: RunOptions): void {
  if (typeof options !== "object" || options === null)
    throw new OptionsError("run()'s second argument must be an object of options.");
  const misplaced = Object.keys(options.http ?? {}).filter((key) => key !== "workers");
  if (misplaced.length > 0)
    throw new OptionsError(
      `run()'s http option takes only workers (it was given ${misplaced.join(", ")}). ` +
        `${HTTP_SETTINGS.join(", ")} are options of run() itself; serve.yaml nests them under http.`,
    );
  const checked = (compiled ??= schema());
  // undefined is as good as absent (options spread from a config with gaps).
  const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
  const result = checked.safeParse(given);
  if (result.success) return;
  const lines = result.error.issues.map((issue) => {
    const path = issue.path.map(String).join(".");
    if (issue.code === "unrecognized_keys") {
      const keys = issue.keys.map((key) => (path ? `${path}.${key}` : key)).join(", ");
      return `  - ${keys}: not an option of ${path ? `run()'s ${path}` : "run()"} (it takes ${knownAt(checked, path).join(", ")})`;
    }
    const value = issue.path.reduce<unknown>(
      (at, key) => (at as Record<PropertyKey, unknown> | undefined)?.[key],
      given,
    );
    const shown =
      typeof value === "number" && !Number.isFinite(value) ? String(value) : JSON.stringify(value);
    return `  - ${path}: ${issue.message} (it is ${shown ?? typeof value})`;
  });
  throw new OptionsError(`Invalid options for run():\n${lines.join("\n")}`);
}
