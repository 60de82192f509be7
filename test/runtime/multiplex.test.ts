import assert from "node:assert/strict";
import { test } from "node:test";
import { QueueTimeoutError, withHandleOptions } from "tributary";
import { app, queueApp, type Multiplexed, type Served } from "../fixtures/multiplex-app.js";
import { serve } from "../serve.js";

const MODELS = ["m1", "m2", "m3"];

test(
  "multiplex - 3 models on 2 replicas of 2 each: loads on demand, affinity per model, a model in demand spreads and evicts the least recently used",
  { timeout: 90_000 },
  async () => {
    await using server = await serve(app);
    const mux = server.getHandle<Multiplexed>("mux");
    const callFor = (model: string, ms = 0): Promise<Served> =>
      withHandleOptions(mux, { multiplexedModelId: model }).predict(1, ms);
    // Sequential calls from one router: each model loads once, and stays where it loaded.
    const servedBy = new Map<string, Set<string>>(MODELS.map((m) => [m, new Set()]));
    const last = new Map<string, Served>();
    for (let round = 0; round < 3; round++) {
      for (const model of MODELS) {
        const served = await callFor(model);
        assert.equal(served.model, model, "the replica's request context names the model");
        assert.equal(served.out, `${model}(1)`, "the loader's model ran");
        servedBy.get(model)!.add(served.replica);
        last.set(served.replica, served);
      }
    }
    for (const [model, replicas] of servedBy)
      assert.equal(replicas.size, 1, `${model} served by one replica: ${[...replicas].join(", ")}`);
    assert.equal(last.size, 2, "both replicas serve");
    const stats = [...last.values()];
    assert.equal(
      stats.reduce((n, s) => n + s.loads, 0),
      3,
      "each model loaded once in all",
    );
    assert.deepEqual(
      stats.map((s) => s.evictions),
      [0, 0],
    );
    // One replica holds a single model: the one that holds two is where it spreads.
    const alone = stats.find((s) => s.loaded.length === 1)!;
    const pair = stats.find((s) => s.loaded.length === 2)!;
    assert.ok(alone && pair, JSON.stringify(stats));
    const hot = alone.loaded[0]!;

    // The model reached every router: the front replica's calls (model from the header)
    // go where the model is loaded, with no new load.
    const viaHeader = await fetch(`${server.url}/mux`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-tributary-model-id": hot },
      body: JSON.stringify({ x: 2 }),
    });
    assert.equal(viaHeader.status, 200);
    const byHeader = (await viaHeader.json()) as Served;
    assert.deepEqual([byHeader.model, byHeader.replica, byHeader.loads], [hot, alone.replica, 1]);
    const viaBody = await server.handle.call({ x: 3, model: pair.loaded[0] });
    assert.deepEqual([viaBody.model, viaBody.replica], [pair.loaded[0], pair.replica]);

    // Two slow calls for the hot model: the second waits for its replica (1 slot), then
    // after about a second takes the other replica, which loads it and evicts its least
    // recently used model (and closes it).
    const lru = pair.loaded.find((m) => m !== pair.loaded[0])!;
    const [first, second] = await Promise.all([callFor(hot, 1500), callFor(hot, 0)]);
    assert.equal(first.replica, alone.replica);
    assert.equal(second.replica, pair.replica, "the model in demand spread to the other replica");
    assert.equal(second.loads, 3);
    assert.equal(second.evictions, 1);
    assert.deepEqual([...second.loaded].sort(), [hot, pair.loaded[0]].sort());
    const after = await callFor(pair.loaded[0]!);
    assert.equal(after.replica, pair.replica);
    assert.deepEqual(after.closed, [lru], "the evicted model's close() ran");
  },
);

test(
  "multiplex - a malformed model id is answered 422 before anything runs",
  { timeout: 60_000 },
  async () => {
    await using server = await serve(app);
    const long = await fetch(`${server.url}/mux`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-tributary-model-id": "m".repeat(200) },
      body: JSON.stringify({ x: 1 }),
    });
    assert.equal(long.status, 422);
    const body = (await long.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, "VALIDATION_FAILED");
    assert.match(body.error.message, /model id/);
  },
);

test(
  "queue timeout - a request that waits past maxQueueWait fails with 503 QUEUE_TIMEOUT and its request id, well before the request timeout",
  { timeout: 60_000 },
  async () => {
    await using server = await serve(queueApp, { requestTimeout: "30s" });
    const holding = server.handle.call(2000);
    const response = await fetch(`${server.url}/hold`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": "wait-1" },
      body: "5",
    });
    assert.equal(response.status, 503);
    assert.equal(response.headers.get("retry-after"), "1");
    const body = (await response.json()) as {
      error: { code: string; message: string; requestId: string };
    };
    assert.equal(body.error.code, "QUEUE_TIMEOUT");
    assert.equal(body.error.requestId, "wait-1");
    assert.match(
      body.error.message,
      /Request wait-1 waited \d+ ms in the queue of deployment "hold"/,
    );
    await assert.rejects(server.handle.call(5, { requestId: "wait-2" }), (error: unknown) => {
      assert.ok(error instanceof QueueTimeoutError);
      assert.equal(error.requestId, "wait-2");
      return true;
    });
    assert.equal(await holding, 2000, "the running request is not affected");
  },
);
