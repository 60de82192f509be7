/**
 * @internal Which arguments of a graph's calls may move (transfer) their buffers to the
 * replica. A value moves only when nothing else will read it: produced by one step and
 * consumed by exactly one argument, all the way from where it came from. Bound constants
 * never move (the next request needs them again).
 */
import type { CompiledGraph, Step } from "./compile.js";

/** For each step, for each argument: whether its buffers may be transferred. */
export function transferPlan(graph: CompiledGraph): readonly (readonly boolean[])[] {
  const { steps } = graph;
  const consumers = new Array<number>(steps.length).fill(0);
  for (const step of steps) {
    if (step.op === "attribute") consumers[step.from]!++;
    if (step.op === "call" || step.op === "multi")
      for (const arg of step.args) if (arg.step >= 0) consumers[arg.step]!++;
  }
  const exclusive = new Array<boolean>(steps.length).fill(false);
  for (const step of steps) {
    const single = consumers[step.index] === 1;
    exclusive[step.index] = single && isExclusive(step, exclusive);
  }
  return steps.map((step) =>
    step.op === "call" ? step.args.map((arg) => arg.step >= 0 && exclusive[arg.step]!) : [],
  );
}

function isExclusive(step: Step, exclusive: readonly boolean[]): boolean {
  switch (step.op) {
    case "input":
    case "call":
      return true; // the caller's input, or a fresh result from a replica
    case "attribute":
      return exclusive[step.from]!;
    case "multi":
      // A bound constant inside a gathered value must never move.
      return step.args.every((arg) => arg.step >= 0 && exclusive[arg.step]!);
    case "handle":
    case "branch": // an arm's value may be read elsewhere too
    case "split":
      return false;
  }
}
