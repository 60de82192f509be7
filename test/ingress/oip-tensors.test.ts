import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import { after, before, describe, test } from "node:test";
import type { Server } from "tributary";
import { app } from "../fixtures/oip-shapes-app.js";
import { serve } from "../serve.js";
import { type Client, inferenceClient, rpc } from "./grpc-client.js";

interface Output {
  name: string;
  datatype: string;
  shape: number[];
  data?: unknown[];
  contents?: Record<string, unknown[]>;
}

const inputs = (kind: string) => [
  { name: "x", datatype: "FP32", shape: [2], data: [1, 2] },
  { name: "s", datatype: "BYTES", shape: [2], data: ["a", "bc"] },
  { name: "kind", datatype: "BYTES", shape: [1], data: [kind] },
];

describe("Open Inference Protocol: tensors in and out", { timeout: 60_000 }, () => {
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

  const infer = async (body: unknown): Promise<Record<string, Output>> => {
    const response = await fetch(`${server.url}/v2/models/shapes/infer`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const answer = (await response.json()) as { outputs: Output[] };
    assert.equal(response.status, 200, JSON.stringify(answer));
    return Object.fromEntries(answer.outputs.map((o) => [o.name, o]));
  };

  test("oip tensors - an output is named for its result field, not for the input tensor it passes on", async () => {
    const out = await infer({ inputs: inputs("pass") });
    assert.deepEqual(Object.keys(out), ["y", "z", "keys", "s"]);
    assert.deepEqual(out.z, { name: "z", datatype: "FP32", shape: [2], data: [1, 2] });
    assert.deepEqual(out.keys!.data, ["data,datatype,shape"]);
    const only = await infer({ inputs: inputs("pass"), outputs: [{ name: "y" }] });
    assert.deepEqual(only.y!.data, [2, 4]);
    assert.deepEqual(Object.keys(only), ["y"]);
  });

  test("oip tensors - an empty outputs list asks for every output, as over gRPC", async () => {
    const out = await infer({ inputs: inputs("pass"), outputs: [] });
    assert.deepEqual(Object.keys(out), ["y", "z", "keys", "s"]);
  });

  test("oip tensors - a ragged array goes as JSON text; rows of typed arrays and bigints as tensors", async () => {
    const ragged = await infer({ inputs: inputs("ragged") });
    // Before, [[1, 2, 3], [4]] went as FP64 [2, 3] with 4 elements.
    assert.deepEqual(ragged.r, {
      name: "r",
      datatype: "BYTES",
      shape: [1],
      data: ["[[1,2,3],[4]]"],
    });
    assert.deepEqual(ragged.deep!.data, ["[[1,2],[3,[4]]]"]);
    const rows = await infer({ inputs: inputs("rows") });
    assert.deepEqual(rows.e, { name: "e", datatype: "FP32", shape: [2, 2], data: [1, 2, 3, 4] });
    assert.deepEqual(rows.ids, { name: "ids", datatype: "INT64", shape: [2, 1], data: [1, -2] });
  });

  test("oip tensors - a JSON request with no Content-Type (tritonclient.http's) is read as JSON", async () => {
    /** A POST with a body and no Content-Type, which fetch would add. */
    const untyped = (path: string, body: string, headers: Record<string, string> = {}) =>
      new Promise<{ status: number; text: string }>((resolve, reject) => {
        const { port } = new URL(server.url);
        const req = httpRequest(
          {
            host: "127.0.0.1",
            port,
            method: "POST",
            path,
            headers: { ...headers, "content-length": Buffer.byteLength(body) },
          },
          (res) => {
            let text = "";
            res.setEncoding("utf8");
            res.on("data", (chunk: string) => (text += chunk));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
          },
        );
        req.on("error", reject);
        req.end(body);
      });
    const body = JSON.stringify({ inputs: inputs("pass"), outputs: [{ name: "y" }] });
    const answer = await untyped("/v2/models/shapes/infer", body);
    assert.equal(answer.status, 200, answer.text);
    assert.deepEqual((JSON.parse(answer.text) as { outputs: Output[] }).outputs[0]!.data, [2, 4]);
    // Untyped too: Triton's binary extension is refused saying what to do, and an empty
    // request is told what it lacks.
    const binary = await untyped("/v2/models/shapes/infer", '{"inputs":[]}\x00\x00\x80\x3f', {
      "inference-header-content-length": "13",
    });
    assert.equal(binary.status, 400, binary.text);
    assert.match(binary.text, /binary data extension \(Inference-Header-Content-Length\)/);
    const empty = await untyped("/v2/models/shapes/infer", "");
    assert.equal(empty.status, 422, empty.text);
    assert.match(empty.text, /an inference request needs an inputs array/);
    // The application's own route still refuses a body whose type it is not told.
    const own = await untyped("/shapes", JSON.stringify({ x: [1], s: ["a"], kind: "pass" }));
    assert.equal(own.status, 415, own.text);
  });

  test("oip tensors - BYTES into a tensor() input over gRPC, raw (as tritonclient sends) and typed", async () => {
    const kind = Buffer.from("pass");
    const lengthPrefixed = (...items: string[]) =>
      Buffer.concat(
        items.flatMap((item) => {
          const size = Buffer.alloc(4);
          size.writeUInt32LE(Buffer.byteLength(item));
          return [size, Buffer.from(item)];
        }),
      );
    const raw = await rpc<{ outputs: Output[]; raw_output_contents: Buffer[] }>(
      client,
      "ModelInfer",
      {
        model_name: "shapes",
        inputs: [
          { name: "x", datatype: "FP32", shape: [2] },
          { name: "s", datatype: "BYTES", shape: [2] },
          { name: "kind", datatype: "BYTES", shape: [1] },
        ],
        outputs: [{ name: "s" }],
        raw_input_contents: [
          Buffer.from(Float32Array.of(1, 2).buffer),
          lengthPrefixed("a", "bc"),
          lengthPrefixed("pass"),
        ],
      },
    );
    assert.deepEqual(
      raw.outputs.map((o) => [o.name, o.datatype, o.shape]),
      [["s", "BYTES", [2]]],
    );
    assert.deepEqual(raw.raw_output_contents[0], lengthPrefixed("a", "bc"));
    const typed = await rpc<{ outputs: Output[] }>(client, "ModelInfer", {
      model_name: "shapes",
      inputs: [
        { name: "x", datatype: "FP32", shape: [2], contents: { fp32_contents: [1, 2] } },
        {
          name: "s",
          datatype: "BYTES",
          shape: [1],
          contents: { bytes_contents: [Buffer.from("é")] },
        },
        { name: "kind", datatype: "BYTES", shape: [1], contents: { bytes_contents: [kind] } },
      ],
      outputs: [{ name: "s" }, { name: "z" }],
    });
    const out = Object.fromEntries(typed.outputs.map((o) => [o.name, o]));
    assert.deepEqual(out.s!.contents!.bytes_contents, [Buffer.from("é")]);
    assert.deepEqual(out.z!.contents!.fp32_contents, [1, 2]);
  });
});
