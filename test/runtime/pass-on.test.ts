import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { GraphExecutionError, ValidationError, withHandleOptions } from "tributary";
import { serve } from "../serve.js";
import { eventually } from "./eventually.js";
import {
  app,
  earlyApp,
  streamArgApp,
  type EarlyCaller,
  type Adder,
  type Attempt,
  type Caller,
  type Outcome,
} from "../fixtures/pass-on-app.js";

/** The head of the message: the call, its method and the deployment. */
const summary =
  /^A call of adder\.add\(\) has an argument that cannot be sent to deployment "adder":\n/;

/** What a call with an argument that cannot be sent must say, and which argument. */
const unsendable: readonly [Attempt, RegExp][] = [
  ["promise", /arguments\[0\]: it is a Promise.*await it/],
  ["function", /arguments\[1\]: it is a function/],
  ["symbol", /arguments\[0\]: it is a symbol \(Symbol\(s\)\)/],
  ["nested-response", /arguments\[0\]\.x: it is the un-awaited result of adder\.double\(\)/],
  ["nested-stream", /arguments\[0\]\.s: it is the un-awaited result of adder\.endless\(\)/],
  ["stream-upstream", /arguments\[0\]: it is the stream that adder\.endless\(\) returned/],
];

describe(
  "handle arguments: un-awaited results and values that cannot be sent",
  { timeout: 240_000 },
  () => {
    for (const isolation of ["thread", "process"] as const) {
      test(`handles - inside a ${isolation} replica, a call with an argument that cannot be sent rejects at once with a ValidationError naming the deployment, method and argument`, async () => {
        await using server = await serve(app.withOptions({ caller: { isolation } }));
        // Bounded: before the fix these calls never settled inside the replica.
        const caller = server.getHandle<Caller>("caller", { timeout: "5s" });
        const outcomes = await Promise.all(unsendable.map(([kind]) => caller.attempt(kind)));
        assert.equal(outcomes.length, unsendable.length);
        outcomes.forEach((outcome: Outcome, i) => {
          const [kind, message] = unsendable[i]!;
          assert.equal(outcome.settled, "rejected", `${kind}: ${JSON.stringify(outcome)}`);
          if (outcome.settled !== "rejected") return;
          assert.equal(outcome.name, "ValidationError", kind);
          assert.equal(outcome.code, "VALIDATION_FAILED", kind);
          assert.match(outcome.message, summary, kind);
          assert.match(outcome.message, message, kind);
          assert.ok(outcome.ms < 2_000, `${kind} settled in ${outcome.ms} ms`);
        });
        // The streams passed on (one on its own, one nested in a value) were stopped: their
        // producers ended and their slots are free.
        const adder = server.getHandle<Adder>("adder", { timeout: "5s" });
        await eventually(
          async () => (await adder.streamsEnded()) === 2,
          5_000,
          "the streams ended",
        );
        await eventually(
          async () =>
            Object.values((await server.status()).applications)[0]!.deployments.adder!.ongoing ===
            0,
          5_000,
          "the adder's slot is free",
        );
      });

      test(`handles - a ${isolation} replica's result that holds an un-awaited stream fails saying so, and the stream is stopped`, async () => {
        await using server = await serve(app.withOptions({ caller: { isolation } }));
        const caller = server.getHandle<Caller>("caller", { timeout: "5s" });
        await assert.rejects(caller.nestedStreamResult(), (error: Error) => {
          assert.match(
            error.message,
            /result could not be sent back to the caller: result\.s: it is the un-awaited result of adder\.endless\(\), nested in a value; await it first/,
          );
          return true;
        });
        const adder = server.getHandle<Adder>("adder", { timeout: "5s" });
        await eventually(async () => (await adder.streamsEnded()) === 1, 5_000, "the stream ended");
        await eventually(
          async () =>
            Object.values((await server.status()).applications)[0]!.deployments.adder!.ongoing ===
            0,
          5_000,
          "the adder's slot is free",
        );
      });

      test(`handles - inside a ${isolation} replica, an un-awaited handle result passed as an argument is awaited and its value sent; its failure fails the call`, async () => {
        await using server = await serve(
          app.withOptions({ caller: { isolation }, adder: { isolation } }),
        );
        const caller = server.getHandle<Caller>("caller", { timeout: "5s" });
        const chained = await caller.attempt("chain");
        assert.equal(chained.settled, "resolved", JSON.stringify(chained));
        assert.equal(chained.settled === "resolved" && chained.value, 41);
        const failed = await caller.attempt("failed-upstream");
        assert.equal(failed.settled, "rejected", JSON.stringify(failed));
        if (failed.settled !== "rejected") return;
        assert.equal(failed.name, "GraphExecutionError");
        assert.match(failed.message, /Deployment "adder" failed in fail\(\): upstream failed/);
      });
    }

    for (const isolation of ["thread", "process"] as const) {
      test(`handles - a handle passed as an argument from a ${isolation} replica arrives as a live handle`, async () => {
        await using server = await serve(app.withOptions({ caller: { isolation } }));
        const caller = server.getHandle<Caller>("caller", { timeout: "5s" });
        assert.equal(await caller.passHandle(21), 42);
      });

      test(`handles - inside a ${isolation} replica, a handle's timeout and signal bound the wait for a response passed on`, async () => {
        await using server = await serve(
          app.withOptions({ caller: { isolation }, adder: { isolation } }),
        );
        const caller = server.getHandle<Caller>("caller", { timeout: "10s" });
        const [timedOut, cancelled] = await Promise.all([
          caller.boundedPassOn("timeout"),
          caller.boundedPassOn("signal"),
        ]);
        assert.equal(
          timedOut.settled === "rejected" && timedOut.code,
          "TIMEOUT",
          JSON.stringify(timedOut),
        );
        assert.match(
          timedOut.settled === "rejected" ? timedOut.message : "",
          /adder\.add\(\) timed out after 200 ms/,
        );
        assert.equal(
          cancelled.settled === "rejected" && cancelled.code,
          "CANCELLED",
          JSON.stringify(cancelled),
        );
        // Before, both waited for the 1.5 s response.
        assert.ok(
          timedOut.ms < 1_000 && cancelled.ms < 1_000,
          JSON.stringify([timedOut, cancelled]),
        );
      });

      test(`handles - inside a ${isolation} replica, a stream stopped with return() before its first item ends the pending next() and frees its replica's slot`, async () => {
        await using server = await serve(
          app.withOptions({
            caller: { isolation },
            adder: { isolation, maxOngoingRequests: 1 },
          }),
        );
        const caller = server.getHandle<Caller>("caller", { timeout: "10s" });
        // Before, the stream ran on, holding the only slot: the next call timed out.
        assert.deepEqual(await caller.abandonEarly(), {
          first: { value: undefined, done: true },
          next: 4,
        });
      });
    }

    for (const isolation of ["thread", "process"] as const) {
      test(`handles - values are taken when a call is made, a result returned, an item yielded (${isolation} replicas): what the caller, the instance or the generator changes next does not reach the other side`, async () => {
        await using server = await serve(
          app.withOptions({
            caller: { isolation },
            adder: { isolation, maxOngoingRequests: 1 },
          }),
        );
        const adder = server.getHandle<Adder>("adder", { timeout: "10s" });
        // One object, changed after each call (they go out in one turn of the event loop).
        const value = { x: 0 };
        const calls: PromiseLike<object>[] = [];
        for (; value.x < 5; value.x++) calls.push(adder.echo(value));
        assert.deepEqual(
          await Promise.all(calls),
          [0, 1, 2, 3, 4].map((x) => ({ x })),
        );
        /** While `holding` has the only slot, a call changed 50 ms later gets what it was made with. */
        const sentAsMade = async (holding: PromiseLike<unknown>, settleMs: number) => {
          await new Promise((resolve) => setTimeout(resolve, settleMs));
          const value = { v: "at call time" };
          const echoed = adder.echo(value);
          await new Promise((resolve) => setTimeout(resolve, 50));
          value.v = "changed after the call";
          assert.deepEqual(await echoed, { v: "at call time" });
          await holding;
        };
        // A call that waits in the queue (the only slot is taken) is sent as it was made.
        await sentAsMade(adder.slowDouble(1, 300), 0);
        const caller = server.getHandle<Caller>("caller", { timeout: "10s" });
        // A call the replica answers busy (another router, the caller replica's, holds its
        // only slot) goes again as it was made, not as its caller changed it since.
        await sentAsMade(caller.holdAdder(400), 150);
        // From inside a replica.
        assert.deepEqual(
          await caller.reuse(),
          [0, 1, 2, 3, 4].map((x) => ({ x })),
        );
        // Two results that are one object of the instance's, changed by the second call.
        assert.deepEqual(await Promise.all([adder.bump(), adder.bump()]), [{ v: 1 }, { v: 2 }]);
        // A generator that changes the object it yielded.
        const items: unknown[] = [];
        for await (const item of adder.reused(5)) items.push(item);
        assert.deepEqual(
          items,
          [0, 1, 2, 3, 4].map((i) => ({ i })),
        );
      });
    }

    for (const isolation of ["thread", "process"] as const) {
      test(`handles - a call a ${isolation} replica's constructor makes before it knows the target's replicas is sent as it was made`, async () => {
        await using server = await serve(
          earlyApp.withOptions({ earlyCaller: { isolation }, adder: { isolation } }),
        );
        const caller = server.getHandle<EarlyCaller>("earlyCaller", { timeout: "10s" });
        assert.deepEqual(await caller.early(), { v: "at call time" });
      });
    }

    test("handles - a thread replica that returns a typed array it keeps: the first answer moves it, the second says why it cannot be sent and what to do", async () => {
      await using server = await serve(app);
      const adder = server.getHandle<Adder>("adder", { timeout: "5s" });
      assert.deepEqual(Array.from(await adder.kept()), [1, 1, 1, 1]);
      await assert.rejects(adder.kept(), (error: Error & { cause?: Error }) => {
        assert.match(
          error.cause?.message ?? "",
          /result could not be sent back.*detached.*Typed arrays in results move to the caller.*x\.slice\(\)/s,
        );
        return true;
      });
    });

    test("handles - from the main thread, a stream stopped with return() before its first item, or while a next() waits, ends that next() and stops the producer", async () => {
      await using server = await serve(app.withOptions({ adder: { maxOngoingRequests: 1 } }));
      const adder = server.getHandle<Adder>("adder", { timeout: "5s" });
      const early = adder.endless(20)[Symbol.asyncIterator]();
      const first = early.next();
      await early.return!();
      assert.deepEqual(await first, { value: undefined, done: true });
      assert.equal(await adder.double(2), 4, "the slot is free");
      const open = adder.endless(20)[Symbol.asyncIterator]();
      assert.deepEqual(await open.next(), { value: 0, done: false });
      const waiting = open.next();
      await open.return!();
      assert.deepEqual(await waiting, { value: undefined, done: true });
      assert.equal(await adder.double(3), 6);
      const deadline = Date.now() + 5_000;
      while ((await adder.streamsEnded()) < 2 && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(await adder.streamsEnded(), 2, "both producers stopped");
    });

    test("handles - next() called again before the last one settled gets the next item, in order, as from an async generator", async () => {
      await using server = await serve(app);
      const adder = server.getHandle<Adder>("adder", { timeout: "5s" });
      const items = adder.endless(20)[Symbol.asyncIterator]();
      const three = await Promise.all([items.next(), items.next(), items.next()]);
      assert.deepEqual(three, [
        { value: 0, done: false },
        { value: 1, done: false },
        { value: 2, done: false },
      ]);
      assert.deepEqual(await items.next(), { value: 3, done: false });
      const waiting = [items.next(), items.next()];
      await items.return!();
      assert.deepEqual(await Promise.all(waiting), [
        { value: undefined, done: true },
        { value: undefined, done: true },
      ]);
    });

    test("graph - a step's stream passed to another step fails the request saying so, and the stream is stopped", async () => {
      await using server = await serve(streamArgApp);
      await assert.rejects(server.handle.call(5 as never), (error: unknown) => {
        assert.ok(error instanceof GraphExecutionError, String(error));
        assert.match(
          error.message,
          /adder\.endless\(\) returned a stream, which adder\.double\(\) takes as an input; a stream can only be the graph's output/,
        );
        return true;
      });
      const adder = server.getHandle<Adder>("adder", { timeout: "5s" });
      await eventually(async () => (await adder.streamsEnded()) === 1, 5_000, "the stream ended");
      await eventually(
        async () =>
          Object.values((await server.status()).applications)[0]!.deployments.adder!.ongoing === 0,
        5_000,
        "the adder's slot is free",
      );
    });

    test("handles - a handle passed as an argument from the main thread arrives as a live handle; nested in a value, or with options, it is refused saying why", async () => {
      await using server = await serve(app);
      const adder = server.getHandle<Adder>("adder", { timeout: "5s" });
      assert.equal(await adder.viaHandle(adder, 5), 10);
      await assert.rejects(
        adder.echo({ h: adder }),
        (error: unknown) =>
          error instanceof ValidationError &&
          /arguments\[0\]\.h: it is a handle to deployment "adder", nested in a value; pass it as an argument of its own/.test(
            error.message,
          ),
      );
      await assert.rejects(
        adder.viaHandle(withHandleOptions(adder, { timeout: 100 }), 1),
        /arguments\[0\]: it is a handle to deployment "adder" given options \(withHandleOptions\)/,
      );
    });

    test("handles - from the main thread, an un-awaited result is awaited and passed on, and arguments that cannot be sent reject at once naming the argument", async () => {
      await using server = await serve(app);
      const adder = server.getHandle<Adder>("adder", { timeout: "5s" });
      const pass = (value: unknown) => value as number;
      assert.equal(await adder.add(pass(adder.double(2)), 1), 5);
      const started = Date.now();
      await assert.rejects(
        withHandleOptions(adder, { timeout: 200 }).add(pass(adder.slowDouble(1, 1_500)), 1),
        { code: "TIMEOUT" },
      );
      assert.ok(
        Date.now() - started < 1_000,
        "the timeout bounds the wait for the passed response",
      );
      // A signal aborted already, and a passed response that then fails: one CANCELLED, and
      // the response's failure handled (an unhandled rejection would end this process).
      await assert.rejects(
        withHandleOptions(adder, { signal: AbortSignal.abort() }).add(pass(adder.fail()), 1),
        { code: "CANCELLED" },
      );
      await new Promise((resolve) => setTimeout(resolve, 200));
      await assert.rejects(adder.add(pass(adder.fail()), 1), (error: unknown) => {
        assert.ok(error instanceof GraphExecutionError, String(error));
        assert.match(error.message, /Deployment "adder" failed in fail\(\): upstream failed/);
        return true;
      });
      const cases: [Promise<unknown>, RegExp][] = [
        [adder.add(pass(Promise.resolve(1)), 1), /arguments\[0\]: it is a Promise/],
        [
          adder.add(
            1,
            pass(() => 1),
          ),
          /arguments\[1\]: it is a function/,
        ],
        [adder.add(pass(Symbol("s")), 1), /arguments\[0\]: it is a symbol/],
        [
          adder.add(pass([1, { y: adder.double(1) }]), 1),
          /arguments\[0\]\[1\]\.y: it is the un-awaited result of adder\.double\(\)/,
        ],
      ];
      for (const [call, message] of cases) {
        const started = Date.now();
        await assert.rejects(call, (error: unknown) => {
          assert.ok(error instanceof ValidationError, String(error));
          assert.match(error.message, summary);
          assert.match(error.message, message);
          return true;
        });
        assert.ok(Date.now() - started < 2_000);
      }
    });
  },
);
