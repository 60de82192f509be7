import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { TimeoutError, withHandleOptions } from "tributary";
import { serve } from "../serve.js";
import { eventually } from "./eventually.js";
import { app, type Caller, type Leaf } from "../fixtures/bounded-app.js";

describe("a handle's own timeout and signal (withHandleOptions)", { timeout: 90_000 }, () => {
  const layouts = {
    thread: app,
    process: app.withOptions({ leaf: { isolation: "process" }, caller: { isolation: "process" } }),
  };
  for (const [isolation, served] of Object.entries(layouts)) {
    test(`handle options - ${isolation}: a replica's call times out or is aborted by its handle's options, and the callee's signal fires`, async () => {
      await using server = await serve(served);
      const caller = server.getHandle<Caller>("caller");
      const leaf = server.getHandle<Leaf>("leaf");

      const started = Date.now();
      const timedOut = await caller.holdWithin(10_000, "150ms");
      assert.deepEqual(timedOut, {
        name: "TimeoutError",
        code: "TIMEOUT",
        message: "leaf.hold() timed out after 150 ms.",
      });
      assert.ok(Date.now() - started < 5_000, "answered at the handle's timeout");
      await eventually(
        async () => (await leaf.seen()).aborted === 1,
        5_000,
        "the leaf's signal fired",
      );
      assert.match((await leaf.seen()).lastReason, /leaf\.hold\(\) timed out/);

      const cancelled = await caller.holdUntilAborted(10_000, 100);
      assert.equal((cancelled as { code: string }).code, "CANCELLED");
      await eventually(
        async () => (await leaf.seen()).aborted === 2,
        5_000,
        "the leaf's signal fired on abort",
      );

      // Within its timeout the call is answered, and a stream keeps its timeout until it ends.
      assert.deepEqual(await caller.holdWithin(10, 5_000), { value: "held" });
      const stream = await caller.countWithin(1_000, 20, 300);
      assert.equal((stream as { code: string }).code, "TIMEOUT");
      assert.ok(
        stream.items >= 1 && stream.items < 1_000,
        `${stream.items} items before the timeout`,
      );
      assert.deepEqual(await caller.countWithin(3, 1, 5_000), { value: undefined, items: 3 });

      // A far-off handle timeout leaves the request's own deadline in charge.
      await assert.rejects(server.handle.call(10_000, { timeout: "200ms" }), TimeoutError);
      await eventually(
        async () => (await leaf.seen()).aborted >= 3,
        5_000,
        "the request's timeout reached the leaf through the handle's own scope",
      );
      assert.equal(await server.handle.call(10), "held");

      // A timeout that is not a duration is refused where the handle is made.
      const bad = caller.badTimeout();
      assert.equal(((await bad) as { code: string }).code, "INVALID_OPTIONS");
    });
  }

  test("handle options - from the main thread, withHandleOptions' timeout and signal apply to a served handle", async () => {
    await using server = await serve(app);
    const leaf = server.getHandle<Leaf>("leaf");
    await assert.rejects(withHandleOptions(leaf, { timeout: 100 }).hold(10_000), {
      name: "TimeoutError",
      message: "leaf.hold() timed out after 100 ms.",
    });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    await assert.rejects(withHandleOptions(leaf, { signal: controller.signal }).hold(10_000), {
      code: "CANCELLED",
    });
    // The handle's own timeout comes before the one it was got with.
    const slow = server.getHandle<Leaf>("leaf", { timeout: "100ms" });
    assert.equal(await withHandleOptions(slow, { timeout: "5s" }).hold(300), "held");
    await eventually(async () => (await leaf.seen()).aborted === 2, 5_000, "both calls aborted");
    assert.throws(() => withHandleOptions(leaf, { timeout: -1 }), { code: "INVALID_OPTIONS" });
    assert.throws(() => withHandleOptions(leaf, { signal: {} as AbortSignal }), {
      code: "INVALID_OPTIONS",
    });
  });
});
