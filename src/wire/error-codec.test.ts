import assert from "node:assert/strict";
import { test } from "node:test";
import { serializeError } from "./error-codec.js";

test("error codec - a thrown value that is not an Error keeps what it said", () => {
  assert.equal(serializeError("plain text").message, "plain text");
  assert.equal(
    serializeError({ code: "E_OBJ", detail: 3 }).message,
    'Non-error thrown: {"code":"E_OBJ","detail":3}',
  );
  assert.equal(serializeError(42).message, "Non-error thrown: 42");
  const cycle: Record<string, unknown> = { a: 1 };
  cycle.self = cycle;
  assert.equal(serializeError(cycle).message, "Non-error thrown: [object Object]");
  const bare = Object.create(null) as Record<string, unknown>;
  bare.self = bare;
  assert.equal(serializeError(bare).message, "Non-error thrown: a value of type object");
  assert.ok(serializeError({ big: "x".repeat(5000) }).message.length < 1100);
});
