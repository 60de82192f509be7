/**
 * @internal In-process execution of a graph (`node.execute(input)`). Class instances are
 * created once per graph, on the first execution, and reused until `dispose()`; handles
 * bound into constructors call those instances directly.
 */
import { GraphExecutionError, ValidationError, type ValidationIssue } from "../errors.js";
import { compileGraph, initValue, type CompiledGraph } from "./compile.js";
import { handleProxy } from "./handle.js";
import { runPlan, type CallStep } from "./run-plan.js";
import type { NodeState } from "./state.js";
import type { ZodType } from "zod";
import { isAsyncIterable, isPromiseLike } from "../values.js";

type Callable = (...args: unknown[]) => unknown;
type Instance = Record<string, unknown>;

/** `a.b[0].c` from a zod issue path. */
function formatPath(path: readonly PropertyKey[]): string {
  return path
    .map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`))
    .join("");
}

/**
 * Parses the input with the InputNode's schema, synchronously when the schema allows;
 * throws (or rejects) a ValidationError with every failing path.
 */
export function validateInput(graph: CompiledGraph, input: unknown): unknown {
  const schema = graph.input?.schema;
  if (!schema) return input;
  const result = needsAsync.has(schema)
    ? schema.safeParseAsync(input)
    : parseSyncFirst(schema, input);
  return result instanceof Promise ? result.then(finishValidation) : finishValidation(result);
}

/** Schemas with async parts (an image decoder): parsed with safeParseAsync from then on. */
const needsAsync = new WeakSet<ZodType>();

type ParseResult = ReturnType<ZodType["safeParse"]>;

/** A synchronous parse is cheaper; a schema that turns out to be async is parsed async. */
function parseSyncFirst(schema: ZodType, input: unknown): ParseResult | Promise<ParseResult> {
  try {
    return schema.safeParse(input);
  } catch {
    // safeParse reports bad input in its result; a throw means an async part (a transform
    // that returns a promise). Parse async from now on (a real error is thrown again there).
    needsAsync.add(schema);
    return schema.safeParseAsync(input);
  }
}

function finishValidation(result: ParseResult): unknown {
  if (result.success) return result.data;
  const issues: ValidationIssue[] = result.error.issues.map((issue) => ({
    path: formatPath(issue.path),
    message: issue.message,
  }));
  throw new ValidationError(issues);
}

/** Wraps errors of a stream's items so they name the deployment too. */
async function* wrapStream(
  name: string,
  label: string,
  stream: AsyncIterable<unknown>,
): AsyncGenerator<unknown> {
  try {
    yield* stream;
  } catch (error) {
    throw new GraphExecutionError(name, label, error);
  }
}

/**
 * Calls user code, turning a throw, a rejection or a failing stream into a
 * GraphExecutionError that names the deployment and method.
 */
function invoke(name: string, label: string, fn: unknown, self: unknown, args: unknown[]): unknown {
  if (typeof fn !== "function") {
    return Promise.reject(
      new GraphExecutionError(
        name,
        label,
        new TypeError(`deployment "${name}" has no method ${label}`),
      ),
    );
  }
  let result: unknown;
  try {
    result = (fn as Callable).apply(self, args);
  } catch (error) {
    return Promise.reject(new GraphExecutionError(name, label, error));
  }
  // A thenable first (a handle's response is both thenable and iterable), then a stream.
  if (isAsyncIterable(result) && !isPromiseLike(result)) {
    return wrapStream(name, label, result);
  }
  return Promise.resolve(result).then(
    (value) => (isAsyncIterable(value) ? wrapStream(name, label, value) : value),
    (error: unknown) => {
      throw new GraphExecutionError(name, label, error);
    },
  );
}

/** A local `DeploymentHandle`: each method calls the instance directly. */
function localHandle(name: string, instance: Instance): unknown {
  return handleProxy(
    name,
    (method, args) =>
      Promise.resolve(invoke(name, `${method}()`, instance[method], instance, args)),
    {},
    true,
  );
}

interface Live {
  readonly instances: Map<string, Instance>;
  readonly handles: Map<string, unknown>;
  /** Executions using these instances; `dispose()` waits for them. */
  running: number;
  drained: (() => void) | undefined;
}

export class LocalExecutor {
  readonly #graph: CompiledGraph;
  /** Function deployments by name, with how errors name them. */
  readonly #functions: ReadonlyMap<string, { fn: Callable; label: string }>;
  #live: Promise<Live> | undefined;

  constructor(graph: CompiledGraph) {
    this.#graph = graph;
    this.#functions = new Map(
      graph.deployments
        .filter((d) => d.deployment.kind === "function")
        .map((d) => [
          d.name,
          { fn: d.deployment.target, label: `${d.deployment.sourceName || d.name}()` },
        ]),
    );
  }

  async execute(input: unknown): Promise<unknown> {
    const value = await validateInput(this.#graph, input);
    const live = await (this.#live ?? this.#startOnce());
    live.running++;
    try {
      return await runPlan(this.#graph, value, {
        call: (step: CallStep, args) => this.#call(live, step, args),
        handle: (deployment) => live.handles.get(deployment),
      });
    } finally {
      if (--live.running === 0) live.drained?.();
    }
  }

  #call(live: Live, step: CallStep, args: unknown[]): unknown {
    if (step.method === undefined) {
      const { fn, label } = this.#functions.get(step.deployment)!;
      return invoke(step.deployment, label, fn, undefined, args);
    }
    const instance = live.instances.get(step.deployment)!;
    return invoke(step.deployment, `${step.method}()`, instance[step.method], instance, args);
  }

  /** Starts the instances; a failed start is forgotten so the next execution tries again. */
  #startOnce(): Promise<Live> {
    const starting = this.#start();
    this.#live = starting;
    starting.catch(() => {
      if (this.#live === starting) this.#live = undefined;
    });
    return starting;
  }

  /** Creates every class instance in dependency order, then runs `reconfigure(userConfig)`. */
  async #start(): Promise<Live> {
    const live: Live = { instances: new Map(), handles: new Map(), running: 0, drained: undefined };
    try {
      for (const spec of this.#graph.deployments) {
        if (spec.deployment.kind !== "class") continue;
        const args = spec.init.map((arg) =>
          initValue(arg, (deployment) => live.handles.get(deployment)),
        );
        const Class = spec.deployment.target as unknown as new (...args: unknown[]) => Instance;
        let instance: Instance;
        try {
          instance = new Class(...args);
        } catch (error) {
          throw new GraphExecutionError(spec.name, "constructor", error);
        }
        live.instances.set(spec.name, instance);
        live.handles.set(spec.name, localHandle(spec.name, instance));
        const userConfig = spec.deployment.config.userConfig;
        if (userConfig !== undefined && typeof instance.reconfigure === "function") {
          try {
            await (instance.reconfigure as Callable)(userConfig);
          } catch (error) {
            throw new GraphExecutionError(spec.name, "reconfigure()", error);
          }
        }
      }
    } catch (error) {
      await closeAll(live).catch(() => undefined);
      throw error;
    }
    return live;
  }

  /**
   * Lets running executions finish, then calls `close()` on every instance in reverse order
   * of creation. The next execution creates new instances. Safe to call twice.
   */
  async dispose(): Promise<void> {
    const starting = this.#live;
    this.#live = undefined;
    const live = await starting?.catch(() => undefined);
    if (!live) return;
    if (live.running > 0) await new Promise<void>((resolve) => (live.drained = resolve));
    await closeAll(live);
  }
}

async function closeAll(live: Live | undefined): Promise<void> {
  if (!live) return;
  let firstError: GraphExecutionError | undefined;
  for (const [name, instance] of [...live.instances].reverse()) {
    if (typeof instance.close !== "function") continue;
    try {
      await (instance.close as Callable)();
    } catch (error) {
      firstError ??= new GraphExecutionError(name, "close()", error);
    }
  }
  live.instances.clear();
  if (firstError) throw firstError;
}

const executors = new WeakMap<NodeState, LocalExecutor>();

/** The executor of the graph ending at `root`, compiled on first use and kept with the node. */
export function executorFor(root: NodeState): LocalExecutor {
  let executor = executors.get(root);
  if (!executor) {
    executor = new LocalExecutor(compileGraph(root));
    executors.set(root, executor);
  }
  return executor;
}

export async function disposeExecutor(root: NodeState): Promise<void> {
  await executors.get(root)?.dispose();
}
