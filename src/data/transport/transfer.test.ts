import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { movablesOf, MoveOnce, transferablesOf } from "./transfer.js";

describe("transfer", () => {
  test("movablesOf - whole views and buffers move; a view into part of a buffer is only viewed", () => {
    const whole = new Float32Array(8);
    const big = new Uint8Array(64);
    const part = big.subarray(8, 16);
    const raw = new ArrayBuffer(4);
    const found = movablesOf([{ whole, nested: [part, raw] }, 3, "x"]);
    assert.deepEqual(new Set(found.transfer), new Set([whole.buffer, raw]));
    assert.deepEqual(found.viewed, [big.buffer]);
    assert.deepEqual(transferablesOf([part]), []);
    // Primitives only: the shared empty answer, nothing allocated.
    assert.equal(movablesOf([1, "a", null]), movablesOf([true]));
    assert.deepEqual(movablesOf([{ a: 1 }]), { transfer: [], viewed: [] });
  });

  test("MoveOnce - a buffer moves once; a view of a moving buffer, or a move of a viewed one, must copy", () => {
    const once = new MoveOnce();
    const a = new ArrayBuffer(8);
    const b = new ArrayBuffer(8);
    const c = new ArrayBuffer(8);
    assert.equal(once.claim([a]), true, "the first claim moves it");
    assert.equal(once.claim([a]), false, "a second mover copies");
    assert.equal(once.claim([], [a]), false, "a view of a moving buffer copies");
    assert.equal(once.claim([b], [c]), true);
    assert.equal(once.claim([c]), false, "a buffer an earlier call views is not moved");
    assert.equal(once.claim([], [c]), true, "two views of one buffer are both copied when sent");
    // A refused claim claims nothing.
    const d = new ArrayBuffer(8);
    assert.equal(once.claim([d, a]), false);
    assert.equal(once.claim([d]), true);
  });
});
