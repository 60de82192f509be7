import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { GraphExecutionError, ValidationError } from "tributary";
import { serve } from "../serve.js";
import {
  app,
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
  ["stream-upstream", /arguments\[0\]: it is the stream that adder\.count\(\) returned/],
];

describe(
  "handle arguments: un-awaited results and values that cannot be sent",
  { timeout: 120_000 },
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

    test("handles - from the main thread, an un-awaited result is awaited and passed on, and arguments that cannot be sent reject at once naming the argument", async () => {
      await using server = await serve(app);
      const adder = server.getHandle<Adder>("adder", { timeout: "5s" });
      const pass = (value: unknown) => value as number;
      assert.equal(await adder.add(pass(adder.double(2)), 1), 5);
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
