import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { z } from "zod";
import {
  deployment,
  GraphExecutionError,
  InputNode,
  MultiOutputNode,
  ValidationError,
  type DeploymentHandle,
} from "../index.js";

/** Resolves when `count` parties have arrived; rejects after `ms` so a missing party fails fast. */
function barrier(count: number, ms = 2000): () => Promise<void> {
  let arrived = 0;
  let release!: () => void;
  const all = new Promise<void>((resolve) => (release = resolve));
  return async () => {
    if (++arrived === count) release();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`only ${arrived} of ${count} branches started`)),
        ms,
      );
    });
    try {
      await Promise.race([all, timeout]);
    } finally {
      clearTimeout(timer);
    }
  };
}

describe("local execution", () => {
  test("execute - a node shared by two branches runs once per execution", async () => {
    let calls = 0;
    const source = deployment(function source(x: number): number {
      calls++;
      return x + 1;
    });
    const double = deployment(function double(x: number): number {
      return 2 * x;
    });
    const square = deployment(function square(x: number): number {
      return x * x;
    });
    const add = deployment(function add(a: number, b: number): number {
      return a + b;
    });
    const input = new InputNode<number>();
    const s = source.bind(input);
    const out = add.bind(double.bind(s), square.bind(s));
    assert.equal(await out.execute(2), 6 + 9);
    assert.equal(calls, 1);
    assert.equal(await out.execute(3), 8 + 16);
    assert.equal(calls, 2);
  });

  test("execute - independent branches run concurrently", async () => {
    const bothStarted = barrier(2);
    const left = deployment(async function left(x: number): Promise<number> {
      await bothStarted();
      return x + 1;
    });
    const right = deployment(async function right(x: number): Promise<number> {
      await bothStarted();
      return x + 2;
    });
    const input = new InputNode<number>();
    const out = new MultiOutputNode([left.bind(input), right.bind(input)]);
    assert.deepEqual(await out.execute(10), [11, 12]);
  });

  test("execute - class instances are created once, reused, and closed by dispose", async () => {
    const events: string[] = [];
    class Counter {
      count = 0;
      constructor(readonly id: string) {
        events.push(`new ${id}`);
      }
      next(): number {
        return ++this.count;
      }
      close(): void {
        events.push(`close ${this.id}`);
      }
    }
    const counter = deployment(Counter).bind("c");
    const out = counter.next.bind();
    // Concurrent first executions still create a single instance.
    assert.deepEqual((await Promise.all([out.execute(), out.execute()])).sort(), [1, 2]);
    assert.equal(await out.execute(), 3);
    assert.deepEqual(events, ["new c"]);
    await out.dispose();
    assert.deepEqual(events, ["new c", "close c"]);
    await out.dispose(); // safe twice
    assert.equal(await out.execute(), 1, "a fresh instance after dispose");
    assert.deepEqual(events, ["new c", "close c", "new c"]);
    await out.dispose();
  });

  test("execute - a class node bound into a constructor arrives as a working handle", async () => {
    class Model {
      constructor(private readonly factor: number) {}
      async forward(x: number): Promise<number> {
        return x * this.factor;
      }
      async *count(n: number): AsyncGenerator<number> {
        for (let i = 0; i < n; i++) yield i;
      }
    }
    class Router {
      constructor(private readonly model: DeploymentHandle<Model>) {}
      async route(x: number): Promise<{ value: number; stream: number[] }> {
        const stream: number[] = [];
        for await (const item of this.model.count(3)) stream.push(item);
        return { value: await this.model.forward(x), stream };
      }
    }
    const model = deployment(Model).bind(3);
    const router = deployment(Router).bind(model);
    const input = new InputNode<number>();
    const out = router.route.bind(input);
    assert.deepEqual(await out.execute(5), { value: 15, stream: [0, 1, 2] });
    await out.dispose();
  });

  test("execute - a handle result passed on un-awaited is awaited first, as when served", async () => {
    class Model {
      async forward(x: number): Promise<number> {
        return x * 3;
      }
      add(a: number, b: number): number {
        // A response arriving un-awaited would make this string concatenation or NaN.
        assert.equal(typeof a, "number");
        return a + b;
      }
    }
    class Chain {
      constructor(private readonly model: DeploymentHandle<Model>) {}
      async run(x: number): Promise<number> {
        return this.model.add(this.model.forward(x) as unknown as number, 1);
      }
      async promise(): Promise<number> {
        return this.model.add(Promise.resolve(1) as unknown as number, 1);
      }
    }
    const model = deployment(Model).bind();
    const chain = deployment(Chain).bind(model);
    const out = chain.run.bind(new InputNode<number>());
    assert.equal(await out.execute(5), 16);
    await out.dispose();
    const promise = chain.promise.bind();
    await assert.rejects(promise.execute(), /arguments\[0\]: it is a Promise/);
    await promise.dispose();
  });

  test("execute - a handle passed as an argument arrives as a working handle, as when served", async () => {
    class Model {
      forward(x: number): number {
        return x * 3;
      }
      through(model: DeploymentHandle<Model>, x: number): PromiseLike<number> {
        return model.forward(x);
      }
    }
    class Caller {
      constructor(private readonly model: DeploymentHandle<Model>) {}
      run(x: number): PromiseLike<number> {
        return this.model.through(this.model, x);
      }
    }
    const out = deployment(Caller).bind(deployment(Model).bind()).run.bind(new InputNode<number>());
    assert.equal(await out.execute(2), 6);
    await out.dispose();
  });

  test("execute - handles inside array and object constructor arguments call their deployments", async () => {
    class Shard {
      constructor(private readonly base: number) {}
      get(i: number): number {
        return this.base + i;
      }
    }
    class Gather {
      constructor(
        private readonly shards: DeploymentHandle<Shard>[],
        private readonly extra: { fallback: DeploymentHandle<Shard>; scale: number },
      ) {}
      async all(i: number): Promise<number[]> {
        const rows = await Promise.all(this.shards.map((s) => s.get(i)));
        return [...rows, this.extra.scale * (await this.extra.fallback.get(i))];
      }
    }
    const shards = [100, 200, 300].map((base, n) =>
      deployment(Shard)
        .options({ name: `shard_${n}` })
        .bind(base),
    );
    const gather = deployment(Gather).bind(shards, { fallback: shards[0]!, scale: 2 });
    const out = gather.all.bind(new InputNode<number>());
    assert.deepEqual(await out.execute(7), [107, 207, 307, 214]);
    await out.dispose();
  });

  test("execute - reconfigure receives userConfig after construction", async () => {
    class Thresholded {
      threshold = -1;
      reconfigure(config: { threshold: number }): void {
        this.threshold = config.threshold;
      }
      check(x: number): boolean {
        return x > this.threshold;
      }
    }
    const t = deployment(Thresholded, { userConfig: { threshold: 0.5 } }).bind();
    const input = new InputNode<number>();
    const out = new MultiOutputNode([t.check.bind(input), t.check.bind(0.25)]);
    assert.deepEqual(await out.execute(0.75), [true, false]);
    await out.dispose();
  });

  test("execute - the input is validated against the schema, listing every failing path", async () => {
    const echo = deployment(function echo(value: { name: string; tags: string[]; size: number }) {
      return value;
    });
    const input = new InputNode(
      z.object({ name: z.string(), tags: z.array(z.string()), size: z.number().default(3) }),
    );
    const out = echo.bind(input);
    assert.deepEqual(await out.execute({ name: "a", tags: [] }), { name: "a", tags: [], size: 3 });
    const error = await out.execute({ name: 1, tags: ["x", 2] } as never).then(
      () => assert.fail("expected a ValidationError"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof ValidationError);
    assert.equal(error.code, "VALIDATION_FAILED");
    assert.deepEqual(
      error.issues.map((i) => i.path),
      ["name", "tags[1]"],
    );
    assert.match(error.message, /name: .*expected string/);
    assert.match(error.message, /tags\[1\]: .*expected string/);
  });

  test("execute - a failing step rejects with GraphExecutionError naming deployment and method", async () => {
    const original = new RangeError("weights missing");
    class Broken {
      forward(_x: number): number {
        throw original;
      }
    }
    const fail = deployment(async function explode(): Promise<number> {
      throw new Error("boom");
    });
    const input = new InputNode<number>();
    const broken = deployment(Broken, { name: "m1" }).bind();
    const error = await broken.forward
      .bind(input)
      .execute(1)
      .catch((e: unknown) => e);
    assert.ok(error instanceof GraphExecutionError);
    assert.equal(error.code, "EXECUTION_FAILED");
    assert.equal(error.deployment, "m1");
    assert.equal(error.method, "forward()");
    assert.match(error.message, /Deployment "m1" failed in forward\(\): weights missing/);
    assert.equal(error.cause, original);

    const error2 = await fail
      .bind()
      .execute()
      .catch((e: unknown) => e);
    assert.ok(error2 instanceof GraphExecutionError);
    assert.equal(error2.deployment, "explode");
    assert.equal((error2.cause as Error).message, "boom");
  });

  test("execute - a constructor failure names the constructor and is retried on the next execute", async () => {
    let attempts = 0;
    class Flaky {
      constructor() {
        if (++attempts === 1) throw new Error("model file not found");
      }
      ok(): string {
        return "ok";
      }
    }
    const out = deployment(Flaky).bind().ok.bind();
    const error = await out.execute().catch((e: unknown) => e);
    assert.ok(error instanceof GraphExecutionError);
    assert.equal(error.method, "constructor");
    assert.match(error.message, /Deployment "Flaky" failed in constructor: model file not found/);
    assert.equal(await out.execute(), "ok");
    await out.dispose();
  });

  test("execute - attribute and index access read parts of an untyped input", async () => {
    const join = deployment(function join(a: unknown, b: unknown, c: unknown): string {
      return [a, b, c].map(String).join("|");
    });
    // Untyped: every attribute exists (an index signature, so `!` under noUncheckedIndexedAccess).
    const input = new InputNode();
    const out = join.bind(input.user!.name!, input.list![1]!, input[0]!);
    assert.equal(
      await out.execute({ user: { name: "ada" }, list: [1, 2], 0: "zero" }),
      "ada|2|zero",
    );
    const error = await out.execute({ list: [] }).catch((e: unknown) => e);
    assert.ok(error instanceof ValidationError);
    assert.match(error.message, /user\.name: cannot read "name" of undefined/);
  });

  test("execute - MultiOutputNode gathers arrays and objects, mixing nodes and values", async () => {
    const inc = deployment(function inc(x: number): number {
      return x + 1;
    });
    const input = new InputNode<{ x: number; label: string }>();
    const out = new MultiOutputNode({
      next: inc.bind(input.x),
      label: input.label,
      constant: [1, 2],
    });
    assert.deepEqual(await out.execute({ x: 1, label: "l" }), {
      next: 2,
      label: "l",
      constant: [1, 2],
    });
    const tuple = new MultiOutputNode([inc.bind(input.x), out]);
    assert.deepEqual(await tuple.execute({ x: 5, label: "m" }), [
      6,
      { next: 6, label: "m", constant: [1, 2] },
    ]);
  });

  test("execute - a graph without an InputNode runs with no argument; nodes are not thenables", async () => {
    const answer = deployment(function answer(): number {
      return 42;
    });
    const node = answer.bind();
    assert.equal(await node.execute(), 42);
    // `await node` must not try to run or unwrap a node.
    const input = new InputNode();
    assert.equal((input as { then?: unknown }).then, undefined);
    assert.equal(await Promise.resolve(node), node);
  });

  test("execute - a streaming function yields an async iterable", async () => {
    const tokens = deployment(async function* tokens(text: string): AsyncGenerator<string> {
      for (const word of text.split(" ")) yield word;
    });
    const input = new InputNode<string>();
    const stream = await tokens.bind(input).execute("a b c");
    const items: string[] = [];
    for await (const item of stream) items.push(item);
    assert.deepEqual(items, ["a", "b", "c"]);
  });

  test("execute - dispose waits for running executions, and instances made meanwhile are closed too", async () => {
    const events: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    class Slow {
      constructor() {
        events.push("new");
      }
      async first(): Promise<number> {
        await gate;
        return 1;
      }
      second(x: number): number {
        return x + 1;
      }
      close(): void {
        events.push("close");
      }
    }
    const slow = deployment(Slow).bind();
    const out = slow.second.bind(slow.first.bind());
    const running = out.execute();
    await new Promise((resolve) => setImmediate(resolve));
    const disposing = out.dispose();
    release();
    assert.equal(await running, 2, "the running execution finishes on live instances");
    await disposing;
    assert.deepEqual(events, ["new", "close"]);
    // An execution that starts while a dispose is pending is closed by the next dispose.
    const late = out.execute();
    await out.dispose();
    await late;
    await out.dispose();
    assert.deepEqual(events, ["new", "close", "new", "close"]);
  });

  test("execute - an error inside a stream names the deployment", async () => {
    const numbers = deployment(async function* numbers(): AsyncGenerator<number> {
      yield 1;
      throw new Error("mid-stream");
    });
    const items: number[] = [];
    const error = await (async () => {
      for await (const item of await numbers.bind().execute()) items.push(item);
    })().catch((e: unknown) => e);
    assert.deepEqual(items, [1]);
    assert.ok(error instanceof GraphExecutionError);
    assert.equal(error.deployment, "numbers");
    assert.equal((error.cause as Error).message, "mid-stream");
  });

  test("execute - a class node passed to a call arrives as a handle; handles survive JSON.stringify", async () => {
    class Store {
      get(key: string): string {
        return key.toUpperCase();
      }
    }
    const lookup = deployment(async function lookup(
      store: DeploymentHandle<Store>,
      key: string,
    ): Promise<string> {
      return `${JSON.stringify({ store })}:${await store.get(key)}`;
    });
    const input = new InputNode<string>();
    assert.equal(await lookup.bind(deployment(Store).bind(), input).execute("k"), '{"store":{}}:K');
  });

  test("execute - a close() that throws is reported by dispose, naming the deployment", async () => {
    class Leaky {
      ok(): boolean {
        return true;
      }
      close(): void {
        throw new Error("file handle busy");
      }
    }
    const out = deployment(Leaky).bind().ok.bind();
    assert.equal(await out.execute(), true);
    await assert.rejects(out.dispose(), /Deployment "Leaky" failed in close\(\): file handle busy/);
  });
});

test("execute - a method returning a handle call's response resolves to its result, locally", async () => {
  class Inner {
    async value(): Promise<number> {
      return 7;
    }
  }
  class Outer {
    constructor(private readonly inner: DeploymentHandle<Inner>) {}
    forward(): Promise<number> {
      return this.inner.value(); // returned without await: a thenable that is also iterable
    }
  }
  const out = deployment(Outer).bind(deployment(Inner).bind()).forward.bind();
  assert.equal(await out.execute(), 7);
  await out.dispose();
});
