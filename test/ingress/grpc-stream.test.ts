import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import type { Server } from "tributary";
import { loadInferenceService } from "tributary/internal";
import { app, plainApp, type Ticker } from "../fixtures/stream-app.js";
import { serve } from "../serve.js";
import { eventually } from "../runtime/eventually.js";
import { type Client, rpc } from "./grpc-client.js";

interface StreamResponse {
  error_message: string;
  infer_response: {
    id: string;
    model_name: string;
    parameters: Record<string, { bool_param?: boolean }>;
    outputs: { name: string; contents?: { fp64_contents?: number[] } }[];
  } | null;
}

type StreamClient = grpc.Client & {
  ModelStreamInfer(): grpc.ClientDuplexStream<unknown, StreamResponse>;
};

const number = (name: string, value: number) => ({
  name,
  datatype: "FP64",
  shape: [1],
  contents: { fp64_contents: [value] },
});

/** Collects a stream's responses until it ends or errs (bounded by the test's timeout). */
function collect(call: grpc.ClientDuplexStream<unknown, StreamResponse>): Promise<{
  responses: StreamResponse[];
  error: grpc.ServiceError | undefined;
}> {
  const responses: StreamResponse[] = [];
  return new Promise((resolve) => {
    call.on("data", (r: StreamResponse) => responses.push(r));
    call.on("end", () => resolve({ responses, error: undefined }));
    call.on("error", (error: grpc.ServiceError) => resolve({ responses, error }));
  });
}

const valueOf = (r: StreamResponse, output: string): number | undefined =>
  r.infer_response?.outputs.find((o) => o.name === output)?.contents?.fp64_contents?.[0];

describe("gRPC ModelStreamInfer", { timeout: 90_000 }, () => {
  let server: Server;
  let plain: Server;
  let client: StreamClient;
  let plainClient: StreamClient;
  before(async () => {
    server = await serve(app, { grpc: { port: 0 } });
    plain = await serve(plainApp, { grpc: { port: 0 } });
    const Service = loadInferenceService();
    const connect = (port: number | undefined) =>
      new Service(
        `127.0.0.1:${port}`,
        grpc.credentials.createInsecure(),
      ) as unknown as StreamClient;
    client = connect(server.grpcPort);
    plainClient = connect(plain.grpcPort);
  });
  after(async () => {
    client.close();
    plainClient.close();
    await Promise.all([server.close(), plain.close()]);
  });

  test("grpc stream - each request runs the graph; a failing one answers error_message with its id, and the stream goes on", async () => {
    const call = plainClient.ModelStreamInfer();
    const done = collect(call);
    for (const [id, x] of [
      ["a", 1],
      ["b", 13],
      ["c", 4],
    ] as const)
      call.write({ model_name: "double", id, inputs: [number("x", x)] });
    call.end();
    const { responses, error } = await done;
    assert.equal(error, undefined);
    assert.equal(responses.length, 3);
    const byId = new Map(responses.map((r) => [r.infer_response?.id, r]));
    assert.equal(valueOf(byId.get("a")!, "y"), 2);
    assert.equal(valueOf(byId.get("c")!, "y"), 8);
    assert.equal(byId.get("a")!.infer_response!.parameters.triton_final_response?.bool_param, true);
    // Requests run at once: the failure says which one it answers.
    assert.match(byId.get("b")!.error_message, /EXECUTION_FAILED: .*thirteen is unlucky/);
    assert.equal(byId.get("b")!.infer_response!.model_name, "double");
    assert.equal(byId.get("a")!.error_message, "");
  });

  test("grpc stream - a streamed result answers one response per item, then an empty final one when asked", async () => {
    const call = client.ModelStreamInfer();
    const done = collect(call);
    call.write({
      model_name: "ticker",
      id: "count",
      parameters: { triton_enable_empty_final_response: { bool_param: true } },
      inputs: [number("n", 4), number("ms", 1)],
    });
    call.end();
    const { responses, error } = await done;
    assert.equal(error, undefined);
    assert.deepEqual(
      responses.map((r) => [
        valueOf(r, "i"),
        r.infer_response?.parameters.triton_final_response?.bool_param,
      ]),
      [
        [0, false],
        [1, false],
        [2, false],
        [3, false],
        [undefined, true],
      ],
    );
    assert.ok(responses.every((r) => r.infer_response?.id === "count" && r.error_message === ""));
  });

  test("grpc stream - cancelling the stream cancels the graph call in flight", async () => {
    const before = await server.getHandle<Ticker>("ticker").stops();
    const call = client.ModelStreamInfer();
    const items: number[] = [];
    const done = collect(call);
    call.on("data", (r: StreamResponse) => items.push(valueOf(r, "i")!));
    call.write({
      model_name: "ticker",
      id: "endless",
      inputs: [number("n", -1), number("ms", 10)],
    });
    await eventually(async () => items.length >= 3, 20_000, "three items of the endless stream");
    call.cancel();
    const { error } = await done;
    assert.equal(error?.code, grpc.status.CANCELLED);
    const ticker = server.getHandle<Ticker>("ticker");
    await eventually(
      async () => (await ticker.stops()).stopped === before.stopped + 1,
      20_000,
      "the replica's stream to stop",
    );
    assert.deepEqual(items.slice(0, 3), [0, 1, 2]);
  });

  test("grpc stream - unary ModelInfer on a streaming graph is INVALID_ARGUMENT pointing at ModelStreamInfer, and stops the stream", async () => {
    const ticker = server.getHandle<Ticker>("ticker");
    const before = await ticker.stops();
    const unary = client as unknown as Client;
    await assert.rejects(
      rpc(unary, "ModelInfer", {
        model_name: "ticker",
        inputs: [number("n", -1), number("ms", 10)],
      }),
      (error: grpc.ServiceError) =>
        error.code === grpc.status.INVALID_ARGUMENT && /ModelStreamInfer/.test(error.details),
    );
    await eventually(
      async () => (await ticker.stops()).stopped === before.stopped + 1,
      20_000,
      "the replica's stream to stop",
    );
  });

  test("oip rest - /infer on a streaming graph is 400 pointing at the route and ModelStreamInfer, stops each stream, and leaves the slots free", async () => {
    const ticker = server.getHandle<Ticker>("ticker");
    const before = await ticker.stops();
    // More than the deployment's maxOngoingRequests (5): before, each endless stream kept
    // its slot and every later request to the deployment hung.
    const endless = {
      inputs: [
        { name: "n", datatype: "FP64", shape: [1], data: [-1] },
        { name: "ms", datatype: "FP64", shape: [1], data: [5] },
      ],
    };
    for (let i = 0; i < 7; i++) {
      const response = await fetch(`${server.url}/v2/models/ticker/infer`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(endless),
        signal: AbortSignal.timeout(10_000),
      });
      const body = (await response.json()) as { error: string; code: string };
      assert.equal(response.status, 400, JSON.stringify(body));
      assert.equal(body.code, "BAD_REQUEST");
      assert.match(body.error, /streams its result.*own route.*ModelStreamInfer/);
    }
    await eventually(
      async () => (await ticker.stops()).stopped === before.stopped + 7,
      20_000,
      "every replica stream to stop",
    );
    const items = [];
    for await (const item of ticker.ticks(2, 1)) items.push(item);
    assert.deepEqual(items, [{ i: 0 }, { i: 1 }]);
  });
});
