import assert from "node:assert/strict";
import { test } from "node:test";
import { AsyncLocalStorage } from "node:async_hooks";
import {
  ActiveRequest,
  carries,
  currentRequest,
  requestStorage,
  returned,
  runForRequest,
  uncarry,
} from "./context.js";

const request = (id: string) => new ActiveRequest(id, "d", "d#1");

test("context - a batch's request is cancelled once every item's is, and forgets its listeners when done", () => {
  const items = [request("a"), request("b"), undefined];
  const { request: batch } = ActiveRequest.ofBatch(items);
  assert.equal(batch?.requestId, "a");
  for (const item of items) item?.cancel(new Error("gave up"));
  assert.equal(batch.cancelled, false, "an item with no request never gives up");

  const two = [request("c"), request("d")];
  const second = ActiveRequest.ofBatch(two);
  two[0]!.cancel(new Error("c gave up"));
  assert.equal(second.request!.cancelled, false);
  two[1]!.cancel(new Error("d gave up"));
  assert.equal(second.request!.cancelled, true);
  assert.equal((second.request!.signal.reason as Error).message, "d gave up");

  // Once the batch is over, its listeners are gone: cancelling its items reaches nothing.
  const three = [request("e"), request("f")];
  const third = ActiveRequest.ofBatch(three);
  third.done();
  for (const r of three) r.cancel(new Error("late"));
  assert.equal(third.request!.cancelled, false);
  // One item: its own request, nothing to forget.
  const one = request("g");
  assert.equal(ActiveRequest.ofBatch([one]).request, one);
});

/** With async_hooks behind AsyncLocalStorage (Node 20, 22), the store is switched off when idle. */
const HOOKED = "_enable" in AsyncLocalStorage.prototype;
const tick = () => new Promise((resolve) => setImmediate(resolve));

test("context - a call's synchronous code sees its request; only a carried call's awaited code does too", async () => {
  const a = request("a");
  const seen: (string | undefined)[] = [];
  // Not carried: the synchronous part sees it, nothing after it (nor outside) does.
  await runForRequest(a, false, async () => {
    seen.push(currentRequest()?.requestId);
    await tick();
    seen.push(currentRequest()?.requestId);
  });
  assert.deepEqual(seen, ["a", undefined]);
  assert.equal(currentRequest(), undefined);
  // Carried: the code after its awaits sees it too, and two at once keep their own.
  const b = request("b");
  const ids = await Promise.all(
    [a, b].map((r) =>
      runForRequest(r, true, async () => {
        await tick();
        const after = currentRequest()?.requestId;
        await tick();
        return [after, currentRequest()?.requestId];
      }).finally(uncarry),
    ),
  );
  assert.deepEqual(ids, [
    ["a", "a"],
    ["b", "b"],
  ]);
  assert.equal(currentRequest(), undefined);
});

test("context - a method is carried until it has returned a plain value, and for good once it has returned a promise", () => {
  const sync = () => 1;
  const sometimes = () => 1;
  assert.equal(carries(sync), true, "not called yet: it could await");
  returned(sync, false);
  assert.equal(carries(sync), !HOOKED, "a plain value: nothing of its code is left to carry");
  returned(sometimes, false);
  returned(sometimes, true);
  returned(sometimes, false);
  assert.equal(carries(sometimes), true, "once it returned a promise, always");
});

test(
  "context - with async_hooks, the store is switched off a second after nothing is carried, and on again for the next carried call",
  { skip: !HOOKED && "AsyncLocalStorage here needs no async_hooks (AsyncContextFrame)" },
  async () => {
    const enabled = () => (requestStorage as unknown as { enabled: boolean }).enabled;
    await runForRequest(request("c"), true, async () => tick()).finally(uncarry);
    assert.equal(enabled(), true);
    await new Promise((resolve) => setTimeout(resolve, 1_300));
    assert.equal(enabled(), false, "idle for a second: switched off");
    const id = await runForRequest(request("d"), true, async () => {
      await tick();
      return currentRequest()?.requestId;
    }).finally(uncarry);
    assert.equal(id, "d");
    assert.equal(enabled(), true);
  },
);
