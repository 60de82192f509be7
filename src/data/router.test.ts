import assert from "node:assert/strict";
import { describe, mock, test } from "node:test";
import {
  BackPressureError,
  QueueTimeoutError,
  ReplicaDiedError,
  TimeoutError,
  ValidationError,
} from "../errors.js";
import type { CallMessage } from "../wire/protocol.js";
import { CancelScope } from "./cancel.js";
import { ReplicaConnection } from "./connection.js";
import { powerOfTwoChoices, Router, type ReplicaChooser, type RoutedReplica } from "./router.js";

/** A connection whose sent messages are recorded; the test answers for the replica. */
function replica(id: string): { connection: ReplicaConnection; sent: CallMessage[] } {
  const sent: CallMessage[] = [];
  return { connection: new ReplicaConnection(id, "d", (m) => sent.push(m)), sent };
}

/** The model each call sent to a replica was for. */
const modelsSent = (sent: CallMessage[]): (string | undefined)[] =>
  sent.filter((m) => m.t === "call").map((m) => (m.t === "call" ? m.mm : undefined));
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

  test("router - a call the replica hands back with its arguments goes again with those, moving their buffers", async () => {
    const sent: { message: CallMessage; transfer: readonly unknown[] }[] = [];
    const a = new ReplicaConnection("a", "d", (message, transfer = []) =>
      sent.push({ message, transfer }),
    );
    const router = new Router("d", "d", { maxOngoingRequests: 4, maxQueuedRequests: 10 }, first);
    router.setReplicas([a]);
    const data = new Float32Array([1, 2, 3]);
    const result = router.call("m", [data], { transfer: [data.buffer] });
    assert.deepEqual(sent[0]!.transfer, [data.buffer]);
    // The replica was full: the buffer it was moved comes back with the arguments.
    const back = [new Float32Array([1, 2, 3])];
    a.onMessage({ t: "busy", id: sent[0]!.message.id, a: back });
    a.onMessage({ t: "free" });
    assert.equal(sent.length, 2, "sent again once the replica is free");
    const again = sent[1]!.message;
    assert.ok(again.t === "call");
    assert.equal(again.a, back, "with the arguments the replica gave back");
    assert.deepEqual(sent[1]!.transfer, [back[0]!.buffer], "whose buffer moves again");
    a.onMessage({ t: "ok", id: again.id, v: 6 });
    assert.equal(await result, 6);
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

  test("router - a call that waits in the queue past maxQueueWait fails with QueueTimeoutError naming its request; one served in time runs", async (t) => {
    mock.timers.enable({ apis: ["setTimeout", "Date"] });
    t.after(() => mock.timers.reset());
    const a = replica("a");
    const router = new Router("d", "d", {
      maxOngoingRequests: 1,
      maxQueuedRequests: 10,
      maxQueueWaitMs: 100,
    });
    router.setReplicas([a.connection]);
    const running = router.call("m", ["running"]);
    const late = router.call("m", ["late"], { requestId: "req-7" });
    mock.timers.tick(50);
    const served = router.call("m", ["served"]);
    mock.timers.tick(50);
    const error = await late.then(
      () => assert.fail("the queued call should have failed"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof QueueTimeoutError);
    assert.equal(error.code, "QUEUE_TIMEOUT");
    assert.equal(error.requestId, "req-7");
    assert.equal(error.waitedMs, 100);
    assert.match(error.message, /Request req-7 waited 100 ms in the queue of deployment "d"/);
    assert.equal(router.queued, 1, "the one that came later still waits");
    ok(a, calls(a.sent)[0]!, "done");
    assert.equal(await running, "done");
    assert.equal(calls(a.sent).length, 2, "the late call was never sent; the served one was");
    mock.timers.tick(1000);
    ok(a, calls(a.sent)[1]!, "in time");
    assert.equal(await served, "in time", "a dispatched call is not failed by the queue wait");
  });

  test("router - without maxQueueWait a queued call waits as long as it takes", async (t) => {
    mock.timers.enable({ apis: ["setTimeout", "Date"] });
    t.after(() => mock.timers.reset());
    const a = replica("a");
    const router = new Router("d", "d", { maxOngoingRequests: 1, maxQueuedRequests: 10 });
    router.setReplicas([a.connection]);
    void router.call("m", []);
    const queued = router.call("m", []);
    mock.timers.tick(60_000);
    assert.equal(router.queued, 1);
    ok(a, calls(a.sent)[0]!);
    ok(a, calls(a.sent)[1]!, "ran");
    assert.equal(await queued, "ran");
  });

  test("router - a call for a model goes to the replica that has it loaded and carries the model id", () => {
    const a = replica("a");
    const b = replica("b");
    const router = new Router("d", "d", { maxOngoingRequests: 4, maxQueuedRequests: 10 });
    a.connection.models = new Set(["m1"]);
    a.connection.multiplexed = b.connection.multiplexed = true;
    b.connection.models = new Set(["m2"]);
    router.setReplicas([a.connection, b.connection]);
    for (let i = 0; i < 3; i++) {
      void router.call("m", [], { multiplexedModelId: "m2" });
      void router.call("m", [], { multiplexedModelId: "m1" });
    }
    assert.deepEqual(modelsSent(a.sent), ["m1", "m1", "m1"]);
    assert.deepEqual(modelsSent(b.sent), ["m2", "m2", "m2"]);
  });

  test("router - a model no replica has goes to a free replica with the fewest models, and then stays there", () => {
    const a = replica("a");
    const b = replica("b");
    const router = new Router("d", "d", { maxOngoingRequests: 4, maxQueuedRequests: 10 });
    a.connection.models = new Set(["m1", "m2"]);
    a.connection.multiplexed = b.connection.multiplexed = true;
    router.setReplicas([a.connection, b.connection]);
    void router.call("m", [], { multiplexedModelId: "m3" });
    assert.deepEqual(modelsSent(b.sent), ["m3"]);
    // Before b reports it, this router remembers where it sent m3.
    void router.call("m", [], { multiplexedModelId: "m3" });
    assert.deepEqual(modelsSent(b.sent), ["m3", "m3"]);
    assert.equal(calls(a.sent).length, 0);
  });

  test("router - while the replicas with its model are full a call waits for them, then takes another replica (a model in demand spreads)", async (t) => {
    mock.timers.enable({ apis: ["setTimeout", "Date"] });
    t.after(() => mock.timers.reset());
    const a = replica("a");
    const b = replica("b");
    const router = new Router(
      "d",
      "d",
      { maxOngoingRequests: 1, maxQueuedRequests: 10 },
      first,
      500,
    );
    a.connection.models = new Set(["m1"]);
    a.connection.multiplexed = b.connection.multiplexed = true;
    router.setReplicas([a.connection, b.connection]);
    void router.call("m", [], { multiplexedModelId: "m1" });
    const second = router.call("m", [], { multiplexedModelId: "m1" });
    const third = router.call("m", [], { multiplexedModelId: "m1" });
    assert.equal(router.queued, 2, "b is free, but the calls wait for the replica with m1");
    // A call without a model is not held up behind them.
    void router.call("m", ["any"]);
    assert.equal(calls(b.sent).length, 1);
    ok(b, calls(b.sent)[0]!);
    assert.equal(calls(b.sent).length, 1, "b's free slot is not taken by a call waiting for m1");
    ok(a, calls(a.sent)[0]!);
    assert.deepEqual(modelsSent(a.sent), ["m1", "m1"], "a freed: the oldest waiting call takes it");
    mock.timers.tick(500);
    assert.deepEqual(modelsSent(b.sent), [undefined, "m1"], "after the match wait, b takes m1 too");
    assert.equal(router.queued, 0);
    ok(a, calls(a.sent)[1]!, "second");
    ok(b, calls(b.sent)[1]!, "third");
    assert.deepEqual(await Promise.all([second, third]), ["second", "third"]);
  });

  test("router - calls that name a model go to any free replica of a deployment that does not multiplex", () => {
    const a = replica("a");
    const b = replica("b");
    const router = new Router("d", "d", { maxOngoingRequests: 1, maxQueuedRequests: 10 }, first);
    router.setReplicas([a.connection, b.connection]);
    void router.call("m", [], { multiplexedModelId: "m1" });
    void router.call("m", [], { multiplexedModelId: "m1" });
    assert.equal(calls(a.sent).length, 1);
    assert.equal(calls(b.sent).length, 1, "no wait for the replica the first call went to");
    assert.equal(router.queued, 0);
  });

  test("power of two choices - the less busy of two different replicas, within the cap; any free one when both are full", (t) => {
    const replicas = (...ongoing: number[]): RoutedReplica[] =>
      ongoing.map((n, i) => ({ ongoing: n, connection: { replica: `r${i}` } }) as never);
    const name = (r: RoutedReplica | undefined): string | undefined =>
      r && (r.connection as { replica: string }).replica;
    // Two replicas: both are always sampled, so the less busy one is always taken.
    const two = replicas(2, 0);
    for (let i = 0; i < 50; i++) assert.equal(name(powerOfTwoChoices(two, 4)), "r1");
    // Draws of 0 sample r0 and r1 (never the same one twice): the less busy, r1.
    const random = t.mock.method(Math, "random", () => 0);
    assert.equal(name(powerOfTwoChoices(replicas(3, 1, 0), 4)), "r1");
    // Both sampled are at the cap: the free one that was not sampled still beats queueing.
    assert.equal(name(powerOfTwoChoices(replicas(4, 4, 1), 4)), "r2");
    assert.equal(powerOfTwoChoices(replicas(4, 4, 4), 4), undefined, "none free: none");
    assert.equal(powerOfTwoChoices(replicas(1), 1), undefined, "one replica at its cap: none");
    assert.equal(name(powerOfTwoChoices(replicas(0), 1)), "r0");
    random.mock.restore();
    // Idle replicas share the calls (it samples at random, not the first ones).
    const counts = new Map<string, number>();
    const idle = replicas(0, 0, 0);
    for (let i = 0; i < 3000; i++) {
      const picked = name(powerOfTwoChoices(idle, 4))!;
      counts.set(picked, (counts.get(picked) ?? 0) + 1);
    }
    for (const r of ["r0", "r1", "r2"])
      assert.ok((counts.get(r) ?? 0) > 700, `${r} took ${counts.get(r) ?? 0} of 3000`);
    // An idle replica that answered last is taken first; one that is busy is not preferred.
    const warm = replicas(0, 0, 0);
    for (let i = 0; i < 50; i++) assert.equal(name(powerOfTwoChoices(warm, 4, warm[2])), "r2");
    const busy = replicas(0, 1, 0);
    for (let i = 0; i < 50; i++) assert.notEqual(name(powerOfTwoChoices(busy, 4, busy[1])), "r1");
  });

  test("router - serial calls keep to the replica that answered last; calls at once spread over the idle ones", async () => {
    const [a, b, c] = [replica("a"), replica("b"), replica("c")];
    const router = new Router("d", "d", { maxOngoingRequests: 4, maxQueuedRequests: 10 });
    router.setReplicas([a.connection, b.connection, c.connection]);
    const all = [a, b, c];
    const sentTo = (): string[] =>
      all.filter((r) => calls(r.sent).length > 0).map((r) => r.connection.replica);
    // The first call goes anywhere; each next one, made once the last was answered, follows it.
    for (let i = 0; i < 20; i++) {
      const call = router.call("m", [i]);
      const target = all.find((r) => r.sent.some((m) => m.t === "call" && m.a[0] === i))!;
      ok(target, calls(target.sent).at(-1)!, i);
      assert.equal(await call, i);
    }
    assert.equal(sentTo().length, 1, `serial calls went to ${sentTo().join(", ")}`);
    // Three at once: the warm one takes one, the others go elsewhere (it is busy then).
    const before = sentTo()[0];
    const three = [20, 21, 22].map((n) => router.call("m", [n]));
    assert.ok(sentTo().length > 1, "calls made together spread");
    for (const r of all)
      for (const id of calls(r.sent).slice(r.connection.replica === before ? 20 : 0)) ok(r, id);
    await Promise.all(three);
  });

  test("router - a call a replica hands back goes ahead of calls that were already waiting", () => {
    const a = replica("a");
    const router = new Router("d", "d", { maxOngoingRequests: 1, maxQueuedRequests: 10 });
    router.setReplicas([a.connection]);
    void router.call("m", ["early"]);
    void router.call("m", ["waiting"]);
    assert.equal(router.queued, 1);
    a.connection.onMessage({ t: "busy", id: calls(a.sent)[0]! });
    assert.equal(router.queued, 2);
    a.connection.onMessage({ t: "free" });
    const sent = a.sent.filter((m) => m.t === "call");
    assert.deepEqual(
      sent.map((m) => m.t === "call" && m.a[0]),
      ["early", "early"],
      "the bounced call goes first when the replica frees a slot",
    );
  });

  test("router - a deployment marked unavailable fails its queued and new calls at once, until a replica runs", async () => {
    const router = new Router("d", "d", { maxOngoingRequests: 1, maxQueuedRequests: 10 });
    const queued = router.call("m", []);
    assert.equal(router.queued, 1, "no replica yet: the call waits");
    const failed = new Error("the deployment failed to deploy");
    router.setUnavailable(failed);
    await assert.rejects(queued, failed);
    await assert.rejects(router.call("m", []), failed);
    const a = replica("a");
    router.setReplicas([a.connection]);
    const ran = router.call("m", []);
    ok(a, calls(a.sent)[0]!, "ran");
    assert.equal(await ran, "ran");
  });

  test("router - a call with timeoutMs fails with TimeoutError, tells the replica, and frees its slot", async (t) => {
    mock.timers.enable({ apis: ["setTimeout"] });
    t.after(() => mock.timers.reset());
    const a = replica("a");
    const router = new Router("d", "d", { maxOngoingRequests: 1, maxQueuedRequests: 10 });
    router.setReplicas([a.connection]);
    const slow = router.call("slow", [], { timeoutMs: 100 });
    const next = router.call("m", ["next"]);
    mock.timers.tick(99);
    assert.equal(router.queued, 1);
    mock.timers.tick(1);
    await assert.rejects(slow, (error: unknown) => {
      assert.ok(error instanceof TimeoutError);
      assert.match(error.message, /slow\(\) timed out after 100 ms/);
      return true;
    });
    assert.deepEqual(
      a.sent.map((m) => m.t),
      ["call", "cancel", "call"],
    );
    ok(a, calls(a.sent)[1]!, "next");
    assert.equal(await next, "next");
  });

  test("router - a replica the control plane adds takes the calls that wait", () => {
    const a = replica("a");
    const b = replica("b");
    const router = new Router("d", "d", { maxOngoingRequests: 1, maxQueuedRequests: 10 });
    router.setReplicas([a.connection]);
    void router.call("m", ["one"]);
    void router.call("m", ["two"]);
    assert.equal(router.queued, 1);
    router.setReplicas([a.connection, b.connection]);
    assert.equal(router.queued, 0);
    assert.deepEqual(
      b.sent.map((m) => m.t === "call" && m.a[0]),
      ["two"],
    );
  });

  test("router - new limits apply at once: a higher cap starts waiting calls", () => {
    const a = replica("a");
    const router = new Router("d", "d", { maxOngoingRequests: 1, maxQueuedRequests: 10 });
    router.setReplicas([a.connection]);
    for (let i = 0; i < 3; i++) void router.call("m", [i]);
    assert.equal(router.queued, 2);
    router.configure({ maxOngoingRequests: 3, maxQueuedRequests: 10 });
    assert.equal(router.queued, 0);
    assert.equal(calls(a.sent).length, 3);
  });

  test("router - arguments that cannot be sent fail the call at once and free its slot; one that would wait is checked before it waits", async () => {
    let refuse = true;
    const sent: CallMessage[] = [];
    const a = new ReplicaConnection("a", "d", (message) => {
      if (refuse && message.t === "call") throw new Error("could not be cloned");
      sent.push(message);
    });
    const router = new Router("d", "d", { maxOngoingRequests: 1, maxQueuedRequests: 10 });
    router.setReplicas([a]);
    await assert.rejects(router.call("m", [{ f: () => 1 }]), (error: unknown) => {
      assert.ok(error instanceof ValidationError);
      assert.match(error.message, /arguments\[0\]\.f: it is a function/);
      return true;
    });
    assert.equal(router.ongoing, 0, "the slot is free again");
    refuse = false;
    const running = router.call("m", ["running"]);
    // The replica is full: a call with a nested function fails now, not when it would leave the queue.
    const started = router.call("m", [{ nested: { weak: new WeakMap() } }]);
    await assert.rejects(started, /arguments\[0\]\.nested\.weak: it is a WeakMap/);
    assert.equal(router.queued, 0);
    // What structured clone takes is not refused: a class instance with a then(), a Map
    // keyed by an object without a prototype.
    class Query {
      then(): void {}
    }
    const key = Object.create(null) as object;
    void router.call("m", [{ query: new Query(), map: new Map([[key, 1]]) }]);
    // Past the check's budget, the copy a waiting call's arguments are taken in finds it.
    await assert.rejects(
      router.call("m", [{ wide: new Array<number>(100_000).fill(1), f: () => 1 }]),
      /arguments\[0\]\.f: it is a function/,
    );
    assert.equal(router.queued, 1, "the first waits");
    a.onMessage({ t: "ok", id: (sent[0] as { id: number }).id, v: "ran" });
    assert.equal(await running, "ran");
  });

  test("router - a call that moves a typed array waits with its arguments as they are, and moves them when sent; what cannot be sent, in a Map, a Set or a class instance, fails it at once", async () => {
    const sent: { message: CallMessage; transfer: readonly ArrayBuffer[] }[] = [];
    const a = new ReplicaConnection("a", "d", (message, transfer = []) =>
      sent.push({ message, transfer: transfer as ArrayBuffer[] }),
    );
    const router = new Router("d", "d", { maxOngoingRequests: 1, maxQueuedRequests: 10 });
    router.setReplicas([a]);
    const running = router.call("m", ["running"]);
    const data = new Float32Array([1, 1]);
    const waiting = router.call("m", [data, { label: "x" }], { transfer: [data.buffer] });
    assert.equal(router.queued, 1);
    // Values structured clone refuses, beside a typed array, where the check before waiting
    // now looks: refused at once, not when a slot frees.
    class Holder {
      constructor(readonly f: () => number) {}
    }
    const refusals = [
      [new Map([["f", () => 1]]), /arguments\[1\]\.get\(f\): it is a function/],
      [new Set([Promise.resolve(1)]), /arguments\[1\] \(a Set item\): it is a Promise/],
      [new Holder(() => 1), /arguments\[1\]\.f: it is a function/],
    ] as const;
    for (const [value, why] of refusals) {
      const moved = new Float32Array(2);
      await assert.rejects(
        router.call("m", [moved, value], { transfer: [moved.buffer] }),
        (error: unknown) => {
          assert.ok(error instanceof ValidationError, String(error));
          assert.match(error.message, why);
          return true;
        },
      );
    }
    assert.equal(router.queued, 1);
    a.onMessage({ t: "ok", id: (sent[0]!.message as { id: number }).id, v: "ran" });
    assert.equal(await running, "ran");
    const second = sent[1]!;
    const args = (second.message as CallMessage & { a: unknown[] }).a;
    assert.equal(args[0], data, "not copied to wait (a tensor may be large)");
    assert.deepEqual(second.transfer, [data.buffer], "its buffer moves when sent");
    a.onMessage({ t: "ok", id: (second.message as { id: number }).id, v: "done" });
    assert.equal(await waiting, "done");
  });

  test("router - a user's call with objects in its arguments goes at once, a walk's own batches; one that waits is sent as it was made", async () => {
    const sent: [CallMessage, boolean][] = [];
    const a = new ReplicaConnection("a", "d", (message, _transfer, now) =>
      sent.push([message, now === true]),
    );
    const router = new Router("d", "d", { maxOngoingRequests: 1, maxQueuedRequests: 10 });
    router.setReplicas([a]);
    const value = { x: 1 };
    const first = router.call("m", [value]);
    void router.call("m", [value]); // waits: the only slot is taken
    value.x = 2;
    void router.call("m", [7]);
    // (A transport serializes a message sent with `now` before it returns.)
    assert.deepEqual(
      sent.map(([, now]) => now),
      [true],
      "the first goes at once, before its caller changes it",
    );
    a.onMessage({ t: "ok", id: (sent[0]![0] as { id: number }).id, v: "done" });
    await first;
    const waited = sent[1]![0] as CallMessage & { a: unknown[] };
    assert.notEqual(waited.a[0], value, "it waited with a copy");
    assert.deepEqual(waited.a, [{ x: 1 }], "taken when the call was made");
    const walk = new Router("w", "w", { maxOngoingRequests: 5, maxQueuedRequests: 10 });
    const b = new ReplicaConnection("b", "w", (message, _transfer, now) =>
      sent.push([message, now === true]),
    );
    walk.setReplicas([b]);
    void walk.call("m", [{ x: 3 }], { owned: true });
    void walk.call("m", [4]);
    assert.deepEqual(
      sent.slice(-2).map(([, now]) => now),
      [false, false],
      "left to the batch",
    );
  });
});
