import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import cluster from "node:cluster";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { serve } from "../serve.js";
import { eventually } from "./eventually.js";
import * as grpc from "@grpc/grpc-js";
import { loadInferenceService } from "tributary/internal";
import { app } from "../fixtures/direct-app.js";
import { app as scaler } from "../fixtures/oip-app.js";
import { app as refusing } from "../fixtures/refusing-app.js";
import { dyingApp } from "../fixtures/faulty-app.js";
import { replacementDelay, MAX_REPLACE_MS } from "../../src/runtime/front-door-pool.js";
// @ts-expect-error: a JavaScript fixture, without types
import { app as plain } from "../fixtures/plain-double.mjs";
import { rpc, type Client } from "../ingress/grpc-client.js";
import { scrape, total } from "../observability/scrape.js";

/** A client in another process: POSTs for `ms` and prints when each answer came. */
const CLIENT = `
const [url, ms] = process.argv.slice(1);
(async () => {
  const done = [];
  let failed = 0;
  for (const end = Date.now() + Number(ms); Date.now() < end; ) {
    const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: "1" });
    await res.arrayBuffer();
    if (res.ok) done.push(Date.now()); else failed++;
    if (done.length + failed === 1) console.log("started");
  }
  console.log(JSON.stringify({ done, failed }));
})();`;

/** POSTs `n` to plain-double, the JavaScript application. */
const postDouble = (url: string, n: number): Promise<Response> =>
  fetch(`${url}/plain-double`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: String(n),
  });

const post = (url: string): Promise<Response> =>
  fetch(`${url}/direct`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "1",
  });

