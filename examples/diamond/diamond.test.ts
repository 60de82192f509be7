import assert from "node:assert/strict";
import { after, test } from "node:test";
import { describeGraph, GraphExecutionError, run, ValidationError } from "tributary";
import { startMain } from "../../test/start-main.js";
import { app, pipeline } from "./app.js";

after(() => pipeline.dispose());

test("diamond - both models read the input and the ensemble combines them with the id", async () => {
  // linear: 0.5*3 - 1*4 + 2*0 + 0.25 = -2.25; norm: hypot(3, 4, 0) * 1 = 5
  assert.deepEqual(await pipeline.execute({ features: [3, 4, 0], id: "a" }), {
    id: "a",
    score: 0.75 * -2.25 + 0.25 * 5,
    parts: [-2.25, 5],
  });
  // linear: 0.5 - 2 + 6 + 0.25 = 4.75; norm: hypot(1, 2, 3) * 2
  const b = await pipeline.execute({ features: [1, 2, 3], scale: 2, id: "b" });
  assert.deepEqual(b.parts, [4.75, Math.hypot(1, 2, 3) * 2]);
  assert.equal(b.score, 0.75 * 4.75 + 0.25 * Math.hypot(1, 2, 3) * 2);
});

test("diamond - the graph has three deployments and the input fans out to both models", () => {
  const { deployments, nodes, edges } = describeGraph(pipeline);
  assert.deepEqual(
    deployments.map((d) => [d.name, d.options.numReplicas]),
    [
      ["Ensemble", 1],
      ["Linear", 2],
      ["Norm", 1],
    ],
  );
  const input = nodes.find((n) => n.kind === "input")!;
  const readers = edges
    .filter((e) => e.from === input.id)
    .map((e) => nodes.find((n) => n.id === e.to)!.label);
  assert.deepEqual(readers.sort(), ["Norm.predict()", "input.features", "input.id"]);
});

test("diamond - a bad request is rejected before any model runs", async () => {
  await assert.rejects(
    pipeline.execute({ features: [], id: 1 } as never),
    (error: unknown) =>
      error instanceof ValidationError && error.issues.map((i) => i.path).join() === "features,id",
  );
  await assert.rejects(pipeline.execute({ features: [1], scale: -1, id: "x" }), ValidationError);
  assert.ok(!(ValidationError.prototype instanceof GraphExecutionError));
});

test(
  "diamond - served with replicas, the pipeline gives the same answers",
  { timeout: 60_000 },
  async () => {
    await using server = await run(app, { port: 0 });
    assert.deepEqual(await server.handle.call({ features: [3, 4, 0], id: "a" }), {
      id: "a",
      score: 0.75 * -2.25 + 0.25 * 5,
      parts: [-2.25, 5],
    });
    const status = (await server.status()).applications.diamond!;
    assert.equal(status.status, "RUNNING");
    assert.equal(status.deployments.Linear?.replicas.length, 2);
  },
);

test(
  "diamond - main.ts serves the example over HTTP until Ctrl-C, which drains and exits 0",
  { timeout: 60_000 },
  async () => {
    const main = await startMain("examples/diamond/main.ts", /Try it:/, "main.ts", 50_000);
    try {
      const output = main.output();
      assert.match(
        output,
        /POST \{"features":\[3,4,0\],"id":"a"\} -> 200 \{"id":"a","score":-0\.4375,"parts":\[-2\.25,5\]\}/,
      );
      assert.match(output, /Linear\s+HEALTHY\s+Linear#1 \(thread \d+\), Linear#2 \(thread \d+\)/);
      const url = /Serving "diamond" at (\S+)/.exec(output)![1]!;
      const response = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: '{"features":[1,2,3],"scale":2,"id":"b"}',
      });
      assert.deepEqual(((await response.json()) as { parts: number[] }).parts, [
        4.75,
        Math.hypot(1, 2, 3) * 2,
      ]);
      assert.equal(await main.interrupt(), 0);
      assert.match(main.output(), /Stopped\./);
    } finally {
      main.kill();
    }
  },
);
