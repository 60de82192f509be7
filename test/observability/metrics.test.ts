import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { describe, test } from "node:test";
import { serve } from "../serve.js";
import { eventually } from "../runtime/eventually.js";
import { app } from "../fixtures/metrics-app.js";
import { app as faultyApp, type Fragile } from "../fixtures/faulty-app.js";
import { app as tickerApp } from "../fixtures/stream-app.js";
import { has, scrape, total } from "./scrape.js";

const post = (url: string, x: number): Promise<Response> =>
  fetch(`${url}/metered`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(x),
  });

const promtool = spawnSync("promtool", ["--version"]).status === 0;

/** `promtool check metrics` on an exposition: resolves with its complaints ("" when none). */
function promtoolCheck(text: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      "promtool",
      ["check", "metrics"],
      { timeout: 20_000 },
      (error, stdout, stderr) =>
        resolve({
          code: error ? ((error as { code?: number }).code ?? 1) : 0,
          output: `${stdout}${stderr}`,
        }),
    );
    child.stdin!.end(text);
  });
}

describe("Prometheus metrics at GET /metrics", { timeout: 120_000 }, () => {
  test("metrics - requests, replica outcomes, processing time, batch sizes and replica states are exported", async () => {
    await using server = await serve(app);
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => post(server.url, i)));
    assert.deepEqual(new Set(answers.map((r) => r.status)), new Set([200]));
    assert.equal((await post(server.url, -1)).status, 500);

    // Replicas report at most every 20 ms: the scrape sees their counts soon after.
    let samples = (await scrape(server.url)).samples;
    await eventually(
      async () => {
        samples = (await scrape(server.url)).samples;
        return (
          total(samples, "tributary_deployment_requests_total", { deployment: "model" }) === 12 &&
          total(samples, "tributary_deployment_requests_total", { deployment: "double" }) === 13
        );
      },
      5_000,
      "the replicas reported their calls (12 for the model, 13 for double)",
    );
    const metered = { application: "metered" };
    assert.equal(total(samples, "tributary_http_requests_total", { ...metered, code: "200" }), 12);
    assert.equal(total(samples, "tributary_http_requests_total", { ...metered, code: "500" }), 1);
    assert.equal(total(samples, "tributary_http_request_duration_seconds_count", metered), 13);
    const double = { ...metered, deployment: "double" };
    assert.equal(
      total(samples, "tributary_deployment_requests_total", { ...double, outcome: "ok" }),
      12,
    );
    assert.equal(
      total(samples, "tributary_deployment_requests_total", { ...double, outcome: "error" }),
      1,
    );
    assert.equal(total(samples, "tributary_deployment_processing_seconds_count", double), 13);
    assert.equal(
      total(samples, "tributary_deployment_processing_seconds_bucket", { ...double, le: "+Inf" }),
      13,
    );
    // Twelve concurrent items: the batcher ran fewer batches than items, 12 items in all.
    const model = { ...metered, deployment: "model" };
    const batches = total(samples, "tributary_batch_size_count", model);
    assert.ok(batches >= 2 && batches < 12, `12 items ran in ${batches} batches`);
    assert.equal(total(samples, "tributary_batch_size_sum", model), 12);
    assert.equal(
      total(samples, "tributary_deployment_replicas", { ...model, state: "RUNNING" }),
      1,
    );
    assert.equal(total(samples, "tributary_deployment_replicas", { ...model, state: "DEAD" }), 0);
    assert.equal(total(samples, "tributary_replica_starts_total", model), 1);
    assert.equal(total(samples, "tributary_replica_failures_total", model), 0);
    assert.equal(total(samples, "tributary_deployment_queued_requests", model), 0);
    assert.ok(has(samples, "tributary_deployment_ongoing_requests"));
    const replicas = new Set(
      samples
        .filter((s) => s.name === "tributary_deployment_requests_total")
        .map((s) => s.labels.replica),
    );
    assert.deepEqual([...replicas].sort(), ["double#1", "model#1"]);
  });

  test("metrics - a request whose client goes away before its answer counts as 499", async () => {
    await using server = await serve(tickerApp);
    const aborted = new AbortController();
    const request = fetch(`${server.url}/ticker`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ n: 3, ms: 1_000 }),
      signal: aborted.signal,
    });
    setTimeout(() => aborted.abort(), 200);
    await assert.rejects(request, { name: "AbortError" });
    await eventually(
      async () =>
        total((await scrape(server.url)).samples, "tributary_http_requests_total", {
          application: "ticker",
          code: "499",
        }) === 1,
      5_000,
      "the abandoned request is counted, under 499",
    );
    const { samples } = await scrape(server.url);
    assert.equal(
      total(samples, "tributary_http_request_duration_seconds_count", { application: "ticker" }),
      1,
    );
  });

  test(
    "metrics - the exposition passes promtool check metrics",
    {
      skip:
        !promtool &&
        !process.env.CI &&
        "promtool is not installed (apt-get install prometheus; .ci/run does)",
    },
    async () => {
      assert.ok(promtool, "CI installs prometheus (.ci/run), which brings promtool; it is missing");
      await using server = await serve(app, { grpc: { port: 0 } });
      await post(server.url, 1);
      await post(server.url, -1);
      await fetch(`${server.url}/v2/models/metered`);
      await eventually(
        async () => total((await scrape(server.url)).samples, "tributary_batch_size_count") > 0,
        5_000,
        "the batch sizes were reported",
      );
      const { text } = await scrape(server.url);
      const { code, output } = await promtoolCheck(text);
      assert.equal(output.trim(), "", `promtool found problems:\n${output}`);
      assert.equal(code, 0);
    },
  );

  test("metrics - front-door worker processes' HTTP series reach the /metrics answer, summed, and a process replica's series too", async () => {
    await using server = await serve(app.withOptions({ double: { isolation: "process" } }), {
      http: { workers: 2 },
    });
    for (let i = 0; i < 20; i++) assert.equal((await post(server.url, i)).status, 200);
    await eventually(
      async () => {
        const { samples } = await scrape(server.url);
        return (
          total(samples, "tributary_http_requests_total", {
            application: "metered",
            code: "200",
          }) === 20 &&
          total(samples, "tributary_deployment_requests_total", { deployment: "double" }) === 20
        );
      },
      10_000,
      "every worker's 20 requests and the replicas' calls are in one answer",
    );
    // A worker that dies takes none of its counts with it: counters never go down (before,
    // its share dropped out of the sum, which Prometheus reads as a reset).
    const [victim] = server.frontDoorPool!.pids();
    process.kill(victim!, "SIGKILL");
    await eventually(
      async () =>
        server.frontDoorPool!.pids().length === 2 &&
        !server.frontDoorPool!.pids().includes(victim!),
      20_000,
      "the dead worker is replaced",
    );
    for (let i = 0; i < 10; i++) assert.equal((await post(server.url, i)).status, 200);
    const http200 = async () =>
      total((await scrape(server.url)).samples, "tributary_http_requests_total", {
        application: "metered",
        code: "200",
      });
    await eventually(async () => (await http200()) === 30, 10_000, "30 requests counted");
    assert.equal(await http200(), 30);
  });

  test("metrics - metrics: false records nothing, and two servers in one process keep their series apart", async () => {
    await using off = await serve(app, { metrics: false });
    await using on = await serve(app);
    assert.equal((await post(off.url, 1)).status, 200);
    assert.equal((await post(on.url, 1)).status, 200);
    assert.equal((await post(on.url, 2)).status, 200);
    const quiet = await scrape(off.url);
    assert.equal(quiet.text, "");
    await eventually(
      async () =>
        total((await scrape(on.url)).samples, "tributary_deployment_requests_total", {
          deployment: "double",
        }) === 2,
      5_000,
      "the second server counts its own two calls only",
    );
    const { samples } = await scrape(on.url);
    assert.equal(
      total(samples, "tributary_http_requests_total", { application: "metered", code: "200" }),
      2,
    );
  });

  test("metrics - a replica that dies counts as a failure, and its replacement as a start", async () => {
    await using server = await serve(faultyApp);
    const fragile = server.getHandle<Fragile>("fragile");
    await assert.rejects(fragile.exit());
    assert.equal(await fragile.echo(1), 1); // served by the replacement
    const labels = { application: "faulty", deployment: "fragile" };
    const { samples } = await scrape(server.url);
    assert.equal(
      total(samples, "tributary_replica_failures_total", { ...labels, reason: "died" }),
      1,
    );
    assert.equal(
      total(samples, "tributary_replica_failures_total", { ...labels, reason: "health_check" }),
      0,
    );
    assert.equal(total(samples, "tributary_replica_starts_total", labels), 2);
    assert.equal(
      total(samples, "tributary_deployment_replicas", { ...labels, state: "RUNNING" }),
      1,
    );
  });

  test("metrics - a call whose result or stream item cannot be sent back counts as an error, in thread and process replicas; the stream stops there", async () => {
    for (const isolation of ["thread", "process"] as const) {
      await using server = await serve(faultyApp.withOptions({ fragile: { isolation } }));
      const fragile = server.getHandle<Fragile>("fragile");
      await assert.rejects(fragile.unsendable(), /could not be sent back/);
      const labels = { application: "faulty", deployment: "fragile" };
      const count = async (outcome: string): Promise<number> =>
        total((await scrape(server.url)).samples, "tributary_deployment_requests_total", {
          ...labels,
          outcome,
        });
      await eventually(async () => (await count("error")) === 1, 5_000, `${isolation}: an error`);
      assert.equal(await count("ok"), 0, `${isolation}: not an answered call`);
      // A stream item that cannot be sent ends the stream there, as an error.
      const items = fragile.unsendableItems()[Symbol.asyncIterator]();
      assert.deepEqual(await items.next(), { value: 1, done: false });
      await assert.rejects(items.next(), /stream item could not be sent back/);
      await eventually(
        async () => (await fragile.unsendableStoppedAfter()) === 1,
        5_000,
        `${isolation}: the generator stopped`,
      );
      await eventually(async () => (await count("error")) === 2, 5_000, `${isolation}: 2 errors`);
    }
  });
});
