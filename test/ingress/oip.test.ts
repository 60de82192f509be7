import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import type { Server } from "tributary";
import { app } from "../fixtures/oip-app.js";
import { app as boundedApp, type Leaf } from "../fixtures/bounded-app.js";
import { eventually } from "../runtime/eventually.js";
import { serve } from "../serve.js";
import { type Client, inferenceClient, rpc } from "./grpc-client.js";

interface InferResponse {
  model_name: string;
  id: string;
  outputs: {
    name: string;
    datatype: string;
    shape: number[];
    data?: unknown[];
    contents?: Record<string, unknown[]>;
  }[];
  raw_output_contents?: Buffer[];
}

describe("Open Inference Protocol", { timeout: 60_000 }, () => {
  let server: Server;
  let client: Client;

  before(async () => {
    server = await serve(app, { grpc: { port: 0 } });
    client = inferenceClient(server.grpcPort);
  });
  after(async () => {
    client.close();
    await server.close();
  });

  test("oip rest - health, server metadata and model metadata derived from the schema", async () => {
    assert.deepEqual(await (await fetch(`${server.url}/v2/health/live`)).json(), { live: true });
    const ready = await fetch(`${server.url}/v2/health/ready`);
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), { ready: true });
    assert.deepEqual(await (await fetch(`${server.url}/v2/models/scaler/ready`)).json(), {
      name: "scaler",
      ready: true,
    });
    const meta = (await (await fetch(`${server.url}/v2`)).json()) as {
      name: string;
      version: string;
      extensions: unknown[];
    };
    assert.equal(meta.name, "tributary");
    assert.deepEqual(await (await fetch(`${server.url}/v2/models/scaler`)).json(), {
      name: "scaler",
      versions: ["1"],
      platform: "tributary",
      inputs: [
        { name: "x", datatype: "FP32", shape: [-1, 2] },
        { name: "scale", datatype: "FP64", shape: [1] },
        { name: "name", datatype: "BYTES", shape: [1] },
      ],
      outputs: [],
    });
    const missing = await fetch(`${server.url}/v2/models/other`);
    assert.equal(missing.status, 404);
    assert.match(((await missing.json()) as { error: string }).error, /No model "other"/);
  });

  test("oip rest - infer maps named input tensors onto the graph and results onto output tensors", async () => {
    const response = await fetch(`${server.url}/v2/models/scaler/infer`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        id: "req-1",
        inputs: [
          {
            name: "x",
            datatype: "FP32",
            shape: [2, 2],
            data: [
              [1, 2],
              [3, 4],
            ],
          },
          { name: "scale", datatype: "FP64", shape: [1], data: [0.5] },
          { name: "name", datatype: "BYTES", shape: [1], data: ["rows"] },
        ],
        outputs: [{ name: "y" }, { name: "sum" }],
      }),
    });
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), {
      model_name: "scaler",
      id: "req-1",
      outputs: [
        { name: "y", datatype: "FP32", shape: [2, 2], data: [0.5, 1, 1.5, 2] },
        { name: "sum", datatype: "FP64", shape: [1], data: [10] },
      ],
    });
    const unknownOutput = await fetch(`${server.url}/v2/models/scaler/infer`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        inputs: [
          { name: "x", datatype: "FP32", shape: [1, 2], data: [1, 2] },
          { name: "scale", datatype: "FP64", shape: [1], data: [1] },
          { name: "name", datatype: "BYTES", shape: [1], data: ["n"] },
        ],
        outputs: [{ name: "nope" }],
      }),
    });
    assert.equal(unknownOutput.status, 422);
    assert.match(
      ((await unknownOutput.json()) as { error: string }).error,
      /model "scaler" has no output "nope"; its outputs are y, sum/,
    );
  });

  test("oip rest - bad tensors are 400s or 422s with the OIP error body", async () => {
    const infer = (inputs: unknown) =>
      fetch(`${server.url}/v2/models/scaler/infer`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ inputs }),
      });
    const mismatch = await infer([{ name: "x", datatype: "FP32", shape: [2, 2], data: [1, 2, 3] }]);
    assert.equal(mismatch.status, 422);
    assert.match(
      ((await mismatch.json()) as { error: string }).error,
      /shape \[2, 2\] holds 4 elements but data has 3/,
    );
    const unknown = await infer([{ name: "x", datatype: "FP128", shape: [1], data: [1] }]);
    assert.match(((await unknown.json()) as { error: string }).error, /unknown datatype "FP128"/);
    const noSuchInput = await infer([{ name: "z", datatype: "FP32", shape: [1], data: [1] }]);
    assert.match(
      ((await noSuchInput.json()) as { error: string }).error,
      /has no input "z"; its inputs are x, scale, name/,
    );
    const binary = await fetch(`${server.url}/v2/models/scaler/infer`, {
      method: "POST",
      headers: {
        "content-type": "application/octet-stream",
        "inference-header-content-length": "2",
      },
      body: "{}\x00\x00\x80\x3f",
    });
    assert.equal(binary.status, 400);
    assert.match(
      ((await binary.json()) as { error: string }).error,
      /binary data extension \(Inference-Header-Content-Length\) is not supported/,
    );
    const missing = await infer([{ name: "x", datatype: "FP32", shape: [1, 2], data: [1, 2] }]);
    assert.equal(missing.status, 422);
    assert.match(((await missing.json()) as { error: string }).error, /scale/);
    // x is tensor({ shape: [-1, 2] }): before, any shape was taken.
    const inputs = (x: object) => [
      { name: "x", datatype: "FP32", ...x },
      { name: "scale", datatype: "FP64", shape: [1], data: [1] },
      { name: "name", datatype: "BYTES", shape: [1], data: ["n"] },
    ];
    for (const shape of [[4], [1, 4], [2, 2, 1]]) {
      const wrongShape = await infer(inputs({ shape, data: [1, 2, 3, 4] }));
      assert.equal(wrongShape.status, 422, JSON.stringify(shape));
      assert.match(
        ((await wrongShape.json()) as { error: string }).error,
        /expected shape \[-1, 2\] \(-1: any size\), got/,
      );
    }
    assert.equal((await infer(inputs({ shape: [2, 2], data: [1, 2, 3, 4] }))).status, 200);
    const overflow = await infer(inputs({ shape: [1, 2], data: [1, 1e39] }));
    assert.equal(overflow.status, 422);
    assert.match(
      ((await overflow.json()) as { error: string }).error,
      /data\[1\] = 1e\+39 is out of FP32's range/,
    );
  });

  test("oip rest - a client that goes away cancels the request; an id past 128 characters is 422", async () => {
    await using bounded = await serve(boundedApp);
    const infer = (body: object, signal?: AbortSignal) =>
      fetch(`${bounded.url}/v2/models/bounded/infer`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
        ...(signal && { signal }),
      });
    const input = (ms: number) => [{ name: "input", datatype: "INT32", shape: [], data: [ms] }];
    const ok = await infer({ id: "mine", inputs: input(5) });
    assert.equal(ok.status, 200);
    assert.equal(((await ok.json()) as InferResponse).id, "mine");
    const aborted = new AbortController();
    setTimeout(() => aborted.abort(), 300);
    await assert.rejects(infer({ inputs: input(20_000) }, aborted.signal), { name: "AbortError" });
    const leaf = bounded.getHandle<Leaf>("leaf");
    await eventually(
      async () => (await leaf.seen()).aborted === 1,
      5_000,
      "the leaf's signal fired",
    );
    const long = await infer({ id: "x".repeat(129), inputs: input(5) });
    assert.equal(long.status, 422);
    assert.match(((await long.json()) as { error: string }).error, /id: expected at most 128/);
  });

  test("oip grpc - liveness, readiness and metadata", async () => {
    assert.deepEqual(await rpc(client, "ServerLive", {}), { live: true });
    assert.deepEqual(await rpc(client, "ServerReady", {}), { ready: true });
    assert.deepEqual(await rpc(client, "ModelReady", { name: "scaler" }), { ready: true });
    assert.deepEqual(await rpc(client, "ModelReady", { name: "other" }), { ready: false });
    const server_ = await rpc<{ name: string }>(client, "ServerMetadata", {});
    assert.equal(server_.name, "tributary");
    const model = await rpc<{
      name: string;
      inputs: { name: string; datatype: string; shape: number[] }[];
    }>(client, "ModelMetadata", { name: "scaler" });
    assert.deepEqual(model.inputs[0], { name: "x", datatype: "FP32", shape: [-1, 2] });
    await assert.rejects(
      rpc(client, "ModelMetadata", { name: "other" }),
      (error: grpc.ServiceError) => error.code === grpc.status.NOT_FOUND,
    );
  });

  test("oip grpc - ModelInfer with typed contents", async () => {
    const response = await rpc<InferResponse>(client, "ModelInfer", {
      model_name: "scaler",
      id: "g-1",
      inputs: [
        { name: "x", datatype: "FP32", shape: [1, 2], contents: { fp32_contents: [2, 4] } },
        { name: "scale", datatype: "FP64", shape: [1], contents: { fp64_contents: [3] } },
      ],
    });
    assert.equal(response.model_name, "scaler");
    assert.equal(response.id, "g-1");
    const y = response.outputs.find((o) => o.name === "y")!;
    assert.deepEqual([y.datatype, y.shape, y.contents?.fp32_contents], ["FP32", [1, 2], [6, 12]]);
    const name = response.outputs.find((o) => o.name === "name")!;
    assert.deepEqual(name.contents?.bytes_contents?.map(String), ["none"]);
  });

  /** The scaler's ModelInfer over gRPC with raw contents: `x` (FP32, 2 × 2) times 2. */
  const scaleRaw = (x: Float32Array, outputs = ["y"]): Promise<InferResponse> =>
    rpc<InferResponse>(client, "ModelInfer", {
      model_name: "scaler",
      inputs: [
        { name: "x", datatype: "FP32", shape: [2, 2] },
        { name: "scale", datatype: "FP64", shape: [1] },
      ],
      outputs: outputs.map((name) => ({ name })),
      raw_input_contents: [Buffer.from(x.buffer), Buffer.from(Float64Array.of(2).buffer)],
    });
  /** The first raw output, as FP32 values. */
  const rawFloats = (response: InferResponse): number[] => {
    const raw = response.raw_output_contents![0]!;
    return [...new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength))];
  };

  test("oip grpc - ModelInfer with raw_input_contents answers raw_output_contents", async () => {
    const response = await scaleRaw(Float32Array.of(1, 2, 3, 4));
    assert.deepEqual(
      response.outputs.map((o) => [o.name, o.datatype, o.shape]),
      [["y", "FP32", [2, 2]]],
    );
    assert.deepEqual(rawFloats(response), [2, 4, 6, 8]);
    // An output the result does not have is refused (before: left out, unsaid).
    await assert.rejects(
      scaleRaw(Float32Array.of(1, 2, 3, 4), ["y", "nope"]),
      (error: grpc.ServiceError) =>
        error.code === grpc.status.INVALID_ARGUMENT &&
        /model "scaler" has no output "nope"; its outputs are y, sum/.test(error.details),
    );
  });

  test("oip - NaN and Infinity in an answer: null in REST JSON (JSON has neither), exact over gRPC", async () => {
    // 3e38 × 2 overflows FP32 (a JSON request cannot carry NaN or Infinity itself).
    const rest = await fetch(`${server.url}/v2/models/scaler/infer`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[3e38,1]},{"name":"scale","datatype":"FP64","shape":[1],"data":[2]},{"name":"name","datatype":"BYTES","shape":[1],"data":["n"]}],"outputs":[{"name":"y"}]}`,
    });
    const text = await rest.text();
    assert.equal(rest.status, 200, text);
    const answer = JSON.parse(text) as InferResponse;
    assert.deepEqual(answer.outputs[0]!.data, [null, 2], "valid JSON, Infinity as null");
    const response = await scaleRaw(Float32Array.of(Number.NaN, Infinity, -Infinity, 1));
    assert.deepEqual(rawFloats(response), [Number.NaN, Infinity, -Infinity, 2]);
  });

  test("oip grpc - bad tensors are INVALID_ARGUMENT with the reason", async () => {
    const mismatch = rpc(client, "ModelInfer", {
      model_name: "scaler",
      inputs: [
        { name: "x", datatype: "FP32", shape: [2, 2] },
        { name: "scale", datatype: "FP64", shape: [1] },
      ],
      raw_input_contents: [Buffer.alloc(12), Buffer.alloc(8)],
    });
    await assert.rejects(
      mismatch,
      (error: grpc.ServiceError) =>
        error.code === grpc.status.INVALID_ARGUMENT &&
        /needs 16 bytes but raw contents have 12/.test(error.details),
    );
    const unknown = rpc(client, "ModelInfer", {
      model_name: "scaler",
      inputs: [{ name: "x", datatype: "COMPLEX", shape: [1] }],
    });
    await assert.rejects(
      unknown,
      (error: grpc.ServiceError) =>
        error.code === grpc.status.INVALID_ARGUMENT && /COMPLEX/.test(error.details),
    );
    // uint_contents is 32-bit: 300 does not fit a UINT8 (before, it arrived as 44).
    const wrapped = (id?: string) =>
      rpc(client, "ModelInfer", {
        model_name: "scaler",
        ...(id !== undefined && { id }),
        inputs: [{ name: "x", datatype: "UINT8", shape: [1], contents: { uint_contents: [300] } }],
      });
    await assert.rejects(
      wrapped("req-9"),
      (error: grpc.ServiceError) =>
        error.code === grpc.status.INVALID_ARGUMENT &&
        /data\[0\] = 300 is out of UINT8's range \(0 to 255\)/.test(error.details) &&
        // The error names its request, as HTTP's body does.
        error.metadata.get("x-request-id")[0] === "req-9",
    );
    await assert.rejects(wrapped(), (error: grpc.ServiceError) =>
      /^[0-9a-f-]{36}$/.test(String(error.metadata.get("x-request-id")[0])),
    );
  });

  test("oip grpc - a BYTES tensor with a -1 shape and an oversized request id are INVALID_ARGUMENT", async () => {
    const base = [
      { name: "x", datatype: "FP32", shape: [1, 2], contents: { fp32_contents: [2, 4] } },
      { name: "scale", datatype: "FP64", shape: [1], contents: { fp64_contents: [3] } },
    ];
    /** A call whose BYTES input `name` has `shape` and holds `bytes`. */
    const withName = (shape: number[], bytes: Buffer) =>
      rpc(client, "ModelInfer", {
        model_name: "scaler",
        inputs: [
          ...base,
          { name: "name", datatype: "BYTES", shape, contents: { bytes_contents: [bytes] } },
        ],
      });
    await assert.rejects(
      withName([-1, -1], Buffer.from("a")),
      (error: grpc.ServiceError) =>
        error.code === grpc.status.INVALID_ARGUMENT &&
        /shape\[0\] = -1 is not a non-negative integer/.test(error.details),
    );
    // Bytes that are not UTF-8, for a string field: before, they arrived as U+FFFD.
    await assert.rejects(
      withName([1], Buffer.from([0xff, 0xfe, 0x41])),
      (error: grpc.ServiceError) =>
        error.code === grpc.status.INVALID_ARGUMENT && /not valid UTF-8/.test(error.details),
    );
    await assert.rejects(
      rpc(client, "ModelInfer", {
        model_name: "scaler",
        id: "x".repeat(1024 * 1024),
        inputs: base,
      }),
      (error: grpc.ServiceError) =>
        error.code === grpc.status.INVALID_ARGUMENT && /at most 128 printable/.test(error.details),
    );
    const fine = await rpc<InferResponse>(client, "ModelInfer", {
      model_name: "scaler",
      id: "x".repeat(128),
      inputs: base,
    });
    assert.equal(fine.id, "x".repeat(128));
  });
});
