import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import type { Server } from "tributary";
import { loadInferenceService } from "tributary/internal";
import { app, type Sleeper } from "../fixtures/sleepy-app.js";
import { eventually } from "../runtime/eventually.js";
import { serve } from "../serve.js";
import { scrape, total } from "../observability/scrape.js";

type Call = (
  request: unknown,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, response: unknown) => void,
) => grpc.ClientUnaryCall;

const napRequest = (ms: number) => ({
  model_name: "sleepy",
  id: "",
  inputs: [{ name: "ms", datatype: "FP64", shape: [1], contents: { fp64_contents: [ms] } }],
});

describe("gRPC deadlines and cancellation", { timeout: 60_000 }, () => {
  let server: Server;
  let client: grpc.Client;
  let infer: Call;

  before(async () => {
    server = await serve(app, { grpc: { port: 0 }, requestTimeout: "1s" });
    client = new (loadInferenceService())(
      `127.0.0.1:${server.grpcPort}`,
      grpc.credentials.createInsecure(),
    );
    infer = (client as unknown as { ModelInfer: Call }).ModelInfer.bind(client);
  });
  after(async () => {
    client.close();
    await server.close();
  });

  const call = (ms: number, options: grpc.CallOptions = {}) => {
    let handle!: grpc.ClientUnaryCall;
    const answer = new Promise<{ error: grpc.ServiceError | null; at: number }>((resolve) => {
      handle = infer(napRequest(ms), options, (error) => resolve({ error, at: Date.now() }));
    });
    return { handle, answer };
  };
  const ongoing = async () =>
    (await server.status()).applications.sleepy!.deployments.sleeper!.ongoing;

  test("grpc - requestTimeout ends a call with DEADLINE_EXCEEDED, as HTTP answers 504", async () => {
    const started = Date.now();
    const { answer } = call(8_000);
    const { error, at } = await answer;
    assert.equal(error?.code, grpc.status.DEADLINE_EXCEEDED, error?.details);
    assert.ok(at - started < 3_000, `answered after ${at - started} ms`);
    await eventually(async () => (await ongoing()) === 0, 5_000, "the slot is free");
  });

  test("grpc - calls past their client deadline free their slots and cancel the work", async () => {
    const sleeper = server.getHandle<Sleeper>("sleeper");
    const abortedBefore = await sleeper.aborted();
    const calls = Array.from({ length: 10 }, () =>
      call(30_000, { deadline: new Date(Date.now() + 300) }),
    );
    const answers = await Promise.all(calls.map((c) => c.answer));
    assert.deepEqual(
      answers.map((a) => a.error?.code),
      Array(10).fill(grpc.status.DEADLINE_EXCEEDED),
    );
    await eventually(async () => (await ongoing()) === 0, 5_000, "every slot is free");
    // The server records them as the client saw them (before: CANCELLED, grpc-js's event).
    const { samples } = await scrape(server.url);
    const codes = (code: string) => total(samples, "tributary_grpc_requests_total", { code });
    assert.equal(codes("CANCELLED"), 0);
    assert.equal(codes("DEADLINE_EXCEEDED"), 11, "these 10 and the requestTimeout one");
    // The requests that were running (two at a time, more if a queued one got a slot in
    // the instant before its own deadline) saw their signal fire.
    await eventually(
      async () => (await sleeper.aborted()) - abortedBefore >= 2,
      5_000,
      "the running work is cancelled",
    );
    const started = Date.now();
    const response = await fetch(`${server.url}/nap`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ms: 10 }),
    });
    assert.equal(response.status, 200, await response.clone().text());
    assert.ok(Date.now() - started < 900, "HTTP is served at once afterwards");
  });

  test("grpc - a call the client cancels frees its slot and cancels the work", async () => {
    const sleeper = server.getHandle<Sleeper>("sleeper");
    const { handle, answer } = call(30_000);
    await eventually(async () => (await ongoing()) === 1, 5_000, "the call runs");
    // Read once the call runs: the previous test's last cancels reached the replica before
    // this call did (one channel, in order), so no late abort of theirs is counted here.
    const abortedBefore = await sleeper.aborted();
    handle.cancel();
    assert.equal((await answer).error?.code, grpc.status.CANCELLED);
    await eventually(async () => (await ongoing()) === 0, 5_000, "the slot is free");
    await eventually(
      async () => (await sleeper.aborted()) - abortedBefore === 1,
      5_000,
      "the replica's signal fired",
    );
  });
});
