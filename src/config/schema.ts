/**
 * The schema of `serve.yaml`: server settings and applications whose deployments override
 * the options set in code. Deployment options reuse the one options schema.
 */
import { z } from "zod";
import { optionsSchemas } from "../options.js";

const { deploymentOptionsSchema, positiveDuration } = optionsSchemas();
const port = z.number().int().min(0).max(65_535);

export const deploymentConfigSchema = deploymentOptionsSchema.required({ name: true });

export const applicationConfigSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$/, "expected letters, digits, '_', '-' or '.'"),
  routePrefix: z.string().startsWith("/", 'expected a path starting with "/"').optional(),
  /** `./app.ts` or `./app.ts:exportName`, relative to the config file. */
  importPath: z.string().min(1, "expected a module path such as ./app.ts:app"),
  /** Arguments of an application builder (`importPath` names a function returning build(...)). */
  args: z.record(z.string(), z.unknown()).optional(),
  deployments: z.array(deploymentConfigSchema).default([]),
  /** Weights of the graph's `split()`s, by name: applied live, without a restart. */
  splits: z
    .array(
      z.strictObject({
        name: z.string().min(1),
        weights: z.record(z.string(), z.number().int().min(0).max(100)),
      }),
    )
    .default([]),
});

export const serveConfigSchema = z.strictObject({
  http: z
    .strictObject({
      host: z.string().min(1),
      port,
      requestTimeout: positiveDuration,
      readTimeout: positiveDuration,
      bodyLimit: z
        .number({ error: "expected a number of bytes (1048576 is 1 MiB)" })
        .int()
        .positive(),
      maxConnections: z.number().int().positive(),
      /** Front-door worker processes sharing the port (1: the front door runs in the main thread). */
      workers: z.number().int().min(1).max(64),
    })
    .partial()
    .optional(),
  grpc: z.strictObject({ port }).partial().optional(),
  /** Export spans over OTLP/HTTP (for code that registers no OpenTelemetry SDK of its own). */
  tracing: z
    .strictObject({
      otlpEndpoint: z
        .string()
        .refine(
          (text) => /^https?:\/\//i.test(text) && URL.canParse(text),
          "expected an http(s) URL such as http://127.0.0.1:4318",
        ),
      serviceName: z.string().min(1).optional(),
    })
    .optional(),
  applications: z.array(applicationConfigSchema).min(1, "expected at least one application"),
});

export type ServeConfig = z.output<typeof serveConfigSchema>;
export type ApplicationConfigEntry = z.output<typeof applicationConfigSchema>;
