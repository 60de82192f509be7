import assert from "node:assert/strict";
import { test } from "node:test";
import { serve } from "../serve.js";
import { app, type Ids, type Plain } from "../fixtures/context-app.js";

// A replica carries a call's request across its awaits only for code that can await (on Node
// 20 and 22 that costs every promise of the thread a hook): a method that returned a plain
// value runs without it afterwards. Each way of reading the request must still see its own.
test(
  "request context - every call sees its own request, in synchronous code, after awaits, and in nested calls, call after call",
  { timeout: 60_000 },
  async () => {
    await using server = await serve(app);
    const methods = ["now", "later", "awaited", "nested", "nestedAfter"] as const;
    const call = (method: (typeof methods)[number], requestId: string) =>
      server.getHandle<Ids>("Ids", { requestId })[method]();
    for (const method of methods) {
      // One at a time (the first call is the one a method's kind is learned from), then together.
      for (let i = 0; i < 3; i++)
        assert.equal(await call(method, `${method}-${i}`), `${method}-${i}`);
      const ids = Array.from({ length: 8 }, (_, i) => `${method}-together-${i}`);
      assert.deepEqual(await Promise.all(ids.map((id) => call(method, id))), ids);
    }
    // The methods mixed, all at once: each call keeps its own request.
    const mixed = methods.flatMap((method) =>
      [0, 1].map((i) => [method, `mixed-${method}-${i}`] as const),
    );
    assert.deepEqual(
      await Promise.all(mixed.map(([method, id]) => call(method, id))),
      mixed.map(([, id]) => id),
    );
    // A method that returned a plain value is not carried: a response it passes on is sent
    // after it returned, with the request it was made for.
    const plain = (requestId: string) => server.getHandle<Plain>("Plain", { requestId });
    assert.equal(await plain("p0").passOn(false), "plain");
    assert.equal(await plain("p1").passOn(true), "p1");
  },
);
