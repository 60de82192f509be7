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

test(
  "context - with async_hooks, the store is switched off a second after nothing is carried, and on again for the next carried call",
  { skip: !HOOKED && "AsyncLocalStorage here needs no async_hooks (AsyncContextFrame)" },
  async () => {
    const enabled = () => (requestStorage as unknown as { enabled: boolean }).enabled;
    const carried = (id: string) =>
      runForRequest(request(id), true, async () => {
        await tick();
        return currentRequest()?.requestId;
      }).finally(uncarry);
    assert.equal(await carried("c"), "c");
    assert.equal(enabled(), true);
    // Carried again half a second later: the second counts from the end of that one.
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(await carried("c2"), "c2");
    await new Promise((resolve) => setTimeout(resolve, 700));
    assert.equal(enabled(), true, "0.7 s after the last carried call ended: still on");
    await new Promise((resolve) => setTimeout(resolve, 600));
    assert.equal(enabled(), false, "idle for a second: switched off");
    assert.equal(await carried("d"), "d", "on again");
    assert.equal(enabled(), true);
    // An extra uncarry() (a bug) cannot drive the count below 0 and switch the store off
    // under a call that is carried.
    uncarry();
    let release!: () => void;
    const held = runForRequest(request("e"), true, async () => {
      await new Promise<void>((resolve) => (release = resolve));
      return currentRequest()?.requestId;
    }).finally(uncarry);
    await new Promise((resolve) => setTimeout(resolve, 1_300));
    release();
    assert.equal(await held, "e");
  },
);

test("context - a method is carried until it has returned a plain value; once any method has returned a promise or a stream, every call is", () => {
  assert.equal(carries("sync"), true, "not called yet: it could await");
  returned("sync", false);
  assert.equal(carries("sync"), !HOOKED, "a plain value: nothing of its code is left to carry");
  returned("sometimes", false);
  returned("sometimes", true);
  returned("sometimes", false);
  assert.equal(carries("sometimes"), true, "once it returned a promise, always");
  // The store is on for good now: the plain method is carried too, as every call was before.
  assert.equal(carries("sync"), true);
});
