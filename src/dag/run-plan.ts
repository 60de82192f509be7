/**
 * @internal Walks a compiled plan for one request. A step starts as soon as its last
 * dependency resolves, so independent branches run concurrently and a shared node runs
 * once. A step that only the arms of branches and splits need (not `always`) starts only
 * once one of them has chosen it. How a call is carried out (in-process, or through a
 * replica) is the caller's.
 */
import { GraphExecutionError, ValidationError } from "../errors.js";
import type { CompiledGraph, SplitStep, Step, StepArg } from "./compile.js";
import { pickArm } from "./weights.js";
import { isPromiseLike, isStream, stopStream } from "../values.js";

export type CallStep = Extract<Step, { op: "call" }>;
type BranchStep = Extract<Step, { op: "branch" }>;
export type { SplitStep };

/**
 * How calls are carried out; `context` is what `runPlan` was given for this request, so one
 * callbacks object serves every request.
 */
export interface PlanCallbacks<C = undefined> {
  /** Carries out a call step; may return a value or a promise. Errors should name the step. */
  call(step: CallStep, args: unknown[], context: C): unknown;
  /** The handle of a class deployment passed as a value. */
  handle(deployment: string): unknown;
  /**
   * The arm a split takes for this request (an index into `step.arms`); by default, at
   * random by the weights set in code.
   */
  choose?(step: SplitStep, context: C): number;
}

/** Per step of a gated graph: not needed yet, needed (waiting for its dependencies), started, done. */
const IDLE = 0;
const NEEDED = 1;
const STARTED = 2;
const DONE = 3;

/** Which steps every request needs, copied per request of a gated graph. */
const needTemplates = new WeakMap<CompiledGraph, Uint8Array>();

/** The arm step that a branch's selector value names; throws when it names none. */
function branchArm(step: BranchStep, steps: readonly Step[], value: unknown): number {
  const at = typeof value === "string" ? step.keys.indexOf(value) : -1;
  if (at >= 0) return step.arms[at]!;
  const selector = steps[step.from]!;
  const why =
    `${step.label} got ${typeof value === "string" ? `"${value}"` : String(value)}, ` +
    `which names none of its branches (${step.keys.map((k) => `"${k}"`).join(", ")})`;
  if (selector.op === "call") {
    throw new GraphExecutionError(selector.deployment, selector.label, new Error(why));
  }
  throw new ValidationError([{ path: selector.label.replace(/^input\.?/, ""), message: why }]);
}

/** How many dependencies each step waits for, copied per request. */
const depCounts = new WeakMap<CompiledGraph, Int32Array>();

/**
 * The error for a streamed result used as another step's input: a stream is consumed where
 * it is read (a deployment iterates it and passes its items on), so it can only be the
 * graph's output, or reach it through branches and splits.
 */
function streamPassedOn(step: Step, from: Step): GraphExecutionError | ValidationError {
  const why =
    `${from.label} returned a stream, which ${step.label} takes as an input; a stream can ` +
    `only be the graph's output: iterate it in a deployment and pass its items on instead`;
  if (from.op === "call")
    return new GraphExecutionError(from.deployment, from.label, new Error(why));
  return new ValidationError([{ path: from.label, message: why }]);
}

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
    let need: Uint8Array | undefined;
    if (graph.gated) {
      let needed = needTemplates.get(graph);
      if (!needed)
        needTemplates.set(graph, (needed = Uint8Array.from(steps, (s) => (s.always ? 1 : 0))));
      need = needed.slice();
    }
    /** The arm step each branch or split waits for (-1: none yet). */
    const chosen = need ? new Int32Array(steps.length).fill(-1) : undefined;
    let failed = false;

    let resolved = false;
    const fail = (error: unknown): void => {
      if (failed) return;
      failed = true;
      if (resolved) return;
      // Streams that steps returned for others to read are read by no one now.
      for (const value of values) stopStream(value);
      reject(error);
    };
    const complete = (index: number, value: unknown): void => {
      if (failed) {
        stopStream(value);
        return;
      }
      values[index] = value;
      if (index === root) {
        resolved = true;
        resolve(value);
        return;
      }
      const step = steps[index]!;
      if (need) {
        need[index] = DONE;
        for (const dependent of step.dependents) {
          if (--pending[dependent]! === 0 && need[dependent] === NEEDED) start(dependent);
        }
        for (const chooser of step.choosers) {
          if (chosen![chooser] === index) complete(chooser, value);
        }
        return;
      }
      for (const dependent of step.dependents) {
        if (--pending[dependent]! === 0) start(dependent);
      }
    };
    /** Marks a step and what it depends on as needed, starting those that are ready. */
    const require = (index: number): void => {
      if (need![index] !== IDLE) return;
      for (const dep of steps[index]!.deps) require(dep);
      if (failed) return;
      need![index] = NEEDED;
      if (pending[index] === 0) start(index);
    };
    /** A branch or split goes on as its chosen arm: when that arm's value is there. */
    const take = (index: number, arm: number): void => {
      require(arm);
      if (need![arm] === DONE) complete(index, values[arm]);
      else chosen![index] = arm;
    };
    const start = (index: number): void => {
      const step = steps[index]!;
      if (need) need[index] = STARTED;
      let result: unknown;
      try {
        if (step.op === "call" || step.op === "multi" || step.op === "attribute") {
          for (const dep of step.deps)
            if (isStream(values[dep])) throw streamPassedOn(step, steps[dep]!);
        }
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
          case "branch":
            take(index, branchArm(step, steps, values[step.from]));
            return;
          case "split": {
            const at = callbacks.choose
              ? callbacks.choose(step, context as C)
              : pickArm(step.weights);
            take(index, step.arms[at]!);
            return;
          }
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
