import assert from "node:assert/strict";
import { mock, test } from "node:test";
import { QueueTimeoutError } from "../errors.js";
import { IngressGate } from "./ingress-gate.js";

test("ingress gate - an execution waiting past the ingress's maxQueueWait fails with QueueTimeoutError; the next in line still gets the slot", async (t) => {
  mock.timers.enable({ apis: ["setTimeout", "Date"] });
  t.after(() => mock.timers.reset());
  const gate = new IngressGate(1, 10, 100);
  assert.equal(gate.enter(undefined), undefined, "a free slot is taken at once");
  const late = gate.enter(undefined, "req-9")!;
  mock.timers.tick(50);
  const next = gate.enter(undefined)!;
  mock.timers.tick(50);
  await assert.rejects(late, (error: unknown) => {
    assert.ok(error instanceof QueueTimeoutError);
    assert.equal(error.deployment, "ingress");
    assert.equal(error.requestId, "req-9");
    return true;
  });
  assert.equal(gate.pending, 2, "the running one and the one that came later");
  gate.leave();
  await next;
  assert.equal(gate.pending, 1);
});
