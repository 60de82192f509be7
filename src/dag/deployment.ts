/**
 * `deployment()`, `InputNode` and `MultiOutputNode` with their public types.
 */
import type { z } from "zod";
import type { DeploymentOptions } from "../options.js";
import { createDeployment } from "./deployment-impl.js";
import { InputNodeImpl, MultiOutputNodeImpl } from "./node.js";
import type {
  AnyClass,
  AnyFunction,
  ClassDeployment,
  FunctionDeployment,
  GraphNode,
  InputNode as InputNodeType,
  InputsOf,
  InputOf,
  MultiOutput,
} from "./types.js";

/**
 * Makes a function or a class a deployment: a unit that is bound into a graph and, when
 * served, runs in its own scaled set of replicas.
 *
 * @example
 * const preprocess = deployment(async function preprocess(image: Uint8Array) { … });
 * const Model = deployment(Classifier, { numReplicas: 2, maxOngoingRequests: 8 });
 * const m1 = Model.options({ name: "m1" }).bind("a.onnx");
 */
export function deployment<C extends AnyClass>(
  cls: C,
  options?: DeploymentOptions,
): ClassDeployment<C>;
export function deployment<F extends AnyFunction>(
  fn: F,
  options?: DeploymentOptions,
): FunctionDeployment<F>;
export function deployment(target: unknown, options?: DeploymentOptions): unknown {
  return createDeployment(target, options);
}

/** The `InputNode` constructor: untyped, typed by a type argument, or by a zod schema. */
export interface InputNodeConstructor {
  new <T = unknown>(): InputNodeType<T>;
  new <S extends z.ZodType>(schema: S): InputNodeType<z.output<S>, z.input<S>>;
  readonly prototype: GraphNode<unknown, unknown>;
}

/**
 * The graph's single input. `input.key` and `input[0]` are typed attribute nodes. With a
 * zod schema, every execution (and every served request) is validated against it.
 *
 * @example
 * const input = new InputNode(z.object({ image: z.instanceof(Uint8Array), id: z.string() }));
 * const x = preprocess.bind(input.image);
 */
export const InputNode = InputNodeImpl as unknown as InputNodeConstructor;
export type InputNode<Out = unknown, In = Out> = InputNodeType<Out, In>;

/** A node gathering several results into a tuple or an object. */
export type MultiOutputNode<Out, In> = GraphNode<Out, In>;

export interface MultiOutputNodeConstructor {
  new <const T extends readonly unknown[]>(items: T): MultiOutputNode<MultiOutput<T>, InputsOf<T>>;
  new <const T extends Readonly<Record<string, unknown>>>(
    items: T,
  ): MultiOutputNode<MultiOutput<T>, InputOf<T[keyof T]>>;
  readonly prototype: GraphNode<unknown, unknown>;
}

/**
 * Gathers several nodes' results: `new MultiOutputNode([a, b])` yields a tuple,
 * `new MultiOutputNode({ a, b })` an object.
 *
 * @example
 * const both = new MultiOutputNode({ score: ens, id: input.id });
 * await both.execute({ image, id: "42" }); // { score: …, id: "42" }
 */
export const MultiOutputNode = MultiOutputNodeImpl as unknown as MultiOutputNodeConstructor;
