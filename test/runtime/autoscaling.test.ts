import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Duration, Server } from "tributary";
import { app, type Fragile } from "../fixtures/faulty-app.js";
import { serve } from "../serve.js";
import { Autoscaler, resolveOptions } from "tributary/internal";

async function replicasOf(server: Server): Promise<{ target: number; running: number }> {
  const d = (await server.status()).applications.faulty!.deployments.fragile!;
  return {
    target: d.targetReplicas,
    running: d.replicas.filter((r) => r.state === "RUNNING").length,
  };
}

/** Polls until `predicate` holds; returns when it first held (ms since `since`). */
async function when(
  predicate: () => Promise<boolean>,
  since: number,
  ms: number,
  what: string,
): Promise<number> {
  while (!(await predicate())) {
    if (Date.now() - since > ms) assert.fail(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return Date.now() - since;
}

/** The app with its deployment autoscaled from zero replicas, down again after `downscaleDelay`. */
const fromZero = (downscaleDelay: Duration) =>
  app.withOptions({
    fragile: {
      autoscaling: {
        minReplicas: 0,
        maxReplicas: 2,
        initialReplicas: 0,
        downscaleDelay,
        lookBackPeriod: "200ms",
      },
    },
  });

describe("autoscaling", { timeout: 90_000 }, () => {
  test("autoscaler - scales on average load over the look-back period, after the delays, within bounds", () => {
    const config = resolveOptions({
      autoscaling: {
        minReplicas: 1,
        maxReplicas: 4,
        targetOngoingRequests: 2,
        upscaleDelay: 100,
        downscaleDelay: 300,
        lookBackPeriod: 100,
      },
    }).autoscaling!;
    const a = new Autoscaler(config);
    assert.equal(a.observe(0, 8, 1), undefined, "a new decision waits for the delay");
    assert.equal(a.observe(50, 8, 1), undefined);
    assert.equal(a.observe(120, 8, 1), 4, "load 8 at 2 per replica: 4 replicas, after 100 ms");
    assert.equal(a.observe(200, 100, 4), undefined, "never above maxReplicas");
    for (let t = 300; t < 650; t += 50) assert.equal(a.observe(t, 0, 4), undefined, `at ${t} ms`);
    assert.equal(a.observe(650, 0, 4), 1, "down to minReplicas after the downscale delay");
    assert.equal(
      new Autoscaler({ ...config, minReplicas: 0 }).observe(0, 1, 0),
      1,
      "from zero at once",
    );
    // With smoothing, no load still reaches zero.
    const smooth = new Autoscaler({
      ...config,
      minReplicas: 0,
      smoothingFactor: 0.5,
      downscaleDelayMs: 0,
    });
    let replicas = 2;
    for (let t = 0; t < 2_000 && replicas > 0; t += 100)
      replicas = smooth.observe(t, 0, replicas) ?? replicas;
    assert.equal(replicas, 0);
  });

  test("autoscaling - replicas follow load up, then back down, within the configured delays", async () => {
    await using server = await serve(
      app.withOptions({
        fragile: {
          maxOngoingRequests: 2,
          maxQueuedRequests: 100,
          autoscaling: {
            minReplicas: 1,
            maxReplicas: 3,
            targetOngoingRequests: 2,
            upscaleDelay: "300ms",
            downscaleDelay: "800ms",
            lookBackPeriod: "300ms",
          },
        },
      }),
    );
    assert.deepEqual(await replicasOf(server), { target: 1, running: 1 });
    const fragile = server.getHandle<Fragile>("fragile");
    const loadStart = Date.now();
    let firstDone = 0;
    const load = Array.from({ length: 6 }, () =>
      fragile.sleep(4_000).then((result) => {
        firstDone ||= Date.now();
        return result;
      }),
    );
    let scalingMessage = "";
    const upAfter = await when(
      async () => {
        const d = (await server.status()).applications.faulty!.deployments.fragile!;
        scalingMessage = d.message;
        return d.targetReplicas === 3;
      },
      loadStart,
      10_000,
      "target 3",
    );
    // While the new replicas start.
    assert.match(scalingMessage, /Autoscaling from [12] to 3 replicas \(load [\d.]+\)/);
    assert.ok(upAfter >= 300, `scaled up after ${upAfter} ms, before the 300 ms upscale delay`);
    await when(
      async () => (await replicasOf(server)).running === 3,
      loadStart,
      20_000,
      "3 running replicas",
    );
    assert.deepEqual(await Promise.all(load), Array(6).fill("slept"));
    // The load starts falling when the first request finishes: the downscale delay counts from there.
    const downAfter = await when(
      async () => (await replicasOf(server)).target < 3,
      firstDone,
      15_000,
      "scaling down",
    );
    assert.ok(
      downAfter >= 800,
      `scaled down ${downAfter} ms after the load fell, before the 800 ms downscale delay`,
    );
    await when(
      async () => (await replicasOf(server)).running === 1,
      firstDone,
      15_000,
      "back to 1 replica",
    );
    // Done: what was under way is said no more (as Ray Serve clears it once HEALTHY).
    await when(
      async () => {
        const d = (await server.status()).applications.faulty!.deployments.fragile!;
        return d.status === "HEALTHY" && d.message === "";
      },
      firstDone,
      15_000,
      "the scaling message cleared",
    );
  });

  test("autoscaling - minReplicas 0 scales to zero, and the first request waits for a replica", async () => {
    await using server = await serve(fromZero("300ms"));
    assert.deepEqual(await replicasOf(server), { target: 0, running: 0 });
    const ready = (await fetch(`${server.url}/v2/health/ready`)).status;
    assert.equal(ready, 200, "a deployment scaled to zero does not make the server unready");
    assert.equal(await server.handle.call(7), 7, "the request waited for a replica");
    assert.equal((await replicasOf(server)).running, 1);
    await when(
      async () => (await replicasOf(server)).running === 0,
      Date.now(),
      10_000,
      "scaled to zero",
    );
  });

  test("autoscaling - a request waiting in a front-door worker (http.workers: 2) scales a deployment up from zero", async () => {
    await using server = await serve(fromZero("1s"), { http: { workers: 2 } });
    assert.deepEqual(await replicasOf(server), { target: 0, running: 0 });
    // The request waits in a worker's router, which the main process's autoscaler hears of.
    const request = fetch(`${server.url}${app.routePrefix}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "7",
      signal: AbortSignal.timeout(30_000),
    });
    const queuedOf = async (): Promise<number> =>
      (await server.status()).applications.faulty!.deployments.fragile!.queued;
    await when(async () => (await queuedOf()) === 1, Date.now(), 5_000, "the status counts it");
    const response = await request;
    assert.equal(response.status, 200);
    assert.equal(await response.json(), 7);
    assert.equal((await replicasOf(server)).running, 1);
    // The worker says so once its queue drained.
    await when(
      async () => (await queuedOf()) === 0,
      Date.now(),
      5_000,
      "nothing counts as queued once it was served",
    );
    await when(
      async () => (await replicasOf(server)).running === 0,
      Date.now(),
      10_000,
      "scaled to zero",
    );
  });
});
