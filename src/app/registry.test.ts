import assert from "node:assert/strict";
import { test } from "node:test";
import { otherCopyWith } from "./registry.js";

test("registry - an application another copy of Tributary in this thread built is found, with where that copy is", () => {
  const copies = (globalThis as unknown as Record<symbol, unknown[]>)[
    Symbol.for("tributary.copies")
  ]!;
  assert.ok(copies.length >= 1, "this copy is listed");
  const other = {
    url: "file:///elsewhere/dist/app/registry.js",
    has: (k: string) => k === "file:///m.ts#app",
  };
  copies.push(other);
  try {
    assert.equal(otherCopyWith("file:///m.ts", "app"), other.url);
    assert.equal(otherCopyWith("file:///m.ts", "another"), undefined);
  } finally {
    copies.splice(copies.indexOf(other), 1);
  }
});
