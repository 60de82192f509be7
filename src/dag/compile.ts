/**
 * @internal Compiles a graph once into an execution plan: nodes in topological order,
 * each step's arguments as indexes into the results of earlier steps, and the
 * deployments with their final names. Misuse is reported here, naming the node.
 */
import { GraphBuildError } from "../errors.js";
import { whyNotCloneable } from "./cloneable.js";
import type { DeploymentImpl } from "./deployment-impl.js";
import { describeNode, shortLabel } from "./label.js";
import { assignNames } from "./naming.js";
import {
  childrenOf,
  nestedNodes,
  withoutNestedNodes,
  stateOf,
  type ClassState,
  type CallState,
  type InputState,
  type NodeState,
} from "./state.js";
import type { InitArg } from "../wire/protocol.js";

export type { InitArg };

/** The constructor argument itself, with `handleOf(deployment)` where handles go. */
export function initValue(arg: InitArg, handleOf: (deployment: string) => unknown): unknown {
  switch (arg.kind) {
    case "value":
      return arg.value;
    case "handle":
      return handleOf(arg.deployment);
    case "nested": {
      const root = structuredClone(arg.value);
      for (const { path, deployment } of arg.handles) {
        let parent = root as Record<string | number, unknown>;
        for (const key of path.slice(0, -1)) parent = parent[key] as typeof parent;
        parent[path.at(-1)!] = handleOf(deployment);
      }
      return root;
    }
  }
}

/** One deployment of the graph: a bound class, or one call of a function deployment. */
export interface DeploymentSpec {
  readonly name: string;
  readonly deployment: DeploymentImpl;
  /** The class node, or the function's call node. */
  readonly node: ClassState | CallState;
  /** Constructor arguments (class deployments only). */
  readonly init: readonly InitArg[];
  /** Methods the graph calls on it (class deployments only). */
  readonly methods: readonly string[];
}

/** An argument of a step: the result of step `step`, or the bound `value` when `step` is -1. */
export interface StepArg {
  readonly step: number;
  readonly value: unknown;
}

interface StepBase {
  readonly index: number;
  /** Steps whose results this one needs (no duplicates). */
  readonly deps: readonly number[];
  /** Steps that need this one's result. */
  readonly dependents: number[];
  /** How errors name this step: `m1.forward()`, `input.image`. */
  readonly label: string;
  /**
   * Whether every request runs this step. A step that only the arms of branches or splits
   * need runs when one of them chooses it (and not otherwise).
   */
  readonly always: boolean;
  /** Branch and split steps that have this step as an arm. */
  readonly choosers: number[];
}

export type Step = StepBase &
  (
    | { readonly op: "input" }
    | { readonly op: "attribute"; readonly from: number; readonly key: string }
    | {
        readonly op: "call";
        readonly deployment: string;
        /** `undefined` for a function deployment. */
        readonly method: string | undefined;
        readonly args: readonly StepArg[];
      }
    | {
        readonly op: "multi";
        readonly keys: readonly string[] | undefined;
        readonly args: readonly StepArg[];
      }
    | { readonly op: "handle"; readonly deployment: string }
    | {
        readonly op: "branch";
        /** The step whose value (a key of `keys`) chooses the arm. */
        readonly from: number;
        readonly keys: readonly string[];
        /** The step of each arm, in the order of `keys`. */
        readonly arms: readonly number[];
      }
    | {
        readonly op: "split";
        readonly name: string;
        readonly keys: readonly string[];
        readonly arms: readonly number[];
        /** The weights set in code (a served application's configuration may change them). */
        readonly weights: readonly number[];
        readonly stickyHeader: string | undefined;
      }
  );

export type SplitStep = Extract<Step, { op: "split" }>;

export interface CompiledGraph {
  readonly steps: readonly Step[];
  /** The step whose result is the graph's result (always the last). */
  readonly root: number;
  /** Steps with no dependencies that every request runs: where a run starts. */
  readonly sources: readonly number[];
  /** Whether some steps run only when a branch or split chooses them. */
  readonly gated: boolean;
  /** The graph's splits, by name. */
  readonly splits: ReadonlyMap<string, SplitStep>;
  readonly input: InputState | undefined;
  readonly deployments: readonly DeploymentSpec[];
  /** Every node in topological order, and the step and deployment name of each. */
  readonly nodes: readonly NodeState[];
  readonly stepOf: ReadonlyMap<NodeState, number>;
  readonly nameOf: ReadonlyMap<NodeState, string>;
}

