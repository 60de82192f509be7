/**
 * The types that make `.bind()` checked end to end. A node is a {@link Producer} of a value
 * (`Out`) that depends on the graph's input (`In`, `never` when it does not); `bind()`
 * accepts, for each parameter `P`, either a `P` or a node producing a `P`, and the node it
 * returns carries the awaited result type and the union of its arguments' input types.
 *
 * `Out` and `In` live on phantom symbol keys that exist only in the type system.
 */
import type { DeploymentOptions } from "../options.js";

declare const outputKey: unique symbol;
declare const inputKey: unique symbol;
declare const classNodeKey: unique symbol;
declare const handleKey: unique symbol;

/** Anything usable as an argument of `bind()` that yields `Out` when the graph runs. */
export interface Producer<Out, In = never> {
  /** @internal phantom: the value this node produces. */
  readonly [outputKey]: Out;
  /** @internal phantom: the graph input this node depends on (`never` for none). */
  readonly [inputKey]: In;
}

/** The arguments of `execute()`: none when the graph has no `InputNode`. */
export type ExecuteArgs<In> = [In] extends [never]
  ? []
  : undefined extends In
    ? [input?: In]
    : [input: In];

/** A node that can be executed in-process: every node except a class node. */
export interface GraphNode<Out, In = never> extends Producer<Out, In> {
  /**
   * Runs the whole graph that ends at this node in the calling process and resolves to this
   * node's value. Class instances are created on the first call and reused until
   * {@link GraphNode.dispose}.
   */
  execute(...input: ExecuteArgs<In>): Promise<Out>;
  /** Closes the class instances created by `execute` (calling their `close()` hooks). */
  dispose(): Promise<void>;
}

/** Any function a deployment can wrap. */
export type AnyFunction = (...args: never) => unknown;
/** Any class a deployment can wrap. */
export type AnyClass = abstract new (...args: never) => unknown;

/** The parameters of a function type. */
export type ParametersOf<F> = F extends (...args: infer P) => unknown ? P : never;

/** What a call of a step yields in the graph: the awaited result, or the stream itself. */
export type StepResult<R> = R extends AsyncIterable<infer Item> ? AsyncIterable<Item> : Awaited<R>;

/** What a handle method returns: a promise of the result, or an async iterable of items. */
export type HandleResult<R> =
  R extends AsyncIterable<infer Item> ? AsyncIterable<Item> : Promise<Awaited<R>>;

/** The names of a class's methods (and function-valued fields such as `batch()` fields). */
export type MethodName<C> = {
  [K in keyof C]-?: C[K] extends AnyFunction ? K : never;
}[keyof C] &
  string;

/**
 * A typed handle to a deployment of class `C`: every method of `C` as an async function
 * with the same parameters. Class nodes bound into a constructor (or into a call) arrive as
 * handles.
 */
export type DeploymentHandle<C> = {
  readonly [K in MethodName<C>]: C[K] extends (...args: infer A) => infer R
    ? (...args: A) => HandleResult<R>
    : never;
} & {
  /** @internal phantom: the class this handle calls. */
  readonly [handleKey]: C;
};

/** A value that is not a node (so a node cannot pass as a plain `object` value). */
export interface NotANode {
  /** @internal phantom */
  readonly [outputKey]?: never;
}
/** A plain value for a parameter of type `P` (object types exclude nodes). */
export type ValueArg<P> = P extends object ? P & NotANode : P;

/** One argument of a call: a value of the parameter's type, or a node producing one. */
export type BindArg<P> = unknown extends P ? P : ValueArg<P> | Producer<P, unknown>;

/** The arguments of `.bind()` for a function or method with parameters `P`. */
export type BindArgs<P extends readonly unknown[]> = { [K in keyof P]: BindArg<P[K]> };

/** Brand carried by class nodes, so only they can be bound into a constructor. */
export interface ClassNodeBrand {
  /** @internal phantom */
  readonly [classNodeKey]: true;
}

/**
 * One constructor argument: a value, or a class node where the parameter is a
 * `DeploymentHandle` of that class. Constructors run once per replica, so a node that
 * depends on a request (an `InputNode`, a call result) cannot be bound here.
 */
export type ConstructorArg<P> = unknown extends P
  ? P
  : ValueArg<P> | (ClassNodeBrand & Producer<P, never>) | NestedHandles<P>;

type IsHandle<T> = [Extract<T, { readonly [handleKey]: unknown }>] extends [never] ? false : true;

/**
 * An array, tuple or plain object parameter that holds handles accepts class nodes in
 * those places: `constructor(shards: DeploymentHandle<Shard>[])` binds `[shard0, shard1]`.
 */
