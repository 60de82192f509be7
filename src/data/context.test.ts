import assert from "node:assert/strict";
import { test } from "node:test";
import { ActiveRequest } from "./context.js";

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
