import assert from "node:assert/strict";
import { Socket } from "node:net";
import { describe, test } from "node:test";
import {
  deployment,
  GraphBuildError,
  InputNode,
  MultiOutputNode,
  type DeploymentHandle,
} from "../index.js";
import { compileGraph } from "./compile.js";
import { NodeImpl } from "./node.js";
import { STATE, type MultiState } from "./state.js";

const THIS_FILE = /src\/dag\/compile\.test\.ts:\d+:\d+/;

/** Compiles the graph ending at `node` and returns the build error it raises. */
function buildError(node: unknown): GraphBuildError {
  try {
    compileGraph((node as { [STATE]: never })[STATE]);
  } catch (error) {
    assert.ok(error instanceof GraphBuildError, `expected a GraphBuildError, got ${String(error)}`);
    assert.equal(error.code, "INVALID_GRAPH");
    return error;
  }
  return assert.fail("expected the graph to be rejected");
}

const identity = deployment(function identity(x: unknown): unknown {
  return x;
});
const pair = deployment(function pair(a: unknown, b: unknown): unknown[] {
  return [a, b];
});

class Model {
  constructor(readonly config: unknown = {}) {}
  forward(x: unknown): unknown {
    return x;
  }
}
const ModelDeployment = deployment(Model);

describe("build-time errors", () => {
  test("compile - two InputNodes in one graph are named with where they were created", async () => {
    const a = new InputNode();
    const b = new InputNode();
    const out = pair.bind(a, b);
    const error = buildError(out);
    assert.match(error.message, /uses 2 InputNodes/);
    assert.equal(
      error.message.match(new RegExp(`InputNode \\(created at ${THIS_FILE.source}\\)`, "g"))
        ?.length,
      2,
    );
    await assert.rejects(out.execute(), GraphBuildError, "execute reports it too");
  });

  test("compile - a cycle is reported with the nodes on it", () => {
    // The public API only binds earlier nodes, so a cycle needs the internal state.
    const first = new NodeImpl({ kind: "multi", keys: undefined, args: [], site: undefined });
    const second = pair.bind(first as never, 1);
    ((first[STATE] as MultiState).args as unknown[]).push(second);

    const error = buildError(second);
    assert.match(
      error.message,
      /The graph has a cycle: pair\(\) .* -> MultiOutputNode .* -> pair\(\)/,
    );
  });

  test("compile - an InputNode bound into a constructor is rejected, naming both nodes", () => {
    const input = new InputNode<{ path: string }>();
    const model = ModelDeployment.bind(input.path);
    const error = buildError(model.forward.bind(1));
    assert.match(
      error.message,
      /^input\.path \(created at .*\) is bound into argument 0 of the constructor of class Model/,
    );
    assert.match(error.message, /An InputNode cannot be bound into a constructor/);
    assert.match(error.message, THIS_FILE);
    const whole = buildError(ModelDeployment.bind(input as never).forward.bind(1));
    assert.match(whole.message, /^InputNode \(created at/);
  });

  test("compile - class nodes inside array and object constructor arguments become handles", () => {
    class Fan {
      constructor(
        readonly shards: DeploymentHandle<Model>[],
        readonly named: { main: DeploymentHandle<Model>; k: number },
      ) {}
      forward(): number {
        return this.shards.length;
      }
    }
    const a = ModelDeployment.options({ name: "a" }).bind("a");
    const b = ModelDeployment.options({ name: "b" }).bind("b");
    const fan = deployment(Fan).bind([a, b], { main: a, k: 3 });
    const graph = compileGraph((fan.forward.bind() as unknown as { [STATE]: never })[STATE]);
    assert.deepEqual(
      graph.deployments.map((d) => d.name),
      ["a", "b", "Fan"],
      "the shards are deployments, before the class that holds their handles",
    );
    assert.deepEqual(graph.deployments.at(-1)!.init, [
      {
        kind: "nested",
        value: [null, null],
        handles: [
          { path: [0], deployment: "a" },
          { path: [1], deployment: "b" },
        ],
      },
      {
        kind: "nested",
        value: { main: null, k: 3 },
        handles: [{ path: ["main"], deployment: "a" }],
      },
    ]);
    const input = new InputNode<string>();
    const error = buildError(
      deployment(Fan)
        .bind([a, input as never], { main: a, k: 1 })
        .forward.bind(),
    );
    assert.match(
      error.message,
      /^InputNode \(created at .*\) is bound into argument 0\[1\] of the constructor of class Fan/,
    );
  });

  test("compile - a call result bound into a constructor is rejected", () => {
    const error = buildError(ModelDeployment.bind(identity.bind(1) as never).forward.bind(1));
    assert.match(
      error.message,
      /identity\(\) \(bound at .*\) is bound into argument 0 of the constructor/,
    );
  });

  test("compile - duplicate explicit deployment names are rejected, naming both", () => {
    const m1 = ModelDeployment.options({ name: "m" }).bind("a");
    const m2 = ModelDeployment.options({ name: "m" }).bind("b");
    const error = buildError(pair.bind(m1.forward.bind(1), m2.forward.bind(2)));
    assert.match(
      error.message,
      /Two deployments are both named "m": m \(class Model\) \(bound at .*\) and m \(class Model\) \(bound at .*\)/,
    );
  });

  test("compile - the reserved name ingress is rejected", () => {
    const error = buildError(identity.options({ name: "ingress" }).bind(1));
    assert.match(error.message, /named "ingress", a name reserved/);
  });

  test("compile - executing a class node is rejected with what to do instead", () => {
    const error = buildError(ModelDeployment.bind());
    assert.match(
      error.message,
      /is a class node, which cannot be executed .* bind one of its methods/,
    );
  });

  describe("arguments that cannot cross a thread boundary", () => {
    class WithMethods {
      value = 1;
      get(): number {
        return this.value;
      }
    }
    const rejected: [string, unknown, RegExp][] = [
      ["a function", () => 1, /argument 1 is a function/],
      [
        "a class instance",
        new WithMethods(),
        /argument 1 is an instance of WithMethods; its class and methods would be lost/,
      ],
      ["a socket", new Socket(), /argument 1 is an instance of Socket/],
      ["a symbol", Symbol("s"), /argument 1 is a symbol/],
      [
        "a nested function",
        { options: { onDone: () => 1 } },
        /argument 1\.options\.onDone is a function/,
      ],
      [
        "an item of an array",
        [1, 2, new WithMethods()],
        /argument 1\[2\] is an instance of WithMethods/,
      ],
      ["a symbol key", { [Symbol("k")]: 1 }, /argument 1 has symbol keys/],
      [
        "a node nested in a value",
        { x: new InputNode() },
        /argument 1\.x is a graph node nested inside a value/,
      ],
      ["a class", WithMethods, /argument 1 is a class \(WithMethods\)/],
    ];
    for (const [what, value, message] of rejected) {
      test(`compile - ${what} bound as an argument is rejected`, () => {
        const error = buildError(pair.bind(1, value));
        assert.match(error.message, message);
        assert.match(error.message, /^pair\(\) \(bound at .*compile\.test\.ts/);
      });
    }

    test("compile - a function bound into a constructor is rejected", () => {
      const error = buildError(ModelDeployment.bind(() => 1).forward.bind(1));
      assert.match(error.message, /^class Model \(bound at .*\): argument 0 is a function/);
    });

    test("compile - plain data of every cloneable kind is accepted", async () => {
      const data = {
        n: 1,
        s: "s",
        b: true,
        nil: null,
        big: 10n,
        date: new Date(0),
        re: /x/g,
        bytes: new Uint8Array([1, 2]),
        floats: new Float32Array(2),
        buffer: new ArrayBuffer(4),
        map: new Map([["k", [1]]]),
        set: new Set([1]),
        nested: [{ deep: [[1]] }],
        bare: Object.create(null) as object,
        error: new Error("e"),
      };
      (data as { self?: unknown }).self = data; // cycles clone fine
      const out = pair.bind(data, new MultiOutputNode([1, "x"]));
      const [a, b] = (await out.execute()) as [typeof data, unknown];
      assert.equal(a, data);
      assert.deepEqual(b, [1, "x"]);
    });
  });
});

describe("deployment names", () => {
  test("naming - default names come from the function or class, with _1, _2 suffixes in graph order", () => {
    class Ranker {
      constructor(private readonly model: DeploymentHandle<Model>) {}
      rank(x: unknown): unknown {
        return [this.model, x];
      }
    }
    const a = ModelDeployment.bind("a");
    const b = ModelDeployment.bind("b");
    const c = ModelDeployment.options({ name: "Model_1" }).bind("c"); // explicit names win
    const ranker = deployment(Ranker).bind(b);
    const out = pair.bind(
      pair.bind(a.forward.bind(1), ranker.rank.bind(c.forward.bind(2))),
      identity.bind(3),
    );
    const graph = compileGraph(out[STATE as never]);
    assert.deepEqual(
      graph.deployments.map((d) => d.name),
      ["Model", "Model_2", "Ranker", "Model_1", "pair", "identity", "pair_1"],
    );
    // The same code compiles to the same names.
    assert.deepEqual(
      compileGraph(out[STATE as never]).deployments.map((d) => d.name),
      graph.deployments.map((d) => d.name),
    );
    assert.deepEqual(graph.deployments.find((d) => d.name === "Ranker")?.init, [
      { kind: "handle", deployment: "Model_2" },
    ]);
    assert.deepEqual(graph.deployments.find((d) => d.name === "Model")?.methods, ["forward"]);
  });

  test("naming - one class node used by several calls is one deployment", () => {
    const m = ModelDeployment.bind();
    const out = pair.bind(m.forward.bind(1), m.forward.bind(2));
    const graph = compileGraph(out[STATE as never]);
    assert.deepEqual(
      graph.deployments.map((d) => d.name),
      ["Model", "pair"],
    );
  });
});