type NestedHandles<P> = P extends readonly unknown[]
  ? IsHandle<P[number]> extends true
    ? { readonly [K in keyof P]: ConstructorArg<P[K]> }
    : never
  : P extends object
    ? IsHandle<P[keyof P]> extends true
      ? { readonly [K in keyof P]: ConstructorArg<P[K]> }
      : never
    : never;

export type ConstructorArgs<P extends readonly unknown[]> = {
  [K in keyof P]: ConstructorArg<P[K]>;
};

/** The graph input type that a list of bound arguments depends on. */
export type InputOf<X> = X extends Producer<unknown, infer In> ? In : never;
export type InputsOf<A extends readonly unknown[]> = InputOf<A[number]>;

/** The value an argument yields when the graph runs. */
export type OutputOf<X> = X extends Producer<infer Out, unknown> ? Out : X;

/** A node that calls a function deployment or a method of a class deployment. */
export type CallNode<Out, In> = GraphNode<Out, In>;

/** `classNode.method`: binds the method's arguments into a call node. */
export interface MethodBinder<M> {
  bind<A extends BindArgs<ParametersOf<M>>>(
    ...args: A
  ): CallNode<M extends (...args: never) => infer R ? StepResult<R> : never, InputsOf<A>>;
}

/**
 * A bound class deployment: one set of replicas of the class. Its methods are bound with
 * `node.method.bind(...)`; the node itself may be bound where a `DeploymentHandle<C>` is
 * expected.
 */
export type ClassNode<C> = Producer<DeploymentHandle<C>, never> &
  ClassNodeBrand & { readonly [K in Exclude<MethodName<C>, "then">]: MethodBinder<C[K]> };

/** Properties of the node API that attribute access cannot reach. */
export type ReservedAttribute = "execute" | "dispose" | "then";

type IsAny<T> = 0 extends 1 & T ? true : false;

// Index signatures live in interfaces: an interface defers its members, so the recursion
// through AttributeNode resolves lazily (an object type literal here collapses to GraphNode).
/** Attributes of an untyped value: any property name. */
export interface AnyAttributes<T, In> {
  readonly [key: string]: AttributeNode<T, In>;
}
/** Attributes of an array: any index. */
export interface IndexAttributes<T, In> {
  readonly [index: number]: AttributeNode<T, In>;
}

/** Attribute nodes for each property (or tuple index) of `T`. */
export type Attributes<T, In> =
  IsAny<T> extends true
    ? AnyAttributes<any, In> // eslint-disable-line @typescript-eslint/no-explicit-any
    : unknown extends T
      ? AnyAttributes<unknown, In>
      : [T] extends [readonly unknown[]]
        ? number extends T["length"]
          ? IndexAttributes<T[number], In>
          : {
              readonly [K in keyof T as K extends `${number}` ? K : never]: AttributeNode<T[K], In>;
            }
        : [T] extends [object]
          ? {
              readonly [
                K in keyof T as K extends ReservedAttribute ? never : K extends string ? K : never
              ]-?: AttributeNode<T[K], In>;
            }
          : unknown;

/** `input.key` / `input[0]`: a node yielding one part of the graph input. */
export type AttributeNode<T, In> = GraphNode<T, In> & Attributes<T, In>;

/** The graph's single input. `Out` is what steps receive; `In` what `execute` accepts. */
export type InputNode<Out = unknown, In = Out> = GraphNode<Out, In> & Attributes<Out, In>;

/** Options of a deployment, as in {@link DeploymentOptions}. */
export type { DeploymentOptions };

/** A deployment of a function: each `.bind()` is one call node (and one deployment). */
export interface FunctionDeployment<F extends AnyFunction> {
  readonly kind: "function";
  /** The name given by `.options({ name })`, else the function's name. */
  readonly name: string;
  /** The options set in code. */
  readonly config: Readonly<DeploymentOptions>;
  /** A new deployment with these options merged over the current ones. */
  options(options: DeploymentOptions): FunctionDeployment<F>;
  bind<A extends BindArgs<ParametersOf<F>>>(
    ...args: A
  ): CallNode<F extends (...args: never) => infer R ? StepResult<R> : never, InputsOf<A>>;
}

/** A deployment of a class: each `.bind()` of constructor arguments is one deployment. */
export interface ClassDeployment<C extends AnyClass> {
  readonly kind: "class";
  readonly name: string;
  readonly config: Readonly<DeploymentOptions>;
  options(options: DeploymentOptions): ClassDeployment<C>;
  bind(...args: ConstructorArgs<ConstructorParameters<C>>): ClassNode<InstanceType<C>>;
}

/** What `deployment()` returns for a function or a class. */
export type Deployment<T> = T extends AnyClass
  ? ClassDeployment<T>
  : T extends AnyFunction
    ? FunctionDeployment<T>
    : never;

/** A tuple or record of nodes and values combined by `MultiOutputNode`. */
export type MultiOutput<T> = { -readonly [K in keyof T]: OutputOf<T[K]> };
