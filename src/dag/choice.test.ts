import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { z } from "zod";
import {
  branch,
  deployment,
  describeGraph,
  GraphBuildError,
  GraphExecutionError,
  InputNode,
  OptionsError,
  split,
  toMermaid,
} from "../index.js";
import { fnv1a, pickArm } from "./weights.js";

describe("branch", () => {
  test("branch - runs only the chosen arm, and what only the other arm needs does not run", async () => {
    const calls: string[] = [];
    const classify = deployment(function classify(x: number): "small" | "large" {
      calls.push("classify");
      return x < 10 ? "small" : "large";
    });
    const prepare = deployment(function prepare(x: number): number {
      calls.push("prepare");
      return x * 2;
    });
    const small = deployment(function small(x: number): string {
      calls.push("small");
      return `small:${x}`;
    });
    const large = deployment(function large(x: number): number {
      calls.push("large");
      return x;
    });
    const input = new InputNode(z.object({ x: z.number() }));
    const label = classify.bind(input.x);
    // `prepare` is needed only by the "large" arm.
    const out = branch(label, {
      small: small.bind(input.x),
      large: large.bind(prepare.bind(input.x)),
    });
    assert.equal(await out.execute({ x: 3 }), "small:3");
    assert.deepEqual(calls, ["classify", "small"]);
    calls.length = 0;
    assert.equal(await out.execute({ x: 30 }), 60);
    assert.deepEqual(calls, ["classify", "prepare", "large"]);
    await out.dispose();
  });

  test("branch - a step shared by the selector and an arm runs once; nested branches choose in turn", async () => {
    let shared = 0;
    const features = deployment(function features(x: number): number {
      shared++;
      return x + 1;
    });
    const sign = deployment((n: number): "neg" | "pos" => (n < 0 ? "neg" : "pos"), {
      name: "sign",
    });
    const parity = deployment((n: number): "even" | "odd" => (n % 2 === 0 ? "even" : "odd"), {
      name: "parity",
    });
    const echo = deployment((tag: string, n: number) => `${tag}${n}`, { name: "echo" });
    const input = new InputNode<number>();
    const f = features.bind(input);
    const inner = branch(parity.bind(f), {
      even: echo.options({ name: "even" }).bind("even:", f),
      odd: echo.options({ name: "odd" }).bind("odd:", f),
    });
    const out = branch(sign.bind(f), {
      neg: echo.options({ name: "neg" }).bind("neg:", f),
      pos: inner,
    });
    assert.equal(await out.execute(1), "even:2");
    assert.equal(await out.execute(2), "odd:3");
    assert.equal(await out.execute(-5), "neg:-4");
    assert.equal(shared, 3);
  });

  test("branch - a selector value that names no arm fails, naming the selector and the arms", async () => {
    const pick = deployment(function pick(s: string): string {
      return s;
    });
    const one = deployment(function one(): number {
      return 1;
    });
    const input = new InputNode<string>();
    const out = branch(pick.bind(input), { a: one.bind() });
    const error = await out.execute("zzz").then(
      () => assert.fail("expected a rejection"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof GraphExecutionError);
    assert.equal(error.deployment, "pick");
    assert.match(error.message, /"zzz", which names none of its branches \("a"\)/);
  });

  test("branch - an arm's failure is the request's, named by its deployment", async () => {
    const label = deployment((): "bad" => "bad", { name: "label" });
    const bad = deployment(function bad(): number {
      throw new Error("boom");
    });
    const out = branch(label.bind(), { bad: bad.bind() });
    await assert.rejects(
      out.execute(),
      (e: unknown) => e instanceof GraphExecutionError && e.deployment === "bad",
    );
  });

  test("describeGraph - shows a branch's selector and arms", () => {
    const label = deployment((): "a" | "b" => "a", { name: "label" });
    const a = deployment((): number => 1, { name: "a" });
    const b = deployment((): number => 2, { name: "b" });
    const out = branch(label.bind(), { a: a.bind(), b: b.bind() });
    const graph = describeGraph(out);
    assert.deepEqual(
      graph.edges.map((e) => [e.role, e.index]),
      [
        ["selector", undefined],
        ["arm", "a"],
        ["arm", "b"],
      ],
    );
    assert.deepEqual(
      graph.deployments.map((d) => d.name),
      ["label", "a", "b"],
    );
    assert.match(toMermaid(out), /-->\|a\|/);
  });
});

describe("split", () => {
  test("split - divides local executions by the weights set in code", async () => {
    const counts = { v1: 0, v2: 0 };
    const v1 = deployment(function v1(x: number): string {
      counts.v1++;
      return `v1:${x}`;
    });
    const v2 = deployment(function v2(x: number): string {
      counts.v2++;
      return `v2:${x}`;
    });
    const input = new InputNode<number>();
    const out = split(
      { v1: v1.bind(input), v2: v2.bind(input) },
      { name: "model", weights: { v1: 80, v2: 20 } },
    );
    const results = new Set<string>();
    for (let i = 0; i < 1000; i++) results.add((await out.execute(i)).slice(0, 2));
    assert.equal(counts.v1 + counts.v2, 1000);
    // Binomial(1000, 0.2): the standard deviation is about 12.6; 5 of them either side.
    assert.ok(Math.abs(counts.v2 - 200) < 63, `v2 ran ${counts.v2} times, expected about 200`);
    assert.deepEqual([...results].sort(), ["v1", "v2"]);
  });

  test("split - weights of 0 and 100 send everything to one arm", async () => {
    let v1 = 0;
    const a = deployment(
      () => {
        v1++;
        return 1;
      },
      { name: "a" },
    );
    const b = deployment(() => 2, { name: "b" });
    const out = split({ a: a.bind(), b: b.bind() }, { name: "ab", weights: { a: 0, b: 100 } });
    for (let i = 0; i < 50; i++) assert.equal(await out.execute(), 2);
    assert.equal(v1, 0);
  });

  test("split - weights that do not sum to 100, or name no arm, are rejected with the split's name", () => {
    const a = deployment(() => 1, { name: "a" }).bind();
    const b = deployment(() => 2, { name: "b" }).bind();
    assert.throws(
      () => split({ a, b }, { name: "s", weights: { a: 50, b: 40 } }),
      (e: unknown) => e instanceof OptionsError && /Split "s".*sum to 90, not 100/.test(e.message),
    );
    assert.throws(
      () => split({ a, b }, { name: "s", weights: { a: 50, b: 50, c: 0 } as never }),
      /"c" is not one of its arms/,
    );
    assert.throws(() => split({ a, b }, { name: "", weights: { a: 50, b: 50 } }), GraphBuildError);
  });

  test("split - two splits of one name in a graph are a build error", async () => {
    const a = deployment(() => 1, { name: "a" }).bind();
    const b = deployment(() => 2, { name: "b" }).bind();
    const s1 = split({ a }, { name: "same", weights: { a: 100 } });
    const s2 = split({ b }, { name: "same", weights: { b: 100 } });
    const both = branch(deployment((): "x" | "y" => "x", { name: "l" }).bind(), { x: s1, y: s2 });
    await assert.rejects(both.execute(), /Two splits are both named "same"/);
  });

  test("pickArm - a sticky value always takes the same arm, by FNV-1a mod 100 over the weights", () => {
    assert.equal(fnv1a(""), 0x811c9dc5);
    assert.equal(fnv1a("a"), 0xe40c292c); // the FNV-1a test vector
    const users = Array.from({ length: 1000 }, (_, i) => `user-${i}`);
    const first = users.map((u) => pickArm([90, 10], u));
    assert.deepEqual(
      users.map((u) => pickArm([90, 10], u)),
      first,
    );
    const canary = first.filter((arm) => arm === 1).length;
    assert.ok(canary > 60 && canary < 140, `${canary} of 1000 users on the canary`);
    // Moving to 80/20 moves users only from the first arm to the second.
    const after = users.map((u) => pickArm([80, 20], u));
    assert.ok(first.every((arm, i) => arm === 0 || after[i] === 1));
    assert.ok(users.every((u) => pickArm([0, 100], u) === 1));
  });
});
