/**
 * Type tests for `.bind()` wiring. This file is never run: `npm run check` (tsc) checks it.
 * Each `@ts-expect-error` line must be a compile error, or tsc reports the directive as
 * unused; each `expectTypeOf` must hold exactly.
 */
import { expectTypeOf } from "expect-type";
import { z } from "zod";
import {
  batch,
  deployment,
  InputNode,
  MultiOutputNode,
  type AttributeNode,
  type CallNode,
  type DeploymentHandle,
  type GraphNode,
} from "../index.js";

const preprocess = deployment(async function preprocess(image: Uint8Array): Promise<Float32Array> {
  return Float32Array.from(image);
});
const tokenize = deployment(function tokenize(text: string, maxLength?: number): number[] {
  return [text.length, maxLength ?? 0];
});

class Classifier {
  constructor(
    private modelPath: string,
    readonly labels: string[] = [],
  ) {}
  async forward(x: Float32Array): Promise<number[]> {
    return [x.length, this.modelPath.length];
  }
  label(index: number): string {
    return this.labels[index] ?? "";
  }
  async *stream(n: number): AsyncGenerator<string> {
    for (let i = 0; i < n; i++) yield String(i);
  }
  recognize = batch(async (crops: Float32Array[]) => crops.map((c) => String(c.length)), {
    maxBatchSize: 8,
    batchWaitTimeout: "5ms",
  });
}
const ClassifierDeployment = deployment(Classifier, { numReplicas: 2 });

class Other {
  async forward(x: Float32Array): Promise<string> {
    return String(x.length);
  }
}
const OtherDeployment = deployment(Other);

class Ensemble {
  constructor(
    private fallback: DeploymentHandle<Classifier>,
    private weight: number,
  ) {}
  async combine(a: number[], b: number[], id: string): Promise<{ id: string; score: number }> {
    const extra = await this.fallback.forward(new Float32Array(1));
    return { id, score: (a[0] ?? 0) * this.weight + (b[0] ?? 0) + (extra[0] ?? 0) };
  }
}
const EnsembleDeployment = deployment(Ensemble);

const schema = z.object({
  image: z.instanceof(Uint8Array),
  id: z.string(),
  size: z.number().default(3),
});
const input = new InputNode(schema);
/** What `execute` accepts: the schema's input type (`size` may be left out). */
type Input = z.input<typeof schema>;
expectTypeOf<Input["size"]>().toEqualTypeOf<number | undefined>();
expectTypeOf<Input["id"]>().toEqualTypeOf<string>();

// ---- correct wiring compiles, and results are inferred ----
const x = preprocess.bind(input.image);
expectTypeOf(x).toEqualTypeOf<CallNode<Float32Array, Input>>();
const m1 = ClassifierDeployment.options({ name: "m1" }).bind("a.onnx");
const m2 = ClassifierDeployment.options({ name: "m2" }).bind("b.onnx", ["cat", "dog"]);
const ens = EnsembleDeployment.bind(m1, 0.5);
const out = ens.combine.bind(m1.forward.bind(x), m2.forward.bind(x), input.id);
expectTypeOf(out.execute).returns.toEqualTypeOf<Promise<{ id: string; score: number }>>();
expectTypeOf(out.execute).parameter(0).toEqualTypeOf<Input>();

// the attribute's type flows from the schema's output (size has a default)
expectTypeOf(input.size).toEqualTypeOf<GraphNode<number, Input> & unknown>();
// method results are awaited; sync methods too
expectTypeOf(m2.label.bind(0).execute).returns.toEqualTypeOf<Promise<string>>();
// optional parameters may be left out; plain values and nodes mix
expectTypeOf(tokenize.bind("abc").execute).returns.toEqualTypeOf<Promise<number[]>>();
tokenize.bind(input.id, 16);
// a function-valued field (as `batch()` makes) binds like a method
expectTypeOf(m1.recognize.bind(x).execute).returns.toEqualTypeOf<Promise<string>>();
// a streaming method yields an AsyncIterable
expectTypeOf(m1.stream.bind(3).execute).returns.toEqualTypeOf<Promise<AsyncIterable<string>>>();
// a graph without an InputNode executes with no argument
expectTypeOf(tokenize.bind("abc").execute).parameters.toEqualTypeOf<[]>();

// handles expose every method as async, with the same parameters
declare const handle: DeploymentHandle<Classifier>;
expectTypeOf(handle.forward).toEqualTypeOf<(x: Float32Array) => Promise<number[]>>();
expectTypeOf(handle.label).toEqualTypeOf<(index: number) => Promise<string>>();
expectTypeOf(handle.stream).toEqualTypeOf<(n: number) => AsyncIterable<string>>();
expectTypeOf(handle.recognize).toEqualTypeOf<(crop: Float32Array) => Promise<string>>();

// typed InputNode by type argument; index access on tuples
const pair = new InputNode<[string, number]>();
expectTypeOf(pair[0]).toMatchTypeOf<GraphNode<string, [string, number]>>();
expectTypeOf(tokenize.bind(pair[0], pair[1]).execute)
  .parameter(0)
  .toEqualTypeOf<[string, number]>();
// nested attributes
const nested = new InputNode<{ a: { b: string } }>();
expectTypeOf(tokenize.bind(nested.a.b).execute).returns.toEqualTypeOf<Promise<number[]>>();

