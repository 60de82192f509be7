import assert from "node:assert/strict";
import { test } from "node:test";
import { LogBuffer } from "./log-buffer.js";

const line = (n: number, deployment?: string, application = "shop") =>
  JSON.stringify({ level: 30, msg: `line ${n}`, ...(deployment && { application, deployment }) });

test("log buffer - keeps only the last lines up to its size, oldest first, and filters by deployment and application", () => {
  const written: string[] = [];
  const logs = new LogBuffer(3, { write: (text: string) => written.push(text) });
  for (let n = 1; n <= 5; n++) logs.write(`${line(n, n % 2 ? "odd" : "even")}\n`);
  logs.write(`${line(6, "odd", "other")}\n`);
  assert.equal(written.length, 6, "every line still goes out");
  assert.deepEqual(
    logs.recent().map((l) => (JSON.parse(l) as { msg: string }).msg),
    ["line 4", "line 5", "line 6"],
  );
  assert.deepEqual(logs.recent({ deployment: "odd" }).length, 2);
  assert.deepEqual(logs.recent({ deployment: "odd", application: "shop" }), [line(5, "odd")]);
  assert.deepEqual(logs.recent({}, 1), [line(6, "odd", "other")]);
  assert.deepEqual(logs.recent({ deployment: "none" }), []);
  // A request log line names its application only.
  logs.write(`${JSON.stringify({ msg: "request failed", application: "shop", requestId: "r" })}\n`);
  assert.equal(logs.recent({ application: "shop" }).length, 2);
  assert.deepEqual(logs.recent({ deployment: "odd", application: "shop" }), [line(5, "odd")]);
});

test("log buffer - a follower gets each new matching line until it stops, and its end when the buffer closes", () => {
  const logs = new LogBuffer(10, null);
  const seen: string[] = [];
  let ended = 0;
  const stop = logs.follow(
    { deployment: "a" },
    (l) => seen.push(l),
    () => ended++,
  );
  logs.write(`${line(1, "a")}\n${line(2, "b")}\n`);
  assert.deepEqual(seen, [line(1, "a")]);
  stop();
  logs.write(`${line(3, "a")}\n`);
  assert.equal(seen.length, 1);
  logs.follow(
    {},
    (l) => seen.push(l),
    () => ended++,
  );
  logs.close();
  assert.equal(ended, 1, "only the follower still following is ended");
  assert.throws(() => new LogBuffer(0), /at least 1 line/);
});
