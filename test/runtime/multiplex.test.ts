import assert from "node:assert/strict";
import { test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { QueueTimeoutError, withHandleOptions } from "tributary";
import { loadInferenceService } from "tributary/internal";
import {
  app,
  directApp,
  oipApp,
  queueApp,
  type Multiplexed,
  type Served,
} from "../fixtures/multiplex-app.js";
import { type Client, rpc } from "../ingress/grpc-client.js";
import { serve } from "../serve.js";

interface InferResponse {
  readonly outputs: { contents?: { bytes_contents?: Buffer[] } }[];
}

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
  "multiplex - a malformed model id is answered 422 before anything runs, none at all 400; handles and calls take the same ids",
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
    // No model named: the request's fault (400), not the deployment's (it was a 500).
    const none = await fetch(`${server.url}/mux`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ x: 1 }),
    });
    assert.equal(none.status, 400);
    const noneBody = (await none.json()) as { error: { code: string; message: string } };
    assert.equal(noneBody.error.code, "BAD_REQUEST");
    assert.match(noneBody.error.message, /names no model/);
    // The same rule for the ids handles and calls carry.
    const mux = server.getHandle<Multiplexed>("mux");
    for (const id of ["m".repeat(200), "tab\there", ""]) {
      assert.throws(
        () => withHandleOptions(mux, { multiplexedModelId: id }),
        /withHandleOptions\(\): multiplexedModelId must be 1 to 128 printable ASCII characters/,
      );
    }
    // Not a handle: the caller's mistake in code, not a bad request (a replica's code making
    // it answers 500, not 400).
    assert.throws(() => withHandleOptions({} as never, {}), { code: "INVALID_OPTIONS" });
    assert.throws(
      () => server.getHandle("mux", { multiplexedModelId: "y".repeat(300) }),
      /getHandle\(\): multiplexedModelId must be/,
    );
    await assert.rejects(
      server.handle.call({ x: 1 }, { multiplexedModelId: "a\nb" }),
      /handle\.call\(\): multiplexedModelId must be/,
    );
  },
);

test(
  "queue timeout - a request that waits past maxQueueWait fails with 503 QUEUE_TIMEOUT and its request id, well before the request timeout; an update turns it off in place",
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
    // An update turns it off in place (the router's limits): a queued request waits its turn.
    const result = await server.update(queueApp.withOptions({ hold: { maxQueueWait: "off" } }));
    assert.deepEqual(result.hold, ["router"]);
    const first = server.handle.call(400);
    assert.equal(await server.handle.call(5), 5, "waited behind the 400 ms one");
    assert.equal(await first, 400);
  },
);

test(
  "multiplex - the OIP model version names the model over REST and gRPC, as the header and gRPC metadata do",
  { timeout: 60_000 },
  async (t) => {
    await using server = await serve(oipApp, { grpc: { port: 0 } });
    const infer = async (path: string, headers: Record<string, string> = {}): Promise<unknown> => {
      const response = await fetch(`${server.url}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify({ inputs: [{ name: "x", datatype: "FP64", shape: [1], data: [7] }] }),
      });
      assert.equal(response.status, 200);
      const body = (await response.json()) as { outputs: { data: unknown[] }[] };
      return body.outputs[0]!.data[0];
    };
    assert.equal(await infer("/v2/models/which/versions/en-v2/infer"), "en-v2:7");
    assert.equal(await infer("/v2/models/which/infer", { "x-tributary-model-id": "de" }), "de:7");
    assert.equal(await infer("/v2/models/which/infer"), "none:7");

    const Service = loadInferenceService();
    const client = new Service(
      `127.0.0.1:${server.grpcPort}`,
      grpc.credentials.createInsecure(),
    ) as unknown as Client;
    t.after(() => client.close());
    const request = {
      model_name: "which",
      inputs: [{ name: "x", datatype: "FP64", shape: [1], contents: { fp64_contents: [7] } }],
    };
    const text = (response: InferResponse): string =>
      String(response.outputs[0]!.contents!.bytes_contents![0]);
    const byVersion = await rpc<InferResponse>(client, "ModelInfer", {
      ...request,
      model_version: "fr",
    });
    assert.equal(text(byVersion), "fr:7");
    const metadata = new grpc.Metadata();
    metadata.set("x-tributary-model-id", "it");
    type WithMetadata = (
      request: unknown,
      metadata: grpc.Metadata,
      callback: (error: Error | null, response: InferResponse) => void,
    ) => void;
    const modelInfer = (client as unknown as { ModelInfer: WithMetadata }).ModelInfer.bind(client);
    const byMetadata = await new Promise<InferResponse>((resolve, reject) =>
      modelInfer(request, metadata, (error, response) =>
        error ? reject(error) : resolve(response),
      ),
    );
    assert.equal(text(byMetadata), "it:7");
  },
);

test(
  "multiplex - a process replica gets the model id over its socket and reports its models",
  { timeout: 60_000 },
  async () => {
    await using server = await serve(
      app.withOptions({ mux: { isolation: "process", numReplicas: 1 } }),
    );
    const post = async (model: string): Promise<Served> => {
      const response = await fetch(`${server.url}/mux`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-tributary-model-id": model },
        body: JSON.stringify({ x: 4 }),
      });
      assert.equal(response.status, 200);
      return (await response.json()) as Served;
    };
    const first = await post("p1");
    assert.deepEqual([first.model, first.out, first.loads], ["p1", "p1(4)", 1]);
    const again = await post("p1");
    assert.equal(again.loads, 1, "loaded once");
    const direct = await withHandleOptions(server.getHandle<Multiplexed>("mux"), {
      multiplexedModelId: "p2",
    }).predict(5);
    assert.deepEqual([direct.model, direct.loads, direct.loaded], ["p2", 2, ["p1", "p2"]]);
  },
);

test(
  "multiplex - front-door worker processes learn where each model is loaded",
  { timeout: 90_000 },
  async () => {
    await using server = await serve(directApp, { http: { workers: 2 } });
    const mux = server.getHandle<Multiplexed>("mux");
    // Loaded from this thread's router: the replica reports it, and the control plane
    // tells every router, the workers' included (they route the graph's call to mux).
    const loaded = await withHandleOptions(mux, { multiplexedModelId: "w1" }).predict(1);
    for (let i = 0; i < 8; i++) {
      const response = await fetch(`${server.url}/direct`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-tributary-model-id": "w1" },
        body: String(i),
      });
      assert.equal(response.status, 200);
      const served = (await response.json()) as Served;
      assert.deepEqual(
        [served.model, served.replica, served.loads],
        ["w1", loaded.replica, 1],
        `request ${i} went where w1 is loaded`,
      );
    }
  },
);
