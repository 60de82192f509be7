import assert from "node:assert/strict";
import { test } from "node:test";
import { pino } from "pino";
import type { FastifyBaseLogger } from "fastify";
import { sharedFastifyOptions } from "./fastify-setup.js";

/** A request's logger as the front door's Fastify makes it, over a pino logger at `level`. */
function requestLogger(level: string) {
  const lines: Record<string, unknown>[] = [];
  const root = pino(
    { level, base: { application: "shop" } },
    { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
  );
  const log = sharedFastifyOptions.childLoggerFactory(
    root,
    { requestId: "r1" },
    {},
  ) as FastifyBaseLogger & Record<string, unknown>;
  return { log, lines, root };
}

test("request logger - writes as a pino child would, with the request id, and is one only once it writes", () => {
  const { log, lines } = requestLogger("warn");
  log.info("not at warn");
  assert.equal(lines.length, 0);
  log.warn({ n: 1 }, "hello %s", "there");
  assert.deepEqual(
    lines.map(({ msg, requestId, application, n }) => ({ msg, requestId, application, n })),
    [{ msg: "hello there", requestId: "r1", application: "shop", n: 1 }],
  );
  // Its level set, it writes at that level (the child's level, not its parent's).
  log.level = "debug";
  assert.equal(log.level, "debug");
  log.debug("now at debug");
  assert.equal(lines.at(-1)?.msg, "now at debug");
  // The rest of pino's logger that a route's code may use.
  const fresh = requestLogger("info").log as unknown as {
    bindings(): Record<string, unknown>;
    setBindings(b: Record<string, unknown>): void;
    levels: { values: Record<string, number> };
    levelVal: number;
    isLevelEnabled(level: string): boolean;
    child(b: Record<string, unknown>): FastifyBaseLogger;
  };
  assert.equal(fresh.levelVal, 30);
  assert.equal(fresh.levels.values.info, 30);
  assert.equal(fresh.isLevelEnabled("debug"), false);
  assert.equal(fresh.bindings().requestId, "r1");
  fresh.setBindings({ user: "u" });
  assert.equal(fresh.bindings().user, "u");
  const { log: parent, lines: childLines } = requestLogger("info");
  parent.child({ step: "resize" }).info("from a child");
  assert.equal(childLines[0]?.requestId, "r1");
  assert.equal(childLines[0]?.step, "resize");
});

test("request logger - a route's own log options make a real child at once", () => {
  const lines: Record<string, unknown>[] = [];
  const root = pino(
    { level: "warn" },
    { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
  );
  const log = sharedFastifyOptions.childLoggerFactory(
    root,
    { requestId: "r2" },
    { level: "trace" },
  );
  log.trace("traced");
  assert.equal(lines[0]?.requestId, "r2");
  assert.equal(lines[0]?.msg, "traced");
});