/** Depth-first post-order from the root; throws on a cycle, naming the nodes on it. */
function topologicalOrder(root: NodeState): NodeState[] {
  const state = new Map<NodeState, "visiting" | "done">([[root, "visiting"]]);
  const order: NodeState[] = [];
  const stack = [{ node: root, children: childrenOf(root), next: 0 }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const child = top.children[top.next++];
    if (child === undefined) {
      state.set(top.node, "done");
      order.push(top.node);
      stack.pop();
      continue;
    }
    const seen = state.get(child);
    if (seen === "visiting") {
      const from = stack.findIndex((frame) => frame.node === child);
      const cycle = [...stack.slice(from).map((frame) => frame.node), child];
      throw new GraphBuildError(
        `The graph has a cycle: ${cycle.map((n) => describeNode(n)).join(" -> ")}. ` +
          `A step cannot depend on its own result; remove one of these bindings.`,
      );
    }
    if (seen === undefined) {
      state.set(child, "visiting");
      stack.push({ node: child, children: childrenOf(child), next: 0 });
    }
  }
  return order;
}

function checkConstructorArgs(node: ClassState): void {
  const bound = node.args.flatMap((arg, i) => {
    const s = stateOf(arg);
    if (s !== undefined) return [{ argState: s, at: `${i}` }];
    return nestedNodes(arg).map((n) => ({
      argState: n.state,
      at: `${i}${n.path.map((k) => (typeof k === "number" ? `[${k}]` : `.${k}`)).join("")}`,
    }));
  });
  bound.forEach(({ argState, at }) => {
    if (argState.kind === "class") return;
    const where = `argument ${at} of the constructor of ${describeNode(node)}`;
    if (argState.kind === "input" || argState.kind === "attribute") {
      throw new GraphBuildError(
        `${describeNode(argState)} is bound into ${where}. An InputNode cannot be bound into a constructor: ` +
          `constructors run once per replica, not per request. Pass the input to a method instead ` +
          `(${node.deployment.name}.someMethod.bind(${shortLabel(argState)})).`,
      );
    }
    throw new GraphBuildError(
      `${describeNode(argState)} is bound into ${where}. Constructors run once per replica, so only ` +
        `plain values and class nodes (which arrive as DeploymentHandles) can be bound there; ` +
        `pass per-request results to a method instead.`,
    );
  });
}

function checkBoundValues(node: NodeState): void {
  if (node.kind !== "call" && node.kind !== "class" && node.kind !== "multi") return;
  node.args.forEach((arg, i) => {
    if (stateOf(arg) !== undefined) return;
    const root = node.kind === "multi" && node.keys ? `output "${node.keys[i]}"` : `argument ${i}`;
    // Class nodes nested in a constructor argument arrive as handles (checked above).
    const why = whyNotCloneable(node.kind === "class" ? withoutNestedNodes(arg) : arg, root);
    if (why !== undefined) {
      throw new GraphBuildError(
        `${describeNode(node)}: ${why}. Bound arguments must be plain data (numbers, strings, ` +
          `arrays, plain objects, typed arrays, Map, Set, Date); create anything else inside the deployment.`,
      );
    }
  });
}

/**
 * Checks the graph ending at `root` and compiles it into an execution plan. `names` gives
 * explicit names to the deployments of some nodes (as `build(node, { names })` does).
 */
