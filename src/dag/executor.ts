/**
 * @internal In-process execution of a graph (`node.execute(input)`). Class instances are
 * created once per graph, on the first execution, and reused until `dispose()`; handles
 * bound into constructors call those instances directly.
 */
import { GraphExecutionError, ValidationError, type ValidationIssue } from "../errors.js";
import { compileGraph, type CompiledGraph } from "./compile.js";
import { runPlan, type CallStep } from "./run-plan.js";
import type { NodeState } from "./state.js";

type Callable = (...args: unknown[]) => unknown;
type Instance = Record<string, unknown>;

function isAsyncIterable(value: unknown): boolean {
  return typeof value === "object" && value !== null && Symbol.asyncIterator in value;
}

/** `a.b[0].c` from a zod issue path. */
function formatPath(path: readonly PropertyKey[]): string {
  return path
    .map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`))
    .join("");
}

/** Parses the input with the InputNode's schema; rejects with every failing path. */
export async function validateInput(graph: CompiledGraph, input: unknown): Promise<unknown> {
  const schema = graph.input?.schema;
  if (!schema) return input;
  const result = await schema.safeParseAsync(input);
  if (result.success) return result.data;
  const issues: ValidationIssue[] = result.error.issues.map((issue) => ({
    path: formatPath(issue.path),
    message: issue.message,
  }));
  throw new ValidationError(issues);
}

/** Calls `method` of a live instance, wrapping a failure so it names the deployment. */
function invoke(name: string, target: Instance, method: string, args: unknown[]): unknown {
  const fn = target[method];
  if (typeof fn !== "function") {
    return Promise.reject(
      new GraphExecutionError(
        name,
        `${method}()`,
        new TypeError(`deployment "${name}" has no method "${method}"`),
      ),
    );
  }
  const wrap = (error: unknown): never => {
    throw new GraphExecutionError(name, `${method}()`, error);
  };
  let result: unknown;
  try {
    result = (fn as Callable).apply(target, args);
  } catch (error) {
    return Promise.reject(new GraphExecutionError(name, `${method}()`, error));
  }
  if (isAsyncIterable(result)) return result;
  return Promise.resolve(result).catch(wrap);
}

/** A local `DeploymentHandle`: each method calls the instance directly. */
function localHandle(name: string, instance: Instance): unknown {
  const methods = new Map<string, Callable>();
  return new Proxy(
    {},
    {
      get(_target, key) {
        if (typeof key !== "string" || key === "then") return undefined;
        let method = methods.get(key);
        if (!method) {
          method = (...args: unknown[]) => invoke(name, instance, key, args);
          methods.set(key, method);
        }
        return method;
      },
    },
  );
}

interface Live {
  readonly instances: Map<string, Instance>;
  readonly handles: Map<string, unknown>;
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
    return runPlan(this.#graph, value, {
      call: (step: CallStep, args) => this.#call(live, step, args),
      handle: (deployment) => live.handles.get(deployment),
    });
  }

  #call(live: Live, step: CallStep, args: unknown[]): unknown {
    if (step.method === undefined) {
      const { fn, label } = this.#functions.get(step.deployment)!;
      try {
        const result = fn(...args);
        if (isAsyncIterable(result)) return result;
        return Promise.resolve(result).catch((error: unknown) => {
          throw new GraphExecutionError(step.deployment, label, error);
        });
      } catch (error) {
        throw new GraphExecutionError(step.deployment, label, error);
      }
    }
    return invoke(step.deployment, live.instances.get(step.deployment)!, step.method, args);
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
    const live: Live = { instances: new Map(), handles: new Map() };
    try {
      for (const spec of this.#graph.deployments) {
        if (spec.deployment.kind !== "class") continue;
        const args = spec.init.map((arg) =>
          arg.kind === "handle" ? live.handles.get(arg.deployment) : arg.value,
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

  /** Calls `close()` on every instance, in reverse order of creation. Safe to call twice. */
  async dispose(): Promise<void> {
    const live = this.#live;
    this.#live = undefined;
    if (!live) return;
    await closeAll(await live.catch(() => undefined));
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

/** The executor of the graph ending at `root`, compiled on first use. */
export function executorFor(root: NodeState): LocalExecutor {
  let executor = executors.get(root);
  if (!executor) {
    executor = new LocalExecutor(compileGraph(root));
    executors.set(root, executor);
  }
  return executor;
}

export async function disposeExecutor(root: NodeState): Promise<void> {
  const executor = executors.get(root);
  executors.delete(root);
  await executor?.dispose();
}
