import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { NotFoundError, ServerClosedError, ValidationError, type Server } from "tributary";
import { serve } from "../serve.js";
import { app, type Scaler } from "../fixtures/basic-app.js";

describe("serving a graph with thread replicas", { timeout: 60_000 }, () => {
  let server: Server<{ x: number; id: string }, { id: string; total: number; streamed: number[] }>;

  before(async () => {
    server = await serve(app);
  });
  after(() => server.close());

  test("run - the whole graph answers through server.handle, handles in constructors included", async () => {
    // scale(2) = 20, addOne(2) = 3, and the combiner adds scale(100) and streams count(3)
    assert.deepEqual(await server.handle.call({ x: 2, id: "a" }), {
      id: "a",
      total: 1023,
      streamed: [0, 1, 2],
    });
    const many = await Promise.all(
      Array.from({ length: 20 }, (_, i) => server.handle.call({ x: i, id: `r${i}` })),
    );
    assert.deepEqual(
      many.map((r) => r.total),
      Array.from({ length: 20 }, (_, i) => 10 * i + i + 1 + 1000),
    );
  });

  test("run - the input is validated before any replica is called", async () => {
    await assert.rejects(
      server.handle.call({ x: "2", id: 1 } as never),
      (error: unknown) =>
        error instanceof ValidationError && error.issues.map((i) => i.path).join() === "x,id",
    );
  });

  test("router - requests spread over all replicas of a deployment", async () => {
    const scaler = server.getHandle<Scaler>("scaler");
    const seen = new Set(await Promise.all(Array.from({ length: 40 }, () => scaler.whoami())));
    assert.deepEqual([...seen].sort(), ["scaler#1", "scaler#2"]);
  });

  test("handle - a deployment handle calls methods, streams, and rejects with the deployment named", async () => {
    const scaler = server.getHandle<Scaler>("scaler");
    assert.equal(await scaler.scale(4), 40);
    const items: number[] = [];
    for await (const item of scaler.count(5)) items.push(item);
    assert.deepEqual(items, [0, 1, 2, 3, 4]);
    // Stopping a stream early is allowed, and the deployment keeps serving.
    for await (const item of scaler.count(1_000_000)) if (item === 2) break;
    assert.equal(await scaler.scale(1), 10);
    const missing = (scaler as unknown as { nope(): Promise<unknown> }).nope();
    await assert.rejects(missing, /Deployment "scaler" has no method "nope"/);
    assert.throws(() => server.getHandle("nobody"), NotFoundError);
    // A function deployment's handle calls the function with `call(...)`.
    assert.equal(await server.getHandle<{ call(x: number): number }>("addOne").call(41), 42);
  });

  test("handle - an argument that cannot be sent is rejected on the caller's side and frees its slot", async () => {
    const scaler = server.getHandle<{ scale(x: unknown): number }>("scaler");
    const unsendable = { nested: Symbol("not cloneable") } as never;
    const error = await scaler.scale(unsendable).catch((e: unknown) => e);
    // A symbol cannot be sent to a thread: rejected on the caller's side, naming the
    // deployment, the method and where in the arguments it is.
    assert.ok(error instanceof ValidationError);
    assert.match(error.message, /scaler\.scale\(\) .*cannot be sent to deployment "scaler"/);
    assert.match(error.message, /arguments\[0\]\.nested: it is a symbol/);
    assert.equal(await scaler.scale(2), 20, "the slot was given back");
  });

  test("transfer - typed arrays move to and from a thread replica without copying", async () => {
    const scaler = server.getHandle<Scaler>("scaler");
    const values = new Float32Array(256 * 1024).fill(2); // 1 MiB
    const result = await scaler.sum(values);
    assert.deepEqual(result, { sum: 2 * 256 * 1024, bytes: 1024 * 1024 });
    assert.equal(
      values.byteLength,
      0,
      "the argument's buffer moved to the replica (documented ownership rule)",
    );
    // A view into a larger buffer is copied instead, so the rest of the buffer stays usable.
    const big = new Float32Array(8).fill(1);
    assert.deepEqual(await scaler.sum(big.subarray(0, 4)), { sum: 4, bytes: 16 });
    assert.equal(big.byteLength, 32);
    const filled = await scaler.fill(3);
    assert.ok(filled instanceof Float32Array);
    assert.deepEqual([...filled], [1.5, 1.5, 1.5]);
  });

  test("status - reports the application, deployments and replicas", async () => {
    const status = (await server.status()).applications.basic!;
    assert.equal(status.status, "RUNNING");
    assert.deepEqual(Object.keys(status.deployments).sort(), ["Combiner", "addOne", "scaler"]);
    const scaler = status.deployments.scaler!;
    assert.equal(scaler.status, "HEALTHY");
    assert.equal(scaler.targetReplicas, 2);
    assert.deepEqual(
      scaler.replicas.map((r) => [r.id, r.state, r.isolation]),
      [
        ["scaler#1", "RUNNING", "thread"],
        ["scaler#2", "RUNNING", "thread"],
      ],
    );
  });

  test("close - a closed server refuses new requests with ServerClosedError", async () => {
    const other = await serve(app.withOptions({ scaler: { numReplicas: 1 } }));
    const scaler = other.getHandle<Scaler>("scaler");
    assert.equal(await scaler.scale(1), 10);
    await other.close();
    await other.close(); // safe twice
    await assert.rejects(other.handle.call({ x: 1, id: "late" }), ServerClosedError);
    await assert.rejects(scaler.scale(1), ServerClosedError);
  });
});