export function compileGraph(
  root: NodeState,
  names?: ReadonlyMap<NodeState, string>,
): CompiledGraph {
  if (root.kind === "class") {
    throw new GraphBuildError(
      `${describeNode(root)} is a class node, which cannot be executed or built by itself: ` +
        `bind one of its methods (node.method.bind(...)) and use that node.`,
    );
  }
  const nodes = topologicalOrder(root);

  const inputs = nodes.filter((n): n is InputState => n.kind === "input");
  if (inputs.length > 1) {
    throw new GraphBuildError(
      `The graph ending at ${describeNode(root)} uses ${inputs.length} InputNodes: ` +
        `${inputs.map((n) => describeNode(n)).join(", ")}. A graph has a single InputNode; ` +
        `read the parts of the input with attribute access (input.image, input[0]).`,
    );
  }
  for (const node of nodes) {
    if (node.kind === "class") checkConstructorArgs(node);
    checkBoundValues(node);
  }

  const nameOf = assignNames(
    nodes.filter(
      (n): n is ClassState | CallState =>
        n.kind === "class" || (n.kind === "call" && n.instance === undefined),
    ),
    names,
  );
  const deploymentName = (node: ClassState | CallState): string =>
    nameOf.get(node.kind === "call" && node.instance ? node.instance : node)!;

  // Class nodes become steps only where their handle is passed as a value.
  const usedAsValue = new Set<NodeState>();
  for (const node of nodes) {
    if (node.kind === "call" || node.kind === "multi") {
      for (const arg of node.args) {
        const s = stateOf(arg);
        if (s?.kind === "class") usedAsValue.add(s);
      }
    }
  }

  const steps: Step[] = [];
  const stepOf = new Map<NodeState, number>();
  const splits = new Map<string, SplitStep>();
  const splitNodes = new Map<string, NodeState>();
  const toArgs = (args: readonly unknown[]): StepArg[] =>
    args.map((arg) => {
      const s = stateOf(arg);
      return s === undefined
        ? { step: -1, value: arg }
        : { step: stepOf.get(s)!, value: undefined };
    });
  const depsOf = (args: readonly StepArg[]): number[] => [
    ...new Set(args.filter((a) => a.step >= 0).map((a) => a.step)),
  ];

  for (const node of nodes) {
    if (node.kind === "class" && !usedAsValue.has(node)) continue;
    const index = steps.length;
    const base = { index, dependents: [] as number[], always: false, choosers: [] as number[] };
    switch (node.kind) {
      case "input":
        steps.push({ ...base, op: "input", deps: [], label: "InputNode" });
        break;
      case "attribute": {
        const from = stepOf.get(node.parent)!;
        steps.push({
          ...base,
          op: "attribute",
          from,
          key: node.key,
          deps: [from],
          label: shortLabel(node),
        });
        break;
      }
      case "call": {
        const args = toArgs(node.args);
        const name = deploymentName(node);
        steps.push({
          ...base,
          op: "call",
          deployment: name,
          method: node.method,
          args,
          deps: depsOf(args),
          label: shortLabel(node, name),
        });
        break;
      }
      case "multi": {
        const args = toArgs(node.args);
        steps.push({
          ...base,
          op: "multi",
          keys: node.keys,
          args,
          deps: depsOf(args),
          label: shortLabel(node),
        });
        break;
      }
      case "class": {
        const name = deploymentName(node);
        steps.push({
          ...base,
          op: "handle",
          deployment: name,
          deps: [],
          label: shortLabel(node, name),
        });
        break;
      }
      case "branch": {
        const from = stepOf.get(node.selector)!;
        steps.push({
          ...base,
          op: "branch",
          from,
          keys: node.keys,
          arms: node.arms.map((arm) => stepOf.get(arm)!),
          deps: [from],
          label: shortLabel(node),
        });
        break;
      }
      case "split": {
        const other = splitNodes.get(node.name);
        if (other) {
          throw new GraphBuildError(
            `Two splits are both named "${node.name}": ${describeNode(other)} and ${describeNode(node)}. ` +
              `serve.yaml addresses a split's weights by its name, so names must be unique in a graph.`,
          );
        }
        const step: SplitStep = {
          ...base,
          op: "split",
          name: node.name,
          keys: node.keys,
          arms: node.arms.map((arm) => stepOf.get(arm)!),
          weights: node.weights,
          stickyHeader: node.stickyHeader,
          deps: [],
          label: shortLabel(node),
        };
        steps.push(step);
        splits.set(node.name, step);
        splitNodes.set(node.name, node);
        break;
      }
    }
    stepOf.set(node, index);
  }
  for (const step of steps) {
    for (const dep of step.deps) steps[dep]!.dependents.push(step.index);
    if (step.op === "branch" || step.op === "split")
      for (const arm of step.arms) steps[arm]!.choosers.push(step.index);
  }
  // What every request runs: the root and, through dependencies (not arms), what it needs.
  const reach = steps.length > 0 ? [steps.length - 1] : [];
  for (let index = reach.pop(); index !== undefined; index = reach.pop()) {
    const step = steps[index] as { always: boolean; deps: readonly number[] };
    if (step.always) continue;
    step.always = true;
    reach.push(...step.deps);
  }

  const methodsOf = new Map<ClassState, Set<string>>();
  for (const node of nodes) {
    if (node.kind === "call" && node.instance && node.method !== undefined) {
      let methods = methodsOf.get(node.instance);
      if (!methods) methodsOf.set(node.instance, (methods = new Set()));
      methods.add(node.method);
    }
  }
  const deployments: DeploymentSpec[] = [];
  for (const node of nodes) {
    if (node.kind !== "class" && !(node.kind === "call" && node.instance === undefined)) continue;
    const init: InitArg[] =
      node.kind === "class"
        ? node.args.map((arg): InitArg => {
            const s = stateOf(arg);
            if (s?.kind === "class") return { kind: "handle", deployment: nameOf.get(s)! };
            const nested = nestedNodes(arg);
            if (nested.length === 0) return { kind: "value", value: arg };
            return {
              kind: "nested",
              value: withoutNestedNodes(arg),
              handles: nested.map((n) => ({
                path: n.path,
                deployment: nameOf.get(n.state as ClassState)!,
              })),
            };
          })
        : [];
    const methods = node.kind === "class" ? [...(methodsOf.get(node) ?? [])] : [];
    deployments.push({ name: nameOf.get(node)!, deployment: node.deployment, node, init, methods });
  }

  return {
    steps,
    root: steps.length - 1,
    sources: steps.filter((s) => s.deps.length === 0 && s.always).map((s) => s.index),
    gated: steps.some((s) => !s.always),
    splits,
    input: inputs[0],
    deployments,
    nodes,
    stepOf,
    nameOf,
  };
}
