/**
 * @internal Walks a compiled plan for one request. A step starts as soon as its last
 * dependency resolves, so independent branches run concurrently and a shared node runs
 * once. How a call is carried out (in-process, or through a replica) is the caller's.
 */
import { ValidationError } from "../errors.js";
import type { CompiledGraph, Step, StepArg } from "./compile.js";
import { isPromiseLike } from "../values.js";

export type CallStep = Extract<Step, { op: "call" }>;

/**
 * How calls are carried out; `context` is what `runPlan` was given for this request, so one
 * callbacks object serves every request.
 */
export interface PlanCallbacks<C = undefined> {
  /** Carries out a call step; may return a value or a promise. Errors should name the step. */
  call(step: CallStep, args: unknown[], context: C): unknown;
  /** The handle of a class deployment passed as a value. */
  handle(deployment: string): unknown;
}

/** How many dependencies each step waits for, copied per request. */
const depCounts = new WeakMap<CompiledGraph, Int32Array>();

function resolveArgs(args: readonly StepArg[], values: unknown[]): unknown[] {
  const out = new Array<unknown>(args.length);
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    out[i] = arg.step < 0 ? arg.value : values[arg.step];
  }
  return out;
}

function readAttribute(step: Extract<Step, { op: "attribute" }>, parent: unknown): unknown {
  if (parent === null || (typeof parent !== "object" && typeof parent !== "function")) {
    throw new ValidationError([
      {
        path: step.label.replace(/^input\.?/, ""),
        message: `cannot read "${step.key}" of ${parent === null ? "null" : typeof parent}`,
      },
    ]);
  }
  return (parent as Record<string, unknown>)[step.key];
}

/** Runs the plan on an already validated input and resolves to the root step's value. */
export function runPlan<C = undefined>(
  graph: CompiledGraph,
  input: unknown,
  callbacks: PlanCallbacks<C>,
  context?: C,
): Promise<unknown> {
  const { steps, root } = graph;
  return new Promise((resolve, reject) => {
    const values = new Array<unknown>(steps.length);
    let template = depCounts.get(graph);
    if (!template) depCounts.set(graph, (template = Int32Array.from(steps, (s) => s.deps.length)));
    const pending = template.slice();
    let failed = false;

    const fail = (error: unknown): void => {
      if (failed) return;
      failed = true;
      reject(error);
    };
    const complete = (index: number, value: unknown): void => {
      if (failed) return;
      values[index] = value;
      if (index === root) {
        resolve(value);
        return;
      }
      for (const dependent of steps[index]!.dependents) {
        if (--pending[dependent]! === 0) start(dependent);
      }
    };
    const start = (index: number): void => {
      const step = steps[index]!;
      let result: unknown;
      try {
        switch (step.op) {
          case "input":
            result = input;
            break;
          case "attribute":
            result = readAttribute(step, values[step.from]);
            break;
          case "call":
            result = callbacks.call(step, resolveArgs(step.args, values), context as C);
            break;
          case "multi": {
            const items = resolveArgs(step.args, values);
            result = step.keys ? Object.fromEntries(step.keys.map((k, i) => [k, items[i]])) : items;
            break;
          }
          case "handle":
            result = callbacks.handle(step.deployment);
            break;
        }
      } catch (error) {
        fail(error);
        return;
      }
      if (isPromiseLike(result)) {
        result.then((value) => complete(index, value), fail);
      } else {
        complete(index, result);
      }
    };

    for (const source of graph.sources) {
      if (failed) break;
      start(source);
    }
  });
}
