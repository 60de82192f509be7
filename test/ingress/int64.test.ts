import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import type { Server } from "tributary";
import { app } from "../fixtures/int64-app.js";
import { serve } from "../serve.js";
import { type Client, inferenceClient, rpc } from "./grpc-client.js";

/** Past 2^53, where a double is no longer exact: 2^53 + 1 reads as 2^53. */
const PAST = "9007199254740993";
const INT64_MAX = "9223372036854775807";
const INT64_MIN = "-9223372036854775808";
const UINT64_MAX = "18446744073709551615";

interface Output {
  name: string;
  datatype: string;
  contents?: { int64_contents?: string[]; uint64_contents?: string[] };
  data?: unknown[];
}

describe("INT64 and UINT64 tensors", { timeout: 60_000 }, () => {
  let server: Server;
  let client: Client;

  before(async () => {
    server = await serve(app, { grpc: { port: 0 } });
    // A client that reads int64 fields as strings, as one that needs them exact does.
    client = inferenceClient(server.grpcPort, String);
  });
  after(async () => {
    client.close();
    await server.close();
  });

  test("int64 grpc - int64_contents and uint64_contents arrive and return exact, to their bounds", async () => {
    const answer = await rpc<{ outputs: Output[] }>(client, "ModelInfer", {
      model_name: "ids",
      inputs: [
        {
          name: "ids",
          datatype: "INT64",
          shape: [3],
          contents: { int64_contents: [PAST, INT64_MIN, "9223372036854775806"] },
        },
        {
          name: "big",
          datatype: "UINT64",
          shape: [1],
          contents: { uint64_contents: [UINT64_MAX] },
        },
      ],
    });
    const out = Object.fromEntries(answer.outputs.map((o) => [o.name, o]));
    assert.deepEqual(out.ids!.contents!.int64_contents, [PAST, INT64_MIN, "9223372036854775806"]);
    assert.deepEqual(out.next!.contents!.int64_contents, [
      "9007199254740994",
      "-9223372036854775807",
      INT64_MAX,
    ]);
    assert.deepEqual(out.big!.contents!.uint64_contents, [UINT64_MAX]);
  });

  test("int64 grpc - a dimension past 2^53 is INVALID_ARGUMENT, not rounded", async () => {
    await assert.rejects(
      rpc(client, "ModelInfer", {
        model_name: "ids",
        inputs: [
          { name: "ids", datatype: "INT64", shape: [PAST], contents: { int64_contents: ["1"] } },
          { name: "big", datatype: "UINT64", shape: [1], contents: { uint64_contents: ["1"] } },
        ],
      }),
      (error: grpc.ServiceError) =>
        error.code === grpc.status.INVALID_ARGUMENT &&
        error.details.includes(`shape[0] = ${PAST} is not a non-negative integer`),
    );
  });

  test("int64 rest - values past 2^53 are answered as exact JSON integers", async () => {
    const response = await fetch(`${server.url}/v2/models/ids/infer`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        inputs: [
          { name: "ids", datatype: "INT64", shape: [2], data: [9007199254740991, -5] },
          { name: "big", datatype: "UINT64", shape: [1], data: [7] },
        ],
      }),
    });
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
    const text = await response.text();
    // JSON.stringify of the double would write 9007199254740992 for both.
    assert.match(
      text,
      /"name":"next","datatype":"INT64","shape":\[2\],"data":\[9007199254740992,-4\]/,
    );
    assert.match(
      text,
      /"name":"ids","datatype":"INT64","shape":\[2\],"data":\[9007199254740991,-5\]/,
    );
    assert.equal((JSON.parse(text) as { outputs: unknown[] }).outputs.length, 3);
  });

  test("int64 rest - a JSON number past 2^53 is refused, naming gRPC, not rounded", async () => {
    const response = await fetch(`${server.url}/v2/models/ids/infer`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: `{"inputs":[{"name":"ids","datatype":"INT64","shape":[1],"data":[${PAST}]},{"name":"big","datatype":"UINT64","shape":[1],"data":[1]}]}`,
    });
    const body = (await response.json()) as { error: string };
    assert.equal(response.status, 422, JSON.stringify(body));
    assert.match(
      body.error,
      /data\[0\] is past ±2\^53 \(it reads as 9007199254740992\), where a JSON number is not exact; send INT64 values this large over gRPC/,
    );
  });
});
