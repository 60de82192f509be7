import assert from "node:assert/strict";
import { test } from "node:test";
import { ReplicaConnection } from "./connection.js";
import { awaitingNothing, Responses, type PendingCall } from "./responses.js";
import { Router, type ReplicaChooser } from "./router.js";

// One file of its own: the count is the thread's, and a call left pending by another
// test in the same process would hold it above zero.

const first: ReplicaChooser = (replicas, max) => replicas.find((r) => r.ongoing < max);

test("responses - a call made while the thread awaits no answer goes at once; while any is awaited, or if it moves a buffer, it may be gathered", async () => {
  assert.ok(awaitingNothing(), "nothing sent yet");
  const nows: (boolean | undefined)[] = [];
  const ids: number[] = [];
  const record = (message: { t: string; id: number }, _transfer: unknown, now?: boolean) => {
    if (message.t !== "call") return;
    nows.push(now);
    ids.push(message.id);
  };
  const one = new ReplicaConnection("a#1", "a", record);
  const two = new ReplicaConnection("b#1", "b", record);
  const routerA = new Router("a", "a", { maxOngoingRequests: 9, maxQueuedRequests: 9 }, first);
  const routerB = new Router("b", "b", { maxOngoingRequests: 9, maxQueuedRequests: 9 }, first);
  routerA.setReplicas([one]);
  routerB.setReplicas([two]);
  const results = [
    routerA.call("f", [1]),
    // Awaited on another channel counts too: under load, something always is in flight.
    routerB.call("f", [2]),
    // Changeable arguments go at once whatever the count (the caller may change them).
    routerB.call("f", [{ x: 1 }]),
  ];
  assert.deepEqual(
    nows,
    [true, false, true],
    "only the first found the thread waiting for nothing",
  );
  assert.ok(!awaitingNothing());

  // Every way a call stops being awaited counts it off: an answer, an error, a cancel,
  // a stream's end, a channel closing.
  one.onMessage({ t: "ok", id: ids[0]!, v: 1 });
  two.onMessage({ t: "err", id: ids[1]!, e: { name: "Error", message: "no" }, user: true });
  two.onMessage({ t: "ok", id: ids[2]!, v: 3 });
  await Promise.allSettled(results);
  assert.ok(awaitingNothing(), "all three settled");
  // (Its router has answered the caller of a call it cancels; not awaited here.)
  void routerA.call("f", [4]);
  one.cancel(ids.at(-1)!, "abort");
  assert.ok(awaitingNothing(), "a cancelled call is no longer awaited");
  const buffer = new Float32Array(4);
  const moving = routerA.call("f", [buffer], { transfer: [buffer.buffer] });
  assert.equal(nows.at(-1), false, "a call that moves a buffer waits for its batch");
  one.onMessage({ t: "ok", id: ids.at(-1)!, v: 1 });
  await moving;
  const streamed = routerA.call("f", [3]);
  assert.equal(nows.at(-1), true);
  one.onMessage({ t: "stream", id: ids.at(-1)! });
  one.onMessage({ t: "end", id: ids.at(-1)! });
  await streamed;
  assert.ok(awaitingNothing(), "a stream's end settles it");
  // A consumer that stops reading early; a replica that hands a call back (busy).
  const early = routerA.call("f", [5]);
  one.onMessage({ t: "stream", id: ids.at(-1)! });
  const reader = (await early) as AsyncIterableIterator<unknown>;
  assert.ok(!awaitingNothing());
  await reader.return!();
  assert.ok(awaitingNothing(), "a stream its consumer left is no longer awaited");
  const handedBack = routerA.call("f", [6]);
  const handedId = ids.at(-1)!;
  one.onMessage({ t: "busy", id: handedId });
  // The only replica is full until it says a slot is free: then the call goes again.
  assert.ok(awaitingNothing(), "handed back, it waits in the router, not for an answer");
  one.onMessage({ t: "free" });
  assert.notEqual(ids.at(-1), handedId, "sent again");
  one.onMessage({ t: "ok", id: ids.at(-1)!, v: 6 });
  assert.equal(await handedBack, 6);
  assert.ok(awaitingNothing(), "the call handed back and sent again counted once");

  const control = new Responses();
  const call = { resolve: () => {}, reject: () => {} } as unknown as PendingCall;
  control.addWithId(-1, call);
  control.addWithId(-1, call);
  const calls = new Responses();
  calls.add(call);
  calls.add(call);
  assert.ok(!awaitingNothing());
  control.rejectAll(() => new Error("gone"));
  assert.ok(!awaitingNothing(), "two still awaited");
  calls.rejectAll(() => new Error("gone"));
  assert.ok(
    awaitingNothing(),
    "a call held twice under one id counted once; rejectAll counts them off",
  );
});
