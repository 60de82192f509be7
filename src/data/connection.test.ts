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
