import assert from "node:assert/strict";
import { test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { loadInferenceService } from "tributary/internal";
import { app } from "../fixtures/oip-app.js";
import { serve } from "../serve.js";
import { type Client, rpc } from "../ingress/grpc-client.js";
import { scrape, total } from "./scrape.js";

const good = {
  model_name: "scaler",
  inputs: [
    { name: "x", datatype: "FP32", shape: [1, 2], contents: { fp32_contents: [2, 4] } },
    { name: "scale", datatype: "FP64", shape: [1], contents: { fp64_contents: [3] } },
  ],
};

for (const workers of [1, 2]) {
  test(
    `metrics - gRPC calls are counted by model and status, and OIP REST calls by the model they name (workers: ${workers})`,
    { timeout: 60_000 },
    async () => {
      await using server = await serve(app, { grpc: { port: 0 }, http: { workers } });
      const Service = loadInferenceService();
      const client = new Service(
        `127.0.0.1:${server.grpcPort}`,
        grpc.credentials.createInsecure(),
      ) as unknown as Client;
      try {
        await rpc(client, "ModelInfer", good);
        await rpc(client, "ModelInfer", good);
        await assert.rejects(
          rpc(client, "ModelInfer", {
            ...good,
            inputs: [{ ...good.inputs[0], shape: [2, 2] }, good.inputs[1]],
          }),
        );
        await assert.rejects(rpc(client, "ModelInfer", { ...good, model_name: "nothing" }));
      } finally {
        client.close();
      }
      const rest = await fetch(`${server.url}/v2/models/scaler/infer`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          inputs: [
            { name: "x", datatype: "FP32", shape: [1, 2], data: [1, 2] },
            { name: "scale", datatype: "FP64", shape: [1], data: [2] },
          ],
        }),
      });
      assert.equal(rest.status, 200);
      const { samples } = await scrape(server.url);
      const scaler = { application: "scaler" };
      assert.equal(total(samples, "tributary_grpc_requests_total", { ...scaler, code: "OK" }), 2);
      assert.equal(
        total(samples, "tributary_grpc_requests_total", { ...scaler, code: "INVALID_ARGUMENT" }),
        1,
      );
      assert.equal(
        total(samples, "tributary_grpc_requests_total", { application: "", code: "NOT_FOUND" }),
        1,
      );
      assert.equal(total(samples, "tributary_grpc_request_duration_seconds_count", scaler), 3);
      assert.equal(total(samples, "tributary_http_requests_total", { ...scaler, code: "200" }), 1);
    },
  );
}