describe("front doors as several worker processes (http.workers)", { timeout: 240_000 }, () => {
  test("workers - two front-door processes share the port and answer while the main thread is blocked; one that dies is replaced", async () => {
    await using server = await serve(app, { http: { workers: 2 } });
    const pool = server.frontDoorPool!;
    assert.equal(pool.pids().length, 2);
    const answers = await Promise.all(Array.from({ length: 20 }, () => post(server.url)));
    assert.deepEqual(new Set(answers.map((r) => r.status)), new Set([200]));

    const client = spawn(process.execPath, ["-e", CLIENT, `${server.url}/direct`, "1500"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let output = "";
    const exited = new Promise<void>((resolve) => client.once("exit", () => resolve()));
    // Blocked once the client has its first answer (before, after 500 ms: a client process
    // slow to start on a busy machine had not sent anything yet, and saw no answer during it).
    await Promise.race([
      new Promise<void>((resolve) =>
        client.stdout.on("data", (data: Buffer) => {
          output += data.toString();
          if (output.includes("started\n")) resolve();
        }),
      ),
      exited,
    ]);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const blockedFrom = Date.now();
    while (Date.now() - blockedFrom < 300) {
      // The main thread (control plane) does nothing else for 300 ms.
    }
    const blockedTo = Date.now();
    await exited;
    const { done, failed } = JSON.parse(output.trim().split("\n").at(-1)!) as {
      done: number[];
      failed: number;
    };
    const during = done.filter((t) => t > blockedFrom + 20 && t < blockedTo - 20);
    assert.equal(failed, 0);
    // Any answer at all shows it: with the main thread on the path there would be none. A
    // few, not ten: the client and workers share 2 vCPUs with the busy loop (6 seen under load).
    assert.ok(
      during.length >= 3,
      `${during.length} HTTP answers while the main thread was blocked`,
    );

    const [victim] = pool.pids();
    process.kill(victim!, "SIGKILL");
    await eventually(
      async () => pool.pids().length === 2 && !pool.pids().includes(victim!),
      20_000,
      "the dead worker is replaced",
    );
    const after = await Promise.all(Array.from({ length: 20 }, () => post(server.url)));
    assert.deepEqual(new Set(after.map((r) => r.status)), new Set([200]));
  });

  test("workers - with gRPC on, every worker serves ModelInfer on one shared port, replacements too", async () => {
    await using server = await serve(scaler, { http: { workers: 2 }, grpc: { port: 0 } });
    const pool = server.frontDoorPool!;
    assert.ok(server.grpcPort! > 0, "the pool reports its gRPC port");
    // A new client is a new HTTP/2 connection, which the kernel gives to a worker.
    const infer = async (): Promise<number[]> => {
      const client = new (loadInferenceService())(
        `127.0.0.1:${server.grpcPort}`,
        grpc.credentials.createInsecure(),
      ) as unknown as Client;
      try {
        const answer = await rpc<{
          outputs: { name: string; contents: { fp32_contents: number[] } }[];
        }>(client, "ModelInfer", {
          model_name: "scaler",
          id: "",
          inputs: [
            { name: "x", datatype: "FP32", shape: [1, 2], contents: { fp32_contents: [2, 4] } },
            { name: "scale", datatype: "FP64", shape: [1], contents: { fp64_contents: [3] } },
          ],
        });
        return answer.outputs.find((o) => o.name === "y")!.contents.fp32_contents;
      } finally {
        client.close();
      }
    };
    assert.deepEqual(await infer(), [6, 12]);
    // Each original worker in turn dies; the one left, then its replacement, answer gRPC.
    for (const victim of pool.pids()) {
      process.kill(victim, "SIGKILL");
      await eventually(
        async () => pool.pids().length === 2 && !pool.pids().includes(victim),
        20_000,
        "the dead worker is replaced",
      );
      for (let i = 0; i < 4; i++) assert.deepEqual(await infer(), [6, 12]);
    }
  });

  test("workers - a JavaScript application (no TypeScript loader in the workers) is served by every worker", async () => {
    await using server = await serve(plain as Parameters<typeof serve>[0], {
      http: { workers: 2 },
    });
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        postDouble(server.url, i).then(async (r) => [r.status, await r.json()] as const),
      ),
    );
    assert.deepEqual(
      answers,
      Array.from({ length: 20 }, (_, i) => [200, i * 2]),
    );
  });

  test("workers - two servers in one process each listen on a port of their own, and one asking for the other's port is refused", async () => {
    await using direct = await serve(app, { http: { workers: 2 } });
    await using doubling = await serve(plain as Parameters<typeof serve>[0], {
      http: { workers: 2 },
    });
    assert.notEqual(direct.url, doubling.url);
    // Each port answers its own server's routes only (a shared socket split them before).
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) => postDouble(doubling.url, i).then((r) => r.status)),
    );
    assert.deepEqual(answers, Array<number>(10).fill(200));
    assert.equal((await post(direct.url)).status, 200);
    const port = Number(new URL(direct.url).port);
    await assert.rejects(
      serve(plain as Parameters<typeof serve>[0], { port, http: { workers: 2 } }),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, "EADDRINUSE");
        assert.match(error.message, new RegExp(`The HTTP port ${port} on 127.0.0.1 is in use`));
        return true;
      },
    );
    assert.equal((await post(direct.url)).status, 200, "the first serves on");
  });

  test("workers - workers that all die at once are replaced on the same port", async () => {
    await using server = await serve(app, { http: { workers: 2 } });
    const pool = server.frontDoorPool!;
    const victims = pool.pids();
    for (const victim of victims) process.kill(victim, "SIGKILL");
    await eventually(
      async () => pool.pids().length === 2 && pool.pids().every((p) => !victims.includes(p)),
      30_000,
      "both are replaced",
    );
    const after = await Promise.all(Array.from({ length: 10 }, () => post(server.url)));
    assert.deepEqual(new Set(after.map((r) => r.status)), new Set([200]));
  });

  test("workers - a replica that dies under a worker's request answers 503 REPLICA_DIED saying why", async () => {
    await using server = await serve(dyingApp, { http: { workers: 2 } });
    const response = await fetch(`${server.url}/dying`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "1",
    });
    const body = (await response.json()) as { error: { code: string; message: string } };
    assert.equal(response.status, 503, JSON.stringify(body));
    assert.equal(body.error.code, "REPLICA_DIED");
    assert.match(body.error.message, /Replica fragile#1 of deployment "fragile" died/);
    assert.match(body.error.message, /\(thread \d+ exited with code 3\)/);
  });

  test("workers - each update asks every worker, and leaves no listener behind on it", async () => {
    await using server = await serve(app, { http: { workers: 2 } });
    const workers = () => Object.values(cluster.workers ?? {}).filter((w) => w !== undefined);
    const before = Math.max(...workers().map((w) => w.listenerCount("exit")));
    for (let i = 1; i <= 12; i++)
      await server.update(server.app.withOptions({ leaf: { maxQueuedRequests: 100 + i } }));
    assert.equal(workers().length, 2);
    // Before, every update added one to each worker (Node warned past 10).
    assert.equal(Math.max(...workers().map((w) => w.listenerCount("exit"))), before);
    assert.equal((await post(server.url)).status, 200);
  });

  test("workers - a worker told to stop with SIGTERM answers its requests in flight, then is replaced", async () => {
    await using server = await serve(refusing, { http: { workers: 2 } });
    const pool = server.frontDoorPool!;
    const [victim] = pool.pids();
    // Forty connections, so both workers hold some of the calls (each 1.5 s).
    const answers = Array.from({ length: 40 }, () =>
      fetch(`${server.url}/refusing`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "1500",
      }).then(
        async (r) => `${r.status} ${await r.text()}`,
        (error: Error) => `failed: ${String((error.cause as Error | undefined)?.message ?? error)}`,
      ),
    );
    await new Promise((resolve) => setTimeout(resolve, 500));
    process.kill(victim!, "SIGTERM");
    assert.deepEqual(await Promise.all(answers), Array<string>(40).fill("200 1500"));
    await eventually(
      async () => pool.pids().length === 2 && !pool.pids().includes(victim!),
      20_000,
      "the drained worker is replaced",
    );
    // Its requests stay counted: it sends its series as it exits (nothing scraped it before).
    const { samples } = await scrape(server.url);
    const counted = total(samples, "tributary_http_requests_total", {
      application: "refusing",
      code: "200",
    });
    assert.equal(counted, 40);
  });

  for (const how of ["throws", "exits"] as const)
    test(`workers - a replacement that cannot start (its module ${how}) is logged and tried again, each time after a longer wait, until one starts`, async () => {
      assert.deepEqual([0, 1, 2, 3, 20, 1000].map(replacementDelay), [
        100,
        200,
        400,
        800,
        MAX_REPLACE_MS,
        MAX_REPLACE_MS,
      ]);
      const folder = await mkdtemp(join(tmpdir(), "tributary-refuse-"));
      const marker = join(folder, "refuse");
      const lines: { msg?: string; retryInMs?: number; err?: { message?: string } }[] = [];
      process.env.TRIBUTARY_REFUSE_IMPORT = marker; // forked workers inherit it
      let forks = 0;
      const onFork = (): void => void forks++;
      cluster.on("fork", onFork);
      try {
        await using server = await serve(refusing, {
          http: { workers: 2 },
          logLevel: "error",
          logStream: { write: (line) => void lines.push(JSON.parse(line) as (typeof lines)[0]) },
        });
        const pool = server.frontDoorPool!;
        const [victim, survivor] = pool.pids();
        await writeFile(marker, how === "exits" ? "exit" : "");
        // (One that dies within a second of listening would count as a failed start too.)
        await new Promise((resolve) => setTimeout(resolve, 1_100));
        process.kill(victim!, "SIGKILL");
        await eventually(async () => lines.length >= 3, 20_000, "three failed starts are logged");
        const failed = lines.slice(0, 3);
        assert.match(failed[0]!.msg!, /failed to start; 1 of 2 serve until one does/);
        assert.match(
          failed[0]!.err!.message!,
          how === "exits" ? /exited before it listened \(code 1\)/ : /refuses to load/,
        );
        assert.deepEqual(
          failed.map((line) => line.retryInMs),
          [200, 400, 800],
        );
        // The other worker serves meanwhile.
        assert.deepEqual(pool.pids(), [survivor]);
        const answer = await fetch(`${server.url}/refusing`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: "1",
        });
        assert.equal(answer.status, 200);
        await rm(marker);
        await eventually(async () => pool.pids().length === 2, 20_000, "a replacement starts");
        // 2 at the start, 1 per failed start, and the one that started: no fork in a loop.
        assert.ok(
          forks <= 2 + lines.length + 1,
          `${forks} forks for ${lines.length} failed starts`,
        );
      } finally {
        cluster.off("fork", onFork);
        delete process.env.TRIBUTARY_REFUSE_IMPORT;
        await rm(folder, { recursive: true, force: true });
      }
    });

  test("workers - a bad count is refused with INVALID_OPTIONS", async () => {
    await assert.rejects(serve(app, { http: { workers: 0 } }), /http\.workers: .*>=1 \(it is 0\)/);
    // What serve.yaml nests under http is an option of run() itself: not silently ignored.
    await assert.rejects(
      serve(app, { http: { requestTimeout: "1s" } as never }),
      /http option takes only workers \(it was given requestTimeout\)/,
    );
  });
});
