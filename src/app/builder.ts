/**
 * Application builders, as in Ray Serve: a function of arguments that returns an
 * Application, served with `tributary run ./app.ts:builder --arg key=value` or with an
 * `args:` map in `serve.yaml`. `appBuilder(schema, fn)` gives the builder a zod schema that
 * the arguments are checked against (and coerced by) before it runs. Replicas rebuild the
 * same graph from the same arguments (see builder-entry.ts).
 */
import type { z } from "zod";
import { ValidationError, type ValidationIssue } from "../errors.js";
import { Application } from "./application.js";

/** The arguments of a builder, as the CLI (`--arg`) and `serve.yaml` (`args:`) give them. */
export type BuilderArgs = Readonly<Record<string, unknown>>;

/** A builder made by {@link appBuilder}: callable, with the schema of its arguments. */
export type ApplicationBuilder<Args, In, Out> = ((args: Args) => Application<In, Out>) & {
  /** The zod schema the arguments are checked against. */
  readonly argsSchema: z.ZodType;
};

const SCHEMA = Symbol.for("tributary.builderArgsSchema");

/**
 * Makes an application builder whose arguments are checked against a zod schema: a bad
 * argument is an error that names it (`--arg replicas` / `args.replicas`), before any
 * graph is built. Values given with `--arg` arrive parsed as YAML scalars (`2` a number,
 * `true` a boolean, anything else a string), as they would be under `args:`.
 *
 * @example
 * export const builder = appBuilder(
 *   z.object({ modelPath: z.string(), replicas: z.number().int().positive().default(1) }),
 *   ({ modelPath, replicas }) => build(Model.options({ numReplicas: replicas }).bind(modelPath).predict.bind(new InputNode<number[]>())),
 * );
 */
export function appBuilder<S extends z.ZodType, In, Out>(
  schema: S,
  build: (args: z.output<S>) => Application<In, Out>,
): ApplicationBuilder<z.input<S>, In, Out> {
  const builder = (args: z.input<S>): Application<In, Out> =>
    build(parseArgs(schema, args) as z.output<S>);
  Object.defineProperty(builder, SCHEMA, { value: schema });
  Object.defineProperty(builder, "argsSchema", { value: schema, enumerable: true });
  return builder as ApplicationBuilder<z.input<S>, In, Out>;
}

/** Checks arguments against a builder's schema; ValidationError with each bad argument's path. */
function parseArgs(schema: z.ZodType, args: unknown): unknown {
  const result = schema.safeParse(args);
  if (result.success) return result.data;
  const issues: ValidationIssue[] = result.error.issues.map((issue) => ({
    path: issue.path.map(String).join("."),
    message: issue.message,
  }));
  throw new ValidationError(issues, "The builder's arguments failed its schema");
}

/** Whether an export is a function that may be a builder (not a class, not an application). */
export function isBuilder(value: unknown): value is (args: BuilderArgs) => unknown {
  return (
    typeof value === "function" && !/^class[\s{]/.test(Function.prototype.toString.call(value))
  );
}

/**
 * Calls a builder with `args` (checked against its schema, if it has one) and returns the
 * Application it builds. ValidationError for bad arguments (paths relative to `args`);
 * Error when it returns something else.
 */
export async function callBuilder(
  builder: (args: BuilderArgs) => unknown,
  args: BuilderArgs,
  label: string,
): Promise<Application> {
  const schema = (builder as { [SCHEMA]?: z.ZodType })[SCHEMA];
  // appBuilder's function checks its own arguments; a plain builder gets them as given.
  if (schema) parseArgs(schema, args);
  const app: unknown = await builder(args);
  if (!(app instanceof Application)) {
    throw new Error(
      `the builder ${label} returned ${app === null ? "null" : typeof app}, not an application; return build(...) from it.`,
    );
  }
  return app;
}
