import assert from "node:assert/strict";
import { MessageChannel, type MessagePort } from "node:worker_threads";
import { describe, test } from "node:test";
import type { MembersMessage } from "../wire/protocol.js";
import { OutgoingCalls } from "./remote-handle.js";

/** A caller's calls to deployment "leaf", whose one replica is the far end of a port. */
function caller(): {
  calls: OutgoingCalls;
  replica: MessagePort;
  members: (m: Partial<MembersMessage>) => void;
} {
  const calls = new OutgoingCalls(
    () => undefined,
    () => undefined,
  );
  const { port1, port2 } = new MessageChannel();
  const members = (m: Partial<MembersMessage>): void =>
    calls.onMembers({
      t: "members",
      d: "leaf",
      label: "leaf",
      maxOngoing: 5,
      maxQueued: 10,
      add: [],
      remove: [],
      ...m,
    });
  members({ add: [{ replica: "leaf#1", port: port1 }] });
  return { calls, replica: port2, members };
}

/** What became of a call, once it settles. */
const outcome = (call: Promise<unknown>): Promise<string> =>
  call.then(
    () => "answered",
    (error: Error) => error.message,
  );

describe("OutgoingCalls", () => {
  test("remote - a replica's port closing holds its calls until the membership says why it ended", async () => {
    const { calls, replica, members } = caller();
    const settled = outcome(calls.call("leaf", "f", [1], {}));
    await new Promise((resolve) => setImmediate(resolve));
    replica.close(); // the replica's thread ended
    await new Promise((resolve) => setTimeout(resolve, 50));
    const early = await Promise.race([settled, new Promise((r) => setTimeout(r, 50, "waiting"))]);
    assert.equal(early, "waiting");
    members({ remove: ["leaf#1"], gone: { "leaf#1": "thread 9 exited with code 3" } });
    assert.match(
      await settled,
      /Replica leaf#1 of deployment "leaf" died .*\(thread 9 exited with code 3\)/,
    );
  });

  test("remote - once the caller stops following the membership, a closed port fails its calls at once", async () => {
    const { calls, replica } = caller();
    const settled = outcome(calls.call("leaf", "f", [1], {}));
    await new Promise((resolve) => setImmediate(resolve));
    replica.close();
    await new Promise((resolve) => setTimeout(resolve, 50));
    const started = Date.now();
    calls.unsubscribed();
    assert.match(await settled, /its channel to replica leaf#1 closed/);
    assert.ok(Date.now() - started < 500, `${Date.now() - started} ms`);
  });

  test("remote - a replica removed while a call runs on it: the call is answered on the channel it went on", async () => {
    const { calls, replica, members } = caller();
    replica.on("message", (data: { t: string; id: number } | { t: string; id: number }[]) => {
      for (const m of Array.isArray(data) ? data : [data])
        if (m.t === "call") setTimeout(() => replica.postMessage({ t: "ok", id: m.id, v: 42 }), 50);
    });
    const answer = calls.call("leaf", "f", [1], {});
    await new Promise((resolve) => setImmediate(resolve));
    members({ remove: ["leaf#1"] }); // it drains
    assert.equal(await answer, 42);
    replica.close();
  });
});

describe("OutgoingCalls before the membership", () => {
  test("remote - a call made before the target's replicas are known waits within its handle's timeout and signal", async () => {
    const calls = new OutgoingCalls(
      () => undefined,
      () => undefined,
    );
    // No membership ever comes for "silent".
    const started = Date.now();
    assert.match(
      await outcome(calls.call("silent", "f", [1], undefined, { timeout: 100 })),
      /silent\.f\(\) timed out after 100 ms/,
    );
    assert.ok(Date.now() - started < 2_000);
    const controller = new AbortController();
    const aborted = outcome(
      calls.call("silent", "f", [1], undefined, { signal: controller.signal }),
    );
    controller.abort();
    assert.match(await aborted, /silent\.f\(\) was cancelled/);
  });
});
