/**
 * `branch()` and `split()`: graph nodes that run one of several subgraphs (KServe
 * InferenceGraph's Switch and Splitter). The subgraphs are nodes of the same graph, bound
 * to the graph's input like any other; what only a subgraph needs runs only when its arm
 * is chosen, so a deployment that lives only in an arm that is not chosen is not called.
 */
import { GraphBuildError } from "../errors.js";
import { DEPLOYMENT_NAME_PATTERN } from "../options.js";
import { userCallSite } from "./call-site.js";
import { NodeImpl } from "./node.js";
import { stateOf, type NodeState } from "./state.js";
import type { GraphNode, InputOf, OutputOf, Producer } from "./types.js";
import { checkWeights } from "./weights.js";

/** Subgraphs by key: each a node producing that arm's result. */
type Arms = Readonly<Record<string, Producer<unknown, unknown>>>;

/** The result of a branch or split: the union of its arms' results. */
export type ArmsOutput<A> = OutputOf<A[keyof A]>;
/** The graph input the arms depend on. */
export type ArmsInput<A> = InputOf<A[keyof A]>;

/** A node that runs one of its arms: a {@link branch} or a {@link split}. */
export type ChoiceNode<Out, In> = GraphNode<Out, In>;

/**
 * The graph input an arm may depend on: the selector's (an arm built on another InputNode's
 * type is a compile error), or any when the selector reads no input.
 */
type ArmInput<S> = [InputOf<S>] extends [never] ? unknown : InputOf<S>;

/** No keys beyond `Keys` (an arm the selector can never name is a mistake). */
type OnlyKeys<A, Keys extends PropertyKey> = A & { readonly [K in Exclude<keyof A, Keys>]: never };

/** How `split()` divides traffic. */
export interface SplitOptions<K extends string> {
  /**
   * The split's name, by which `serve.yaml` sets its weights (`splits: [{ name, weights }]`).
   * Letters, digits, `_`, `-` and `.`; unique in the graph.
   */
  readonly name: string;
  /** An integer weight from 0 to 100 per arm, summing to 100 (as KServe's Splitter). */
  readonly weights: { readonly [Key in K]: number };
  /**
   * Keep one caller on one arm: the arm is chosen by the 32-bit FNV-1a hash of this request
   * header's value (mod 100, mapped onto the weights). A request without the header, and a
   * local `execute()`, choose at random.
   */
  readonly sticky?: { readonly header: string };
}

function armStates(arms: unknown, caller: string): { keys: string[]; states: NodeState[] } {
  if (typeof arms !== "object" || arms === null || Array.isArray(arms)) {
    throw new GraphBuildError(
      `${caller} expects its arms as an object of nodes ({ a: nodeA, b: nodeB }).`,
    );
  }
  const keys = Object.keys(arms);
  if (keys.length < 1) throw new GraphBuildError(`${caller} needs at least one arm.`);
  const states = keys.map((key) => {
    const state = stateOf((arms as Record<string, unknown>)[key]);
    if (state === undefined || state.kind === "class") {
      throw new GraphBuildError(
        `${caller}: arm "${key}" is ${state ? "a class node" : "not a graph node"}; give each arm a node that produces its result (a call such as model.forward.bind(x)).`,
      );
    }
    return state;
  });
  return { keys, states };
}

/**
 * Runs exactly one of `arms`: the one whose key is the value of `selector` (a node, such
 * as a classifier's label). The result is the union of the arms' results. Steps that only
 * the other arms need do not run. A selector value that names no arm fails the request.
 *
 * @example
 * const label = classify.bind(input.image);                   // "photo" | "document"
 * const out = branch(label, { photo: vision.bind(input.image), document: ocr.bind(input.image) });
 */
export function branch<
  S extends Producer<string, unknown>,
  const A extends { readonly [K in OutputOf<S>]: Producer<unknown, ArmInput<S>> },
>(
  selector: S,
  arms: OnlyKeys<A, OutputOf<S>>,
): ChoiceNode<ArmsOutput<A>, InputOf<S> | ArmsInput<A>> {
  const site = userCallSite();
  const selectorState = stateOf(selector);
  if (selectorState === undefined || selectorState.kind === "class") {
    throw new GraphBuildError(
      `branch(selector, arms): the selector must be a node that produces an arm's key (a call or an attribute of the input).`,
    );
  }
  const { keys, states } = armStates(arms, "branch(selector, arms)");
  return new NodeImpl({
    kind: "branch",
    selector: selectorState,
    keys,
    arms: states,
    site,
  }) as unknown as ChoiceNode<ArmsOutput<A>, InputOf<S> | ArmsInput<A>>;
}

/**
 * Divides traffic between versions of a subgraph by weight, such as a canary:
 * `split({ stable, canary }, { name: "model", weights: { stable: 90, canary: 10 } })`.
 * Operators change the weights in `serve.yaml` (`splits:`), applied live by
 * `tributary deploy` without restarting a replica.
 *
 * @example
 * const out = split(
 *   { stable: v1.forward.bind(x), canary: v2.forward.bind(x) },
 *   { name: "model", weights: { stable: 90, canary: 10 }, sticky: { header: "x-user-id" } },
 * );
 */
export function split<const A extends Arms>(
  arms: A,
  options: SplitOptions<keyof A & string>,
): ChoiceNode<ArmsOutput<A>, ArmsInput<A>> {
  const site = userCallSite();
  const caller = `split(arms, { name: ${JSON.stringify(options?.name)} })`;
  if (typeof options?.name !== "string" || !DEPLOYMENT_NAME_PATTERN.test(options.name)) {
    throw new GraphBuildError(
      `${caller}: a split needs a name (letters, digits, '_', '-' or '.') by which serve.yaml sets its weights.`,
    );
  }
  const { keys, states } = armStates(arms, caller);
  const weights = checkWeights(options.name, keys, options.weights ?? {});
  const header = options.sticky?.header;
  if (
    header !== undefined &&
    (typeof header !== "string" || !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(header))
  ) {
    throw new GraphBuildError(
      `${caller}: sticky.header must be an HTTP header name, such as "x-user-id".`,
    );
  }
  return new NodeImpl({
    kind: "split",
    name: options.name,
    keys,
    arms: states,
    weights,
    stickyHeader: header?.toLowerCase(),
    site,
  }) as unknown as ChoiceNode<ArmsOutput<A>, ArmsInput<A>>;
}