// arrays give index attributes; an untyped InputNode gives any attribute, nested
const lists = new InputNode<{ xs: number[] }>();
expectTypeOf(lists.xs[0]).toEqualTypeOf<AttributeNode<number, { xs: number[] }> | undefined>();
const untyped = new InputNode();
expectTypeOf(untyped.a!.b!).toEqualTypeOf<AttributeNode<unknown, unknown>>();
expectTypeOf(untyped.a!.b!.execute).returns.toEqualTypeOf<Promise<unknown>>();

// MultiOutputNode: tuples and records of node results and values
const both = new MultiOutputNode([out, input.id, 7]);
expectTypeOf(both.execute).returns.toEqualTypeOf<
  Promise<[{ id: string; score: number }, string, 7]>
>();
const record = new MultiOutputNode({ result: out, id: input.id });
expectTypeOf(record.execute).returns.toEqualTypeOf<
  Promise<{ result: { id: string; score: number }; id: string }>
>();
// a MultiOutputNode is itself bindable
const sumDeployment = deployment(function sum(parts: [number[], number[]]): number {
  return parts[0].length + parts[1].length;
});
sumDeployment.bind(new MultiOutputNode([m1.forward.bind(x), m2.forward.bind(x)]));

// a parameter typed `unknown` takes anything, nodes included
const log = deployment(function log(value: unknown): string {
  return String(value);
});
log.bind(input.id);
log.bind(42);

// ---- each of these is a compile error ----

// a node where the parameter is a plain object type: the node's output must fit, not the node
const keys = deployment(function keys(o: object): string[] {
  return Object.keys(o);
});
keys.bind({ a: 1 });
keys.bind(input);
// @ts-expect-error input.size yields a number, not an object
keys.bind(input.size);
class Configured {
  constructor(readonly cfg: object) {}
  get(): object {
    return this.cfg;
  }
}
// @ts-expect-error an InputNode cannot pass as a constructor's plain object
deployment(Configured).bind(input);

// a bound value of the wrong type
// @ts-expect-error 42 is not a Uint8Array
preprocess.bind(42);
// @ts-expect-error constructor argument of the wrong type
ClassifierDeployment.bind(42);
// a node whose output type does not fit the parameter
// @ts-expect-error input.id is a string node, preprocess takes a Uint8Array
preprocess.bind(input.id);
// @ts-expect-error combine takes number[] first, x yields Float32Array
ens.combine.bind(x, m2.forward.bind(x), input.id);
// @ts-expect-error Other.forward yields string, combine wants number[]
ens.combine.bind(OtherDeployment.bind().forward.bind(x), m2.forward.bind(x), input.id);
// wrong arity
// @ts-expect-error too few arguments
ens.combine.bind(m1.forward.bind(x), m2.forward.bind(x));
// @ts-expect-error too many arguments
preprocess.bind(input.image, 1);
// @ts-expect-error the constructor needs a path
ClassifierDeployment.bind();
// an unknown method
// @ts-expect-error Classifier has no method "backward"
m1.backward.bind(x);
// a class node where the parameter is not a handle of that class
// @ts-expect-error Other is not Classifier
EnsembleDeployment.bind(OtherDeployment.bind(), 0.5);
// @ts-expect-error a class node is not a number
EnsembleDeployment.bind(m1, m2);
// @ts-expect-error a class node is not a Float32Array
m1.forward.bind(m2);
// an InputNode (or any per-request node) bound into a constructor
// @ts-expect-error constructors take values and class nodes only
ClassifierDeployment.bind(input.id);
const modelPath = deployment(function path(): string {
  return "a.onnx";
}).bind();
// @ts-expect-error a call result is not a constructor argument either
ClassifierDeployment.bind(modelPath);
// an attribute the input does not have
// @ts-expect-error the schema has no "name"
preprocess.bind(input.name);
// execute with the wrong input
// @ts-expect-error id must be a string
void out.execute({ image: new Uint8Array(1), id: 42 });
// @ts-expect-error a class node cannot be executed
void m1.execute();
// @ts-expect-error options are checked
deployment(Classifier, { numReplicas: "2" });

// arrays, tuples and plain objects of handles take class nodes in those places
class Router {
  constructor(
    private shards: DeploymentHandle<Classifier>[],
    private named: { main: DeploymentHandle<Classifier>; other: DeploymentHandle<Other> },
    private pair: readonly [DeploymentHandle<Classifier>, number],
  ) {}
  first(): DeploymentHandle<Classifier> | undefined {
    return this.shards[0] ?? (this.named.main && this.pair[0]);
  }
}
const RouterDeployment = deployment(Router);
const other = OtherDeployment.bind();
RouterDeployment.bind([m1, m2], { main: m1, other }, [m2, 3]);
RouterDeployment.bind([], { main: m1, other }, [m1, 0]);
// @ts-expect-error an Other node in an array of Classifier handles
RouterDeployment.bind([m1, other], { main: m1, other }, [m2, 3]);
// @ts-expect-error the object's "other" must be an Other node
RouterDeployment.bind([m1], { main: m1, other: m2 }, [m2, 3]);
// @ts-expect-error per-request nodes cannot be nested in constructor arguments either
RouterDeployment.bind([m1, input.id], { main: m1, other }, [m2, 3]);
// @ts-expect-error a tuple's second item is a number, not a node
RouterDeployment.bind([m1], { main: m1, other }, [m2, m1]);
// an array of plain values is not widened to nodes
// @ts-expect-error a class node is not a string label
ClassifierDeployment.bind("a.onnx", ["cat", m1]);
