import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { BackPressureError, ReplicaDiedError } from "../errors.js";
import type { CallMessage } from "../wire/protocol.js";
import { CancelScope } from "./cancel.js";
import { ReplicaConnection } from "./connection.js";
import { Router, type ReplicaChooser } from "./router.js";

/** A connection whose sent messages are recorded; the test answers for the replica. */
function replica(id: string): { connection: ReplicaConnection; sent: CallMessage[] } {
  const sent: CallMessage[] = [];
  return { connection: new ReplicaConnection(id, "d", (m) => sent.push(m)), sent };
}

const calls = (sent: CallMessage[]): number[] =>
  sent.filter((m) => m.t === "call").map((m) => m.id);
const ok = (r: { connection: ReplicaConnection }, id: number, v: unknown = id): void =>
  r.connection.onMessage({ t: "ok", id, v });
/** Picks the first replica with a free slot: deterministic, for the tests below. */
const first: ReplicaChooser = (replicas, max) => replicas.find((r) => r.ongoing < max);
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe("Router", () => {
  test("router - at most maxOngoingRequests per replica; a queued call starts when a slot frees", async () => {
    const a = replica("a");
    const b = replica("b");
    const router = new Router("d", "d", { maxOngoingRequests: 1, maxQueuedRequests: 10 }, first);
    router.setReplicas([a.connection, b.connection]);
    const results = [1, 2, 3].map((n) => router.call("m", [n]));
    assert.equal(calls(a.sent).length + calls(b.sent).length, 2);
    assert.equal(router.queued, 1);
    assert.equal(router.ongoing, 2);
    const [busyOne] = calls(a.sent);
    ok(a, busyOne!, "first");
    assert.equal(calls(a.sent).length, 2, "the queued call took the freed slot at once");
    assert.equal(router.queued, 0);
    ok(a, calls(a.sent)[1]!, "third");
    ok(b, calls(b.sent)[0]!, "second");
    assert.deepEqual(await Promise.all(results), ["first", "second", "third"]);
    assert.equal(router.ongoing, 0);
  });

  test("router - a replica that answers busy does not run the call: another replica runs it, exactly once", async () => {
    const a = replica("a");
    const b = replica("b");
    const router = new Router("d", "d", { maxOngoingRequests: 4, maxQueuedRequests: 10 }, first);
    router.setReplicas([a.connection, b.connection]);
    const result = router.call("m", []);
    const [id] = calls(a.sent);
    a.connection.onMessage({ t: "busy", id: id! });
    assert.equal(calls(b.sent).length, 1, "sent to the other replica");
    // A is full in this router's view until it says otherwise: the next call goes to B too.
    const next = router.call("m", []);
    assert.equal(calls(a.sent).length, 1);
    assert.equal(calls(b.sent).length, 2);
    ok(b, calls(b.sent)[0]!, "ran once");
    ok(b, calls(b.sent)[1]!);
    assert.equal(await result, "ran once");
    await next;
    a.connection.onMessage({ t: "free" });
    void router.call("m", []);
    assert.equal(calls(a.sent).length, 2, "after free, A takes calls again");
  });

  test("router - when every replica is busy the call waits first in line, and goes out on free", async () => {
    const a = replica("a");
    const router = new Router("d", "d", { maxOngoingRequests: 4, maxQueuedRequests: 10 });
    router.setReplicas([a.connection]);
    const early = router.call("m", ["early"]);
    const [id] = calls(a.sent);
    a.connection.onMessage({ t: "busy", id: id! });
    const late = router.call("m", ["late"]);
    assert.equal(router.queued, 2);
    a.connection.onMessage({ t: "free" });
    const sent = a.sent.filter((m) => m.t === "call");
    assert.deepEqual(
      sent.slice(1).map((m) => m.t === "call" && m.a[0]),
      ["early", "late"],
      "the bounced call keeps its place ahead of later ones",
    );
    ok(a, sent[1]!.id, "early");
    ok(a, sent[2]!.id, "late");
    assert.deepEqual(await Promise.all([early, late]), ["early", "late"]);
  });

  test("router - a stopping replica (busy, closing) gets nothing more; a removed one finishes what it has", async () => {
    const a = replica("a");
    const b = replica("b");
    const router = new Router("d", "d", { maxOngoingRequests: 4, maxQueuedRequests: 10 }, first);
    router.setReplicas([a.connection, b.connection]);
    const one = router.call("m", []);
    a.connection.onMessage({ t: "busy", id: calls(a.sent)[0]!, closing: true });
    a.connection.onMessage({ t: "free" });
    void router.call("m", []);
    assert.equal(calls(a.sent).length, 1, "nothing more to the stopping replica");
    assert.equal(calls(b.sent).length, 2);
    router.setReplicas([a.connection]); // b leaves, with two calls in flight
    assert.equal(router.ongoing, 2);
    ok(b, calls(b.sent)[0]!, "done");
    assert.equal(await one, "done");
  });

  test("router - past maxQueuedRequests a call fails with BackPressureError; a cancelled call frees its slot", async () => {
    const a = replica("a");
    const router = new Router("d", "d", { maxOngoingRequests: 1, maxQueuedRequests: 1 });
    router.setReplicas([a.connection]);
    const scope = new CancelScope();
    const running = router.call("m", [], { cancel: scope });
    const queued = router.call("m", []);
    await assert.rejects(router.call("m", []), BackPressureError);
    scope.cancel(new Error("gone"));
    await assert.rejects(running, /gone/);
    assert.deepEqual(
      a.sent.map((m) => m.t),
      ["call", "cancel", "call"],
      "the replica is told, and the queued call takes the slot",
    );
    ok(a, calls(a.sent)[1]!, "second");
    assert.equal(await queued, "second");
  });

  test("router - a replica whose channel closes fails its calls with ReplicaDiedError and gets no more", async () => {
    const a = replica("a");
    const b = replica("b");
    const router = new Router("d", "d", { maxOngoingRequests: 4, maxQueuedRequests: 10 }, first);
    router.setReplicas([a.connection, b.connection]);
    const lost = router.call("m", []);
    a.connection.close("exited with code 1");
    await assert.rejects(lost, ReplicaDiedError);
    await tick();
    void router.call("m", []);
    assert.equal(calls(a.sent).length, 1);
    assert.equal(calls(b.sent).length, 1);
    assert.equal(router.ongoing, 1);
  });
});
