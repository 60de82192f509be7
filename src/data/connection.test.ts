import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { test } from "node:test";
import type { CallMessage } from "../wire/protocol.js";
import {
  AWAY_MS,
  PROBE_ID,
  PROBE_WAIT_MS,
  ReplicaConnection,
  type RoutedCall,
} from "./connection.js";

/** A connection whose sends are recorded, and a call that records what became of it. */
function setup() {
  const sent: CallMessage[] = [];
  const connection = new ReplicaConnection("leaf#1", "leaf", (message) => sent.push(message));
  let freed = 0;
  connection.onFree = () => freed++;
  const call = () => {
    const outcome: string[] = [];
    const pending: RoutedCall = {
      resolve: () => outcome.push("ok"),
      reject: (error: unknown) => outcome.push(`error: ${(error as Error).message}`),
      busy: () => outcome.push("busy"),
    } as unknown as RoutedCall;
    connection.call("f", [], [], undefined, pending);
    return outcome;
  };
  return { sent, connection, call, freed: () => freed };
}

test("connection - a replica NATS found no subscriber for is probed before a user's call goes to it again", async () => {
  const { sent, connection, call, freed } = setup();
  connection.unreachable("NATS had no subscriber for it");
  const held = call();
  await sleep(0);
  assert.deepEqual(held, ["busy"], "answered busy unsent while away");
  assert.equal(sent.length, 0);
  // After AWAY_MS, a probe (no one's request) goes, and calls still wait for its verdict.
  await sleep(AWAY_MS + 50);
  assert.deepEqual(sent, [{ t: "credit", id: PROBE_ID, n: 0 }]);
  const during = call();
  await sleep(0);
  assert.deepEqual(during, ["busy"]);
  // NATS says again that no one subscribes: still away, and probed again later.
  connection.unreachable("NATS had no subscriber for it");
  await sleep(PROBE_WAIT_MS + 50);
  assert.equal(freed(), 0, "not back");
  await sleep(AWAY_MS - PROBE_WAIT_MS + 50);
  assert.equal(sent.filter((m) => m.t === "credit").length, 2, "probed again");
  // No "no subscriber" within PROBE_WAIT_MS: back, and the next call is sent.
  await sleep(PROBE_WAIT_MS + 50);
  assert.equal(freed(), 1);
  call();
  assert.equal(sent.at(-1)!.t, "call");
});

test("connection - a replica that speaks while away is back at once", async () => {
  const { sent, connection, call, freed } = setup();
  connection.unreachable("NATS had no subscriber for it");
  connection.onMessage({ t: "free" });
  await sleep(0);
  assert.ok(freed() >= 1);
  call();
  assert.equal(sent.at(-1)!.t, "call");
});

test("connection - a channel that closes unexplained fails its calls with why the control plane says the replica ended", async () => {
  // Told after the close: the calls wait for it.
  const late = setup();
  const a = late.call();
  let done = 0;
  late.connection.closeUntold("its channel closed", () => done++, 5_000);
  assert.equal(late.connection.closed, true, "nothing more is sent");
  await sleep(10);
  assert.deepEqual(a, [], "waits to be told why");
  late.connection.told("thread 7 exited with code 3");
  assert.match(a[0]!, /died while handling the request \(thread 7 exited with code 3\)/);
  assert.equal(done, 1);

  // Told before the close (the membership came first): the calls fail at the close.
  const early = setup();
  const b = early.call();
  early.connection.told("pid 9 killed by SIGSEGV");
  assert.deepEqual(b, [], "the channel is open yet: an answer may still come");
  early.connection.closeUntold("its channel closed", () => undefined);
  assert.match(b[0]!, /\(pid 9 killed by SIGSEGV\)/);

  // Never told: the fallback, after the wait.
  const never = setup();
  const c = never.call();
  never.connection.closeUntold("its channel closed", () => undefined, 30);
  await sleep(60);
  assert.match(c[0]!, /\(its channel closed\)/);

  // Stopped: said as a stop.
  const stopped = setup();
  const d = stopped.call();
  stopped.connection.closeUntold("its channel closed", () => undefined, 5_000);
  stopped.connection.told("stopped");
  assert.match(d[0]!, /was stopped before the request finished/);
});
