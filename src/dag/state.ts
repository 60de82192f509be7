/**
 * @internal The state behind every graph node. The objects users hold (some of them
 * Proxies, for `input.key` and `classNode.method`) keep their state under {@link STATE};
 * the compiler and executors work on states only.
 */
import type { ZodType } from "zod";
import type { CallSite } from "./call-site.js";
import type { DeploymentImpl } from "./deployment-impl.js";
import { isPlainObject } from "../values.js";

export const STATE: unique symbol = Symbol("tributary.node");

interface StateBase {
  /** Where user code created the node. */
  readonly site: CallSite | undefined;
}

export interface InputState extends StateBase {
  readonly kind: "input";
  readonly schema: ZodType | undefined;
}

export interface AttributeState extends StateBase {
  readonly kind: "attribute";
  readonly parent: NodeState;
  readonly key: string;
}

/** A call of a function deployment (`instance` undefined) or of a class node's method. */
export interface CallState extends StateBase {
  readonly kind: "call";
  readonly deployment: DeploymentImpl;
  readonly instance: ClassState | undefined;
  readonly method: string | undefined;
  readonly args: readonly unknown[];
}

export interface ClassState extends StateBase {
  readonly kind: "class";
  readonly deployment: DeploymentImpl;
  readonly args: readonly unknown[];
}

export interface MultiState extends StateBase {
  readonly kind: "multi";
  /** Property names for the object form; `undefined` for the array form. */
  readonly keys: readonly string[] | undefined;
  readonly args: readonly unknown[];
}

/**
 * A conditional branch: runs the arm whose key the selector's value is (`branch()`). The
 * arms are nodes of the same graph; what only an arm needs runs only when it is chosen.
 */
export interface BranchState extends StateBase {
  readonly kind: "branch";
  readonly selector: NodeState;
  readonly keys: readonly string[];
  readonly arms: readonly NodeState[];
}

/** A weighted split between versions of a subgraph (`split()`), named for `serve.yaml`. */
export interface SplitState extends StateBase {
  readonly kind: "split";
  readonly name: string;
  readonly keys: readonly string[];
  readonly arms: readonly NodeState[];
  /** The weights set in code, by arm (integers summing to 100). */
  readonly weights: readonly number[];
  /** The request header whose value keeps one caller on one arm. */
  readonly stickyHeader: string | undefined;
}

export type NodeState =
  InputState | AttributeState | CallState | ClassState | MultiState | BranchState | SplitState;

/** Anything carrying a node state: the objects users hold. */
export interface HasState {
  readonly [STATE]: NodeState;
}

/** The state of a node object, or `undefined` for a plain value. */
export function stateOf(value: unknown): NodeState | undefined {
  if ((typeof value !== "object" && typeof value !== "function") || value === null)
    return undefined;
  return (value as Partial<HasState>)[STATE];
}

/** How deep inside arrays and plain objects a constructor argument is searched for nodes. */
const NESTED_DEPTH = 4;

/**
 * Nodes nested in `value` (inside arrays and plain objects, a few levels deep), with the
 * path to each: class nodes in a constructor argument such as `[shard0, shard1]`.
 */
export function nestedNodes(
  value: unknown,
  path: (string | number)[] = [],
  out: { path: (string | number)[]; state: NodeState }[] = [],
): { path: (string | number)[]; state: NodeState }[] {
  if (typeof value !== "object" || value === null || path.length > NESTED_DEPTH) return out;
  const state = stateOf(value);
  if (state !== undefined) {
    if (path.length > 0) out.push({ path, state });
    return out;
  }
  if (Array.isArray(value)) {
    value.forEach((item, i) => nestedNodes(item, [...path, i], out));
  } else if (isPlainObject(value)) {
    for (const [key, item] of Object.entries(value)) nestedNodes(item, [...path, key], out);
  }
  return out;
}

/**
 * `value` with the nodes {@link nestedNodes} finds replaced by `null`, so the rest can be
 * sent to a replica. A node deeper than that search stays, and is reported as not sendable.
 */
export function withoutNestedNodes(value: unknown, depth = 0): unknown {
  if (depth > NESTED_DEPTH) return value;
  if (depth > 0 && stateOf(value) !== undefined) return null;
  if (Array.isArray(value)) return value.map((item) => withoutNestedNodes(item, depth + 1));
  if (isPlainObject(value) && stateOf(value) === undefined) {
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, withoutNestedNodes(item, depth + 1)]),
    );
  }
  return value;
}

/** The nodes a node depends on, in argument order (the instance first for a method call). */
export function childrenOf(state: NodeState): NodeState[] {
  switch (state.kind) {
    case "input":
      return [];
    case "attribute":
      return [state.parent];
    case "call": {
      const children = state.args.map(stateOf).filter((s): s is NodeState => s !== undefined);
      return state.instance ? [state.instance, ...children] : children;
    }
    case "class":
      // Class nodes may also sit inside an array or object argument: `[shard0, shard1]`.
      return state.args.flatMap((arg) => {
        const s = stateOf(arg);
        return s !== undefined ? [s] : nestedNodes(arg).map((n) => n.state);
      });
    case "multi":
      return state.args.map(stateOf).filter((s): s is NodeState => s !== undefined);
    case "branch":
      return [state.selector, ...state.arms];
    case "split":
      return [...state.arms];
  }
}
