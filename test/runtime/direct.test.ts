import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { serve } from "../serve.js";
import { app, payload, type Caller, type Leaf } from "../fixtures/direct-app.js";

describe("data plane: replicas call each other directly", { timeout: 150_000 }, () => {
  const layouts = {
    "thread to thread (MessageChannel)": app,
    "process to process (Unix socket)": app.withOptions({
      leaf: { isolation: "process" },
      caller: { isolation: "process" },
    }),
    "thread to process (Unix socket)": app.withOptions({ leaf: { isolation: "process" } }),
  };
  for (const [layout, served] of Object.entries(layouts)) {
    test(`direct - ${layout}: replica-to-replica calls keep completing while the main thread is blocked for 300 ms`, async () => {
      await using server = await serve(served);
      const caller = server.getHandle<Caller>("caller");
      await caller.loop(200); // membership and ports are in place
      const loop = caller.loop(1_200);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const blockedFrom = Date.now();
      while (Date.now() - blockedFrom < 300) {
        // The main thread (front door, control plane) does nothing else for 300 ms.
      }
      const blockedTo = Date.now();
      const done = await loop;
      const during = done.filter((t) => t > blockedFrom + 20 && t < blockedTo - 20);
      assert.ok(
        during.length >= 20,
        `${during.length} of ${done.length} calls completed inside the 260 ms the main thread was blocked`,
      );
    });
  }

  test("direct - several routers filling one deployment: each replica runs at most maxOngoingRequests, every call is answered once", async () => {
    await using server = await serve(app);
    const caller = server.getHandle<Caller>("caller");
    // 2 callers (each with its own router) × 6 calls at once, on 2 leaves capped at 2 each.
    const results = (await Promise.all([caller.burst(6, 50), caller.burst(6, 50)])).flat();
    assert.equal(results.length, 12);
    for (const { most } of results) assert.ok(most <= 2, `a leaf ran ${most} calls at once`);
    assert.deepEqual(new Set(results.map((r) => r.replica)), new Set(["leaf#1", "leaf#2"]));
  });

  test("direct - one typed array in several calls at once: the first moves it, the others get copies, none is lost; a moved one sent again is refused at once", async () => {
    await using server = await serve(app);
    const caller = server.getHandle<Caller>("caller");
    const leaf = server.getHandle<Leaf>("leaf");
    const expected = (seed: number) => ({ length: 1024, sum: seed * 1024 + 523_776 });
    // From this thread: two replicas, so pairs go to one replica (one batch) or to both.
    for (let seed = 0; seed < 8; seed++) {
      const data = payload(seed);
      const answers = await Promise.all([leaf.weigh(data, 0), leaf.weigh(data, 0)]);
      assert.deepEqual(answers, [expected(seed), expected(seed)]);
      assert.equal(data.byteLength, 0, "the first call moved the buffer");
      const started = Date.now();
      await assert.rejects(leaf.weigh(data, 0), (error: Error & { code?: string }) => {
        assert.equal(error.code, "VALIDATION_FAILED");
        assert.match(error.message, /moved to a thread replica by an earlier call.*x\.slice\(\)/);
        return true;
      });
      assert.ok(Date.now() - started < 1_000, "refused at once");
    }
    // From a replica, to the replicas of another deployment.
    for (let seed = 0; seed < 4; seed++)
      assert.deepEqual(await caller.weighSame(seed), [expected(seed), expected(seed)]);
    // More calls than the leaves' slots (2 × 2): those that wait in the queue have copies.
    const shared = payload(9);
    assert.deepEqual(
      await Promise.all(Array.from({ length: 7 }, () => leaf.weigh(shared, 30))),
      Array<unknown>(7).fill(expected(9)),
    );
    // A process replica (which copies) and a thread replica (which moves), in either order.
    await using processes = await serve(app.withOptions({ leaf: { isolation: "process" } }));
    const copying = processes.getHandle<Leaf>("leaf");
    for (const threadFirst of [true, false]) {
      const data = payload(3);
      const calls = threadFirst
        ? [leaf.weigh(data, 30), copying.weigh(data, 30)]
        : [copying.weigh(data, 30), leaf.weigh(data, 30)];
      assert.deepEqual(await Promise.all(calls), [expected(3), expected(3)]);
    }
  });

  test("direct - a view into part of a typed array, in a call beside one that moves the whole array, is answered either way round", async () => {
    await using server = await serve(app);
    const caller = server.getHandle<Caller>("caller");
    const leaf = server.getHandle<Leaf>("leaf");
    const whole = (seed: number) => ({ length: 1024, sum: seed * 1024 + 523_776 });
    const half = (seed: number) => ({ length: 512, sum: seed * 512 + 130_816 });
    // Two replicas: over 8 pairs, the two calls of a pair go to different ones.
    for (let seed = 0; seed < 8; seed++) {
      const data = payload(seed);
      const answers = await Promise.all([
        leaf.weigh(data, 0),
        leaf.weigh(data.subarray(0, 512), 0),
      ]);
      assert.deepEqual(answers, [whole(seed), half(seed)]);
      const again = payload(seed);
      const reversed = await Promise.all([
        leaf.weigh(again.subarray(0, 512), 0),
        leaf.weigh(again, 0),
      ]);
      assert.deepEqual(reversed, [half(seed), whole(seed)]);
    }
    // From a replica, to the replicas of another deployment.
    for (let seed = 0; seed < 4; seed++)
      assert.deepEqual(await caller.weighWithView(seed), [whole(seed), half(seed), whole(seed)]);
  });

  test("direct - a call that moved its buffers and was answered busy is sent again with them intact", async () => {
    // Three routers (two replicas' and this thread's) fill leaves capped at 2 each with calls
    // whose Float32Array moves to the replica: the calls a full leaf hands back carry their
    // buffers back, or they would be sent again empty (the caller's copy is detached).
    await using server = await serve(app);
    const caller = server.getHandle<Caller>("caller");
    const leaf = server.getHandle<Leaf>("leaf");
    const expected = (seed: number) => ({ length: 1024, sum: seed * 1024 + 523_776 });
    const [a, b, c] = await Promise.all([
      caller.weighBurst(8, 30),
      caller.weighBurst(8, 30),
      Promise.all(Array.from({ length: 8 }, (_, i) => leaf.weigh(payload(i), 30))),
    ]);
    for (const results of [a, b, c])
      assert.deepEqual(
        results,
        results.map((_, i) => expected(i)),
      );
  });
});
