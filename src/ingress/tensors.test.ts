import assert from "node:assert/strict";
import { test } from "node:test";
import { elementCount } from "./tensors.js";

test("tensors - elementCount: a 0 anywhere is an empty tensor; past 2^31 - 1 elements is refused", () => {
  assert.equal(elementCount([2, 3], "x"), 6);
  assert.equal(elementCount([], "x"), 1);
  assert.equal(elementCount([0, 2 ** 40], "x"), 0);
  assert.equal(elementCount([2 ** 40, 0], "x"), 0, "the order of the dimensions does not matter");
  assert.throws(() => elementCount([2 ** 20, 2 ** 20], "x"), /has more than 2147483647 elements/);
  assert.throws(() => elementCount([-1], "x"), /shape\[0\] = -1 is not a non-negative integer/);
  assert.throws(() => elementCount([2 ** 40, "a", 0], "x"), /shape\[1\] is not a number/);
});
