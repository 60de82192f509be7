import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { batch, multiplexed, OptionsError, requestContext, TributaryError } from "../index.js";
import { ActiveRequest, requestStorage } from "./context.js";

describe("batch()", () => {
  test("batch - concurrent calls are gathered into batches of at most maxBatchSize, in order", async () => {
    const seen: number[][] = [];
    const double = batch(
      async (xs: number[]) => {
        seen.push(xs);
        return xs.map((x) => x * 2);
      },
      { maxBatchSize: 4, batchWaitTimeout: "20ms" },
    );
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => double(i)));
    assert.deepEqual(results, [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]);
    assert.deepEqual(seen, [
      [0, 1, 2, 3],
      [4, 5, 6, 7],
      [8, 9],
    ]);
    assert.deepEqual(double.stats(), {
      batches: 3,
      items: 10,
      sizes: { 4: 2, 2: 1 },
      meanSize: 10 / 3,
    });
  });

  test("batch - with a wait of 0, a batch takes the calls of one turn and those queued while busy", async () => {
    const seen: number[][] = [];
    let release: () => void = () => {};
    const identity = batch(
      async (xs: number[]) => {
        seen.push(xs);
        if (seen.length === 1) await new Promise<void>((resolve) => (release = resolve));
        return xs;
      },
      { maxBatchSize: 8, batchWaitTimeout: 0 },
    );
    const first = Promise.all([identity(1), identity(2), identity(3)]); // one turn
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(seen, [[1, 2, 3]], "dispatched after the turn, without a timer");
    // While that batch runs, later calls queue and go together when it is done.
    const later = [identity(4), identity(5)];
    await new Promise((resolve) => setTimeout(resolve, 20));
    const last = identity(6);
    release();
    assert.deepEqual(await first, [1, 2, 3]);
    assert.deepEqual(await Promise.all([...later, last]), [4, 5, 6]);
    assert.deepEqual(seen, [
      [1, 2, 3],
      [4, 5, 6],
    ]);
  });

  test("batch - a full batch goes at once; a partial one after batchWaitTimeout", async () => {
    const identity = batch(async (xs: number[]) => xs, {
      maxBatchSize: 3,
      batchWaitTimeout: "10s",
    });
    const started = performance.now();
    assert.deepEqual(await Promise.all([identity(1), identity(2), identity(3)]), [1, 2, 3]);
    assert.ok(performance.now() - started < 1_000, "a full batch does not wait for the timeout");
    const waiting = batch(async (xs: number[]) => xs, { maxBatchSize: 8, batchWaitTimeout: 50 });
    const t0 = performance.now();
    assert.deepEqual(await Promise.all([waiting(1), waiting(2)]), [1, 2]);
    const waited = performance.now() - t0;
    assert.ok(waited >= 45 && waited < 2_000, `waited ${waited} ms`);
    assert.deepEqual(waiting.stats().sizes, { 2: 1 });
  });

  test("batch - an Error in an item's place fails only that caller; a throw fails them all", async () => {
    const checkPositive = batch(
      async (xs: number[]) => xs.map((x) => (x > 0 ? x : new RangeError(`${x} is not positive`))),
      { maxBatchSize: 3, batchWaitTimeout: "5ms" },
    );
    const settled = await Promise.allSettled([
      checkPositive(1),
      checkPositive(-1),
      checkPositive(2),
    ]);
    assert.deepEqual(
      settled.map((s) => (s.status === "fulfilled" ? s.value : (s.reason as Error).message)),
      [1, "-1 is not positive", 2],
    );
    const explode = batch(
      async (_xs: number[]): Promise<number[]> => {
        throw new Error("GPU fell off");
      },
      { maxBatchSize: 2, batchWaitTimeout: "5ms" },
    );
    const all = await Promise.allSettled([explode(1), explode(2)]);
    assert.deepEqual(
      all.map((s) => s.status === "rejected" && (s.reason as Error).message),
      ["GPU fell off", "GPU fell off"],
    );
  });

  test("batch - a result list of the wrong length fails every caller, saying so", async () => {
    const short = batch(async (xs: number[]) => xs.slice(1), {
      maxBatchSize: 3,
      batchWaitTimeout: "5ms",
    });
    const settled = await Promise.allSettled([short(1), short(2), short(3)]);
    for (const s of settled) {
      assert.equal(s.status, "rejected");
      const error = s.reason as TributaryError;
      assert.ok(error instanceof TributaryError);
      assert.match(
        error.message,
        /returned 2 results for 3 items; it must return one result \(or Error\) per item/,
      );
    }
  });

  test("batch - configure() changes the size and wait for the next batch; bad options are rejected", async () => {
    const seen: number[] = [];
    const f = batch(
      async (xs: number[]) => {
        seen.push(xs.length);
        return xs;
      },
      { maxBatchSize: 2, batchWaitTimeout: "5ms" },
    );
    await Promise.all([f(1), f(2), f(3), f(4)]);
    f.configure({ maxBatchSize: 4 });
    await Promise.all([f(1), f(2), f(3), f(4)]);
    assert.deepEqual(seen, [2, 2, 4]);
    assert.throws(() => f.configure({ maxBatchSize: 0 }), OptionsError);
    assert.throws(
      () =>
        batch(async (xs: number[]) => xs, { maxBatchSize: 2, batchWaitTimeout: "soon" as never }),
      OptionsError,
    );
  });

  test("batch - as a class field it keeps `this` and batches calls on the instance", async () => {
    class Model {
      readonly scale = 3;
      batches = 0;
      forward = batch(
        async (xs: number[]) => {
          this.batches++;
          return xs.map((x) => x * this.scale);
        },
        { maxBatchSize: 8, batchWaitTimeout: "5ms" },
      );
    }
    const model = new Model();
    assert.deepEqual(await Promise.all([model.forward(1), model.forward(2)]), [3, 6]);
    assert.equal(model.batches, 1);
  });
});

test("batch - configure() with a shorter wait reschedules the batch already waiting", async () => {
  const f = batch(async (xs: number[]) => xs, { maxBatchSize: 8, batchWaitTimeout: "5s" });
  const started = performance.now();
  const pending = f(1);
  f.configure({ batchWaitTimeout: 1 });
  assert.equal(await pending, 1);
  assert.ok(performance.now() - started < 1_000, "the 5 s wait was replaced by the new one");
});

test("batch - a batch holds one multiplexed model's items, and its function sees that model", async () => {
  const models = multiplexed((id: string) => (x: number) => `${id}:${x}`);
  const seen: [string | undefined, number[]][] = [];
  const run = batch(
    async (xs: number[]) => {
      seen.push([requestContext()?.multiplexedModelId, xs]);
      const model = await models();
      return xs.map(model);
    },
    { maxBatchSize: 4, batchWaitTimeout: "20ms" },
  );
  const call = (model: string, x: number): Promise<string> =>
    requestStorage.run(new ActiveRequest(`r${x}`, "d", "d#1", model), () => run(x));
  const results = await Promise.all([call("a", 1), call("b", 2), call("a", 3), call("b", 4)]);
  assert.deepEqual(results, ["a:1", "b:2", "a:3", "b:4"]);
  assert.deepEqual(seen, [
    ["a", [1, 3]],
    ["b", [2, 4]],
  ]);
});
