import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { serve } from "../serve.js";
import { app } from "../fixtures/trace-context-app.js";
import { inferenceClient } from "../ingress/grpc-client.js";

interface InferResponse {
  readonly outputs: readonly {
    readonly name: string;
    readonly contents: { readonly bytes_contents: readonly Buffer[] };
  }[];
}

interface StreamAnswer {
  readonly error_message: string;
  readonly infer_response?: InferResponse;
}

/** The two calls this test makes, with metadata. */
interface GrpcCalls {
  ModelInfer(
    request: unknown,
    metadata: grpc.Metadata,
    callback: (error: grpc.ServiceError | null, response: InferResponse) => void,
  ): void;
  ModelStreamInfer(metadata: grpc.Metadata): grpc.ClientDuplexStream<unknown, StreamAnswer>;
}

/** The `outer` and `inner` outputs of a gRPC answer, as text. */
const fields = (response: InferResponse | undefined): Record<string, string> =>
  Object.fromEntries(
    (response?.outputs ?? []).map((o) => [o.name, String(o.contents.bytes_contents[0])]),
  );

// No OpenTelemetry SDK in this process or its replicas: no span is made, and the trace
// context a request came with is still carried through every hop.
describe("trace context without an SDK", { timeout: 60_000 }, () => {
  test("tracing - with no SDK registered, an incoming traceparent reaches every deployment unchanged (a thread, then a process); a malformed one or none gives none", async () => {
    await using server = await serve(app);
    const where = async (traceparent?: string) => {
      const response = await fetch(`${server.url}/where`, {
        method: "POST",
        headers: { "content-type": "application/json", ...(traceparent && { traceparent }) },
        body: JSON.stringify("x"),
      });
      assert.equal(response.status, 200);
      return (await response.json()) as { outer: string | null; inner: string | null };
    };
    const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    assert.deepEqual(await where(traceparent), { outer: traceparent, inner: traceparent });
    assert.deepEqual(await where(), { outer: null, inner: null });
    assert.deepEqual(await where("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01"), {
      outer: null,
      inner: null,
    });
    assert.deepEqual(await where("not a traceparent"), { outer: null, inner: null });
    // A route of the application's own: its handle calls carry the request's trace context.
    for (const [sent, expected] of [
      [traceparent, traceparent],
      ["not a traceparent", null],
    ] as const) {
      const response = await fetch(`${server.url}/where/handle`, {
        headers: { traceparent: sent },
      });
      assert.equal(response.status, 200);
      assert.deepEqual(await response.json(), { outer: expected, inner: expected }, sent);
    }
  });

  test("tracing - with no SDK registered, gRPC's ModelInfer and ModelStreamInfer carry a valid traceparent to every deployment and drop a malformed one", async () => {
    await using server = await serve(app, { grpc: { port: 0 } });
    const client = inferenceClient(server.grpcPort);
    const calls = client as unknown as GrpcCalls;
    try {
      const request = {
        model_name: "contexts",
        inputs: [
          {
            name: "input",
            datatype: "BYTES",
            shape: [1],
            contents: { bytes_contents: [Buffer.from("x")] },
          },
        ],
      };
      const unary = (metadata: grpc.Metadata): Promise<InferResponse> =>
        new Promise((resolve, reject) =>
          calls.ModelInfer(request, metadata, (error, response) =>
            error ? reject(error) : resolve(response),
          ),
        );
      const streamed = (metadata: grpc.Metadata): Promise<InferResponse | undefined> =>
        new Promise((resolve, reject) => {
          const call = calls.ModelStreamInfer(metadata);
          call.on("data", (answer: StreamAnswer) => {
            if (answer.error_message) reject(new Error(answer.error_message));
            else resolve(answer.infer_response);
            call.end();
          });
          call.on("error", reject);
          call.write(request);
        });
      const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
      for (const [sent, expected] of [
        [traceparent, traceparent],
        ["not a traceparent", "null"],
      ] as const) {
        const metadata = new grpc.Metadata();
        metadata.set("traceparent", sent);
        const both = { outer: expected, inner: expected };
        assert.deepEqual(fields(await unary(metadata)), both, `ModelInfer, ${sent}`);
        assert.deepEqual(fields(await streamed(metadata)), both, `ModelStreamInfer, ${sent}`);
      }
    } finally {
      client.close();
    }
  });
});
