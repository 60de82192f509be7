import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { ERROR_CODES, GraphExecutionError, TributaryError, ValidationError } from "./errors.js";

const DOC = new URL("../docs/errors.md", import.meta.url);

test("errors - docs/errors.md lists every code with the status the code maps to", () => {
  const rows = readFileSync(DOC, "utf8")
    .split("\n")
    .map((line) => /^\|\s*`([A-Z_]+)`\s*\|\s*(\d{3})\s*\|\s*[A-Z_]+ \((\d+)\)\s*\|/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null)
    .map(([, code, http, grpc]) => [code, Number(http), Number(grpc)]);
  const table = Object.entries(ERROR_CODES).map(([code, s]) => [code, s.httpStatus, s.grpcStatus]);
  assert.deepEqual(rows.sort(), table.sort());
});

test("errors - errors carry their code, their class name and the original cause", () => {
  const cause = new Error("disk full");
  const error = new GraphExecutionError("m1", "forward()", cause);
  assert.ok(error instanceof TributaryError);
  assert.equal(error.name, "GraphExecutionError");
  assert.equal(error.code, "EXECUTION_FAILED");
  assert.equal(error.cause, cause);
  const invalid = new ValidationError([{ path: "", message: "expected object" }]);
  assert.match(invalid.message, /- \(input\): expected object/);
});
