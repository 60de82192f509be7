import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { GraphExecutionError, withHandleOptions } from "tributary";
import { app, type Embedder } from "../fixtures/batch-app.js";
import { serve } from "../serve.js";

test(
  "batching - a served deployment batches concurrent requests; one bad item fails alone",
  { timeout: 60_000 },
  async () => {
    await using server = await serve(app, { port: 0 });
    const texts = Array.from({ length: 16 }, (_, i) => (i === 5 ? "bad" : "x".repeat(i + 1)));
    const results = await Promise.allSettled(texts.map((t) => server.handle.call(t)));
    results.forEach((r, i) => {
      if (i === 5) {
        assert.equal(r.status, "rejected");
        assert.ok(r.reason instanceof GraphExecutionError);
        assert.match((r.reason as Error).message, /cannot embed "bad"/);
      } else {
        assert.equal(r.status, "fulfilled");
        assert.equal(r.value[0], i + 1);
      }
    });
    const embedder = server.getHandle<Embedder>("embedder");
    const stats = await embedder.batchStats();
    assert.equal(stats.items, 16);
    assert.equal(stats.sizes[4], 4, `batches of 4: ${JSON.stringify(stats.sizes)}`);
    // reconfigure() changes the batch size on the live replica.
    await server.reconfigure("embedder", { maxBatchSize: 8 });
    await Promise.all(Array.from({ length: 8 }, () => embedder.forward("y")));
    assert.equal((await embedder.batchStats()).sizes[8], 1);
  },
);

test(
  "batching - one caller's timeout cancels its own item only: the batch runs on for the others, and an item whose caller gave up while it waited is not run",
  { timeout: 60_000 },
  async () => {
    await using server = await serve(app, { port: 0 });
    const embedder = server.getHandle<Embedder>("embedder");
    const hasty = withHandleOptions(embedder, { timeout: 100 });
    const first = hasty.patient("a");
    await sleep(2);
    const others = ["bb", "ccc", "dddd"].map((t) => embedder.patient(t));
    // The batch of four runs for 300 ms: this one waits in the replica's batch queue.
    await sleep(60);
    const late = withHandleOptions(embedder, { timeout: 50 }).patient("late");
    await assert.rejects(first, { code: "TIMEOUT" });
    assert.deepEqual(await Promise.all(others), [2, 3, 4]);
    await assert.rejects(late, { code: "TIMEOUT" });
    await sleep(400);
    const stats = await embedder.patientStats();
    assert.deepEqual(stats.sizes, { 4: 1 }, "one batch of four; the late item never ran");
  },
);

test(
  "batching - a maxBatchSize past the deployment's maxOngoingRequests is logged once, saying what to set; none when it fits",
  { timeout: 60_000 },
  async () => {
    const warnings = async (maxOngoingRequests: number): Promise<string[]> => {
      const lines: { level: number; msg: string }[] = [];
      {
        await using server = await serve(app.withOptions({ embedder: { maxOngoingRequests } }), {
          logLevel: "warn",
          logStream: { write: (line) => void lines.push(JSON.parse(line) as (typeof lines)[0]) },
        });
        const embedder = server.getHandle<Embedder>("embedder");
        for (let round = 0; round < 3; round++)
          await Promise.all(["a", "b", "c", "d"].map((t) => embedder.forward(t)));
      }
      return lines.filter((l) => /maxBatchSize/.test(l.msg)).map((l) => l.msg);
    };
    const capped = await warnings(2);
    assert.equal(capped.length, 1, capped.join("\n"));
    assert.match(
      capped[0]!,
      /maxBatchSize 4 is larger than this deployment's maxOngoingRequests \(2\).*Set maxOngoingRequests to at least 4/,
    );
    assert.deepEqual(await warnings(4), []);
  },
);
