import assert from "node:assert/strict";
import { test } from "node:test";
import { transferPlan } from "tributary/internal";
import { serve } from "../serve.js";
import { app } from "../fixtures/tensor-app.js";

test("transfer - a value read by two steps is copied, a value read by one moves", () => {
  const steps = app.graph.steps;
  const plan = transferPlan(app.graph);
  const moves = Object.fromEntries(
    steps.filter((s) => s.op === "call").map((s) => [s.label, plan[s.index]![0]]),
  );
  // input.data has two readers (normalize, length); normalize's result has one (total).
  assert.deepEqual(moves, { "normalize()": false, "total()": true, "length()": false });
});

test(
  "transfer - a served graph gives every reader of a shared tensor the whole tensor",
  { timeout: 60_000 },
  async () => {
    await using server = await serve(app);
    const data = new Float32Array(64 * 1024).map((_, i) => i % 4);
    const { normalizedTotal, length, scale } = await server.handle.call({ data, scale: 2 });
    assert.ok(
      Math.abs(normalizedTotal - (64 * 1024 * (0 + 1 + 2 + 3)) / 4 / 3) < 0.01,
      String(normalizedTotal),
    );
    assert.equal(length, 64 * 1024, "the second reader got the whole array");
    assert.equal(scale, 2);
  },
);

test(
  "oip - a z.instanceof(Float32Array) field is FP32 in the model's metadata, and FP32 data sent as that infers",
  { timeout: 60_000 },
  async () => {
    await using server = await serve(app);
    const metadata = (await (await fetch(`${server.url}/v2/models/tensors`)).json()) as {
      inputs: { name: string; datatype: string; shape: number[] }[];
    };
    // Before, UINT8: a client that sent what it said was refused.
    assert.deepEqual(metadata.inputs, [
      { name: "data", datatype: "FP32", shape: [-1] },
      { name: "scale", datatype: "FP64", shape: [1] },
    ]);
    const response = await fetch(`${server.url}/v2/models/tensors/infer`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        inputs: [
          { name: "data", datatype: "FP32", shape: [4], data: [0, 1, 2, 3] },
          { name: "scale", datatype: "FP64", shape: [1], data: [2] },
        ],
      }),
    });
    const body = (await response.json()) as { outputs: { name: string; data: number[] }[] };
    assert.equal(response.status, 200, JSON.stringify(body));
    const outputs = Object.fromEntries(body.outputs.map((o) => [o.name, o.data]));
    assert.ok(Math.abs(outputs.normalizedTotal![0]! - 2) < 1e-6, JSON.stringify(outputs));
    assert.deepEqual([outputs.length, outputs.scale], [[4], [2]]);
  },
);
