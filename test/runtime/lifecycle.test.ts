import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import v8 from "node:v8";
import vm from "node:vm";
import { after, before, describe, test } from "node:test";
import { BackPressureError, CancelledError, ReplicaDiedError, TimeoutError } from "tributary";
import { STREAM_WINDOW } from "../../src/wire/protocol.js";
import { serve } from "../serve.js";
import { app, type Fragile } from "../fixtures/faulty-app.js";
import { app as relayApp } from "../fixtures/relay-app.js";
import { eventually } from "./eventually.js";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "tributary-lifecycle-"));
});
after(() => rm(dir, { recursive: true, force: true }));

describe("router limits, timeouts and lifecycle", { timeout: 120_000 }, () => {
  test("router - a flood past maxOngoingRequests + maxQueuedRequests sheds the excess with BackPressureError", async () => {
    await using server = await serve(
      app.withOptions({ fragile: { maxOngoingRequests: 2, maxQueuedRequests: 3 } }),
    );
    const fragile = server.getHandle<Fragile>("fragile");
    const flood = Array.from({ length: 10 }, () => fragile.sleep(1_000));
    const during = async () => (await server.status()).applications.faulty!.deployments.fragile!;
    await eventually(
      async () => (await during()).ongoing === 2 && (await during()).queued === 3,
      5_000,
      "2 requests run and 3 wait",
    );
    // Still at most maxOngoingRequests on the replica a moment later.
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal((await during()).ongoing, 2, "at most maxOngoingRequests run on the replica");
    const results = await Promise.allSettled(flood);
    const answered = results.filter((r) => r.status === "fulfilled").map((r) => r.value);
    const shed = results.filter((r) => r.status === "rejected").map((r) => r.reason as unknown);
    assert.deepEqual(answered, ["slept", "slept", "slept", "slept", "slept"]);
    assert.equal(shed.length, 5);
    for (const error of shed) {
      assert.ok(error instanceof BackPressureError);
      assert.equal(error.code, "BACK_PRESSURE");
      assert.match(
        error.message,
        /Deployment "fragile" is overloaded: 2 requests running and 3 queued/,
      );
    }
  });

  test("router - a timed-out or cancelled request frees its slot and the replica's signal fires", async () => {
    await using server = await serve(
      app.withOptions({ fragile: { maxOngoingRequests: 1, maxQueuedRequests: 10 } }),
    );
    const fragile = server.getHandle<Fragile>("fragile");
    const impatient = server.getHandle<Fragile>("fragile", { timeout: "100ms" });
    const started = Date.now();
    await assert.rejects(
      impatient.sleep(30_000),
      (error: unknown) => error instanceof TimeoutError && error.code === "TIMEOUT",
    );
    // The only slot is free again: this call does not wait behind the abandoned one.
    assert.equal(await fragile.echo(1), 1);
    assert.ok(Date.now() - started < 5_000);
    const controller = new AbortController();
    const cancelled = server
      .getHandle<Fragile>("fragile", { signal: controller.signal })
      .sleep(30_000);
    const fragileStatus = async () =>
      (await server.status()).applications.faulty!.deployments.fragile!;
    await eventually(async () => (await fragileStatus()).ongoing === 1, 5_000, "the call runs");
    controller.abort();
    await assert.rejects(cancelled, CancelledError);
    assert.equal(await fragile.abortedCount(), 2, "user code saw both signals");
    // A queued request that times out leaves the queue.
    const blocker = fragile.sleep(300);
    await assert.rejects(impatient.echo(2), TimeoutError);
    assert.equal(await blocker, "slept");
    assert.equal((await server.status()).applications.faulty!.deployments.fragile!.queued, 0);
  });

  for (const isolation of ["thread", "process"] as const) {
    test(`router - a timed-out call whose code goes on keeps its replica slot until that code ends: never more than maxOngoingRequests run (${isolation})`, async () => {
      await using server = await serve(
        app.withOptions({ fragile: { maxOngoingRequests: 1, maxQueuedRequests: 10, isolation } }),
      );
      const fragile = server.getHandle<Fragile>("fragile");
      const impatient = server.getHandle<Fragile>("fragile", { timeout: "100ms" });
      await fragile.echo(1); // started
      const started = Date.now();
      await assert.rejects(impatient.stubborn(800), TimeoutError);
      // The caller's router freed its slot; the replica still runs the first call's code.
      const next = await fragile.stubborn(0);
      assert.equal(next.most, 1, "the replica ran one call at a time");
      assert.ok(Date.now() - started >= 700, "the next call waited for the first one's code");
      // What the cancelled call's code was told: which call, and why.
      assert.deepEqual(await fragile.lastReason(), {
        name: "TimeoutError",
        code: "TIMEOUT",
        message: "fragile.stubborn() timed out.",
      });
    });
  }

  for (const isolation of ["thread", "process"] as const) {
    test(`stream - a consumer that stops reading holds up the producer (credit for ${STREAM_WINDOW} items), and then gets every item (${isolation})`, async () => {
      await using server = await serve(app.withOptions({ fragile: { isolation } }));
      const fragile = server.getHandle<Fragile>("fragile");
      const total = 5_000;
      const items = fragile.flood(total)[Symbol.asyncIterator]();
      assert.deepEqual(await items.next(), { value: 0, done: false });
      await new Promise((resolve) => setTimeout(resolve, 300));
      const made = await fragile.produced();
      assert.ok(made <= STREAM_WINDOW + 1, `${made} items made while the consumer read one`);
      let expected = 1;
      for (let next = await items.next(); !next.done; next = await items.next())
        assert.equal(next.value, expected++);
      assert.equal(expected, total, "every item, in order");
    });
  }

  test("stream - a result whose iterator cannot be made fails its call, not the replica", async () => {
    await using server = await serve(app);
    const fragile = server.getHandle<Fragile>("fragile");
    const before = (await fragile.info()).replica;
    await assert.rejects(async () => {
      for await (const item of fragile.badStream()) assert.fail(`got ${item}`);
    }, /no iterator/);
    assert.equal((await fragile.info()).replica, before, "the same replica still serves");
  });

  test("router - cancelling a request cancels the handle calls it made, down the graph", async () => {
    await using server = await serve(relayApp);
    await assert.rejects(server.handle.call(30_000, { timeout: "150ms" }), TimeoutError);
    const fragile = server.getHandle<Fragile>("fragile");
    await eventually(
      async () => (await fragile.abortedCount()) === 1,
      5_000,
      "the nested call is cancelled",
    );
    // A replica reports its load at most every 20 ms: the slot shows free by the next report.
    await eventually(
      async () => (await server.status()).applications.relay!.deployments.fragile!.ongoing === 0,
      5_000,
      "its slot is free",
    );
  });

  test("reconfigure - userConfig reaches reconfigure() at start and on change, without a restart", async () => {
    await using server = await serve(
      app.withOptions({ fragile: { userConfig: { version: 1 }, numReplicas: 2 } }),
    );
    const fragile = server.getHandle<Fragile>("fragile");
    const first = await Promise.all([
      fragile.info(),
      fragile.info(),
      fragile.info(),
      fragile.info(),
    ]);
    for (const info of first)
      assert.deepEqual([info.configured, info.reconfigures], [{ version: 1 }, 1]);
    await server.reconfigure("fragile", { version: 2 });
    const second = await Promise.all(Array.from({ length: 8 }, () => fragile.info()));
    const replicas = new Map(second.map((info) => [info.replica, info]));
    assert.equal(replicas.size, 2);
    for (const info of replicas.values()) {
      assert.deepEqual([info.configured, info.reconfigures], [{ version: 2 }, 2]);
      assert.equal(
        info.bornAt,
        first.find((f) => f.replica === info.replica)?.bornAt ?? info.bornAt,
        "same instance",
      );
    }
    assert.deepEqual(
      [...replicas.keys()].sort(),
      ["fragile#1", "fragile#2"],
      "no replica was replaced",
    );
    assert.deepEqual(server.app.deployments.fragile?.userConfig, { version: 2 });
    // A config reconfigure() refuses is rolled back: the replicas keep version 2, and so do
    // the replicas that start later (it used to be what they started with, and failed).
    await assert.rejects(server.reconfigure("fragile", { refuse: true }), /this config is refused/);
    assert.deepEqual(server.app.deployments.fragile?.userConfig, { version: 2 });
    const message = async () =>
      (await server.status()).applications.faulty!.deployments.fragile!.message;
    assert.match(await message(), /rolled back/);
    await server.update(server.app.withOptions({ fragile: { numReplicas: 3 } }));
    await eventually(
      async () =>
        (await server.status()).applications.faulty!.deployments.fragile!.replicas.filter(
          (r) => r.state === "RUNNING",
        ).length === 3,
      15_000,
      "a third replica runs",
    );
    // The rollback is said no more once a change has gone through.
    assert.doesNotMatch(await message(), /rolled back/);
    const third = await Promise.all(Array.from({ length: 12 }, () => fragile.info()));
    assert.equal(new Set(third.map((info) => info.replica)).size, 3);
    for (const info of third) assert.deepEqual(info.configured, { version: 2 }, info.replica);
    // Back to the code's config: every replica gets it.
    await server.update(server.app.withOptions({ fragile: { userConfig: { version: 1 } } }));
    for (const info of await Promise.all(Array.from({ length: 12 }, () => fragile.info())))
      assert.deepEqual(info.configured, { version: 1 }, info.replica);
  });

  for (const isolation of ["thread", "process"] as const) {
    test(`shutdown - close() drains in-flight requests, then runs close() in the ${isolation} replica`, async () => {
      const marker = join(dir, `closed-${isolation}`);
      const server = await serve(
        app.withOptions({ fragile: { isolation, userConfig: { marker } } }),
      );
      const fragile = server.getHandle<Fragile>("fragile");
      const inFlight = [fragile.sleep(300), fragile.sleep(300), fragile.sleep(300)];
      await eventually(
        async () => (await server.status()).applications.faulty!.deployments.fragile!.ongoing === 3,
        5_000,
        "the three requests run",
      );
      await server.close();
      assert.deepEqual(await Promise.all(inFlight), ["slept", "slept", "slept"]);
      assert.match(await readFile(marker, "utf8"), /^closed by \d+$/);
    });
  }

  test("shutdown - requests still queued when the drain times out are answered, not left hanging", async () => {
    const server = await serve(
      app.withOptions({
        fragile: { maxOngoingRequests: 1, maxQueuedRequests: 5, gracefulShutdownTimeout: "200ms" },
      }),
    );
    const fragile = server.getHandle<Fragile>("fragile");
    const running = fragile.sleep(60_000);
    const queued = fragile.echo(1);
    await eventually(
      async () => {
        const d = (await server.status()).applications.faulty!.deployments.fragile!;
        return d.ongoing === 1 && d.queued === 1;
      },
      5_000,
      "one request runs and one waits",
    );
    await server.close();
    const settled = await Promise.race([
      Promise.allSettled([running, queued]),
      new Promise((resolve) => setTimeout(() => resolve("hung"), 5_000)),
    ]);
    assert.notEqual(settled, "hung");
    const [first, second] = settled as PromiseSettledResult<unknown>[];
    assert.ok(first?.status === "rejected" && first.reason instanceof ReplicaDiedError);
    assert.ok(
      second?.status === "rejected" && (second.reason as Error).name === "ServerClosedError",
    );
  });

  test("router - a timeout or abort still ends a stream after it started", async () => {
    await using server = await serve(app);
    const endless = server.getHandle<Fragile>("fragile", { timeout: "300ms" }).ticks();
    const items: number[] = [];
    await assert.rejects(async () => {
      for await (const item of endless) items.push(item);
    }, TimeoutError);
    assert.ok(items.length > 0, "the stream had started");
    assert.equal(
      await server.getHandle<Fragile>("fragile").echo(3),
      3,
      "the replica is free again",
    );
  });

  test("router - a stream its caller drops unread is stopped once collected, and frees its replica's slot", async () => {
    v8.setFlagsFromString("--expose-gc");
    const gc = vm.runInNewContext("gc") as () => void;
    await using server = await serve(app.withOptions({ fragile: { maxOngoingRequests: 2 } }));
    const fragile = server.getHandle<Fragile>("fragile");
    // Two endless streams, one awaited (the caller held its reader), one not: both dropped.
    await (async () => {
      // (Typed as a stream; at run time a response is thenable too, awaited to its reader.)
      const reader: unknown = await Promise.resolve(fragile.ticks());
      void reader;
      void fragile.ticks();
    })();
    await eventually(
      async () => (await server.status()).applications.faulty!.deployments.fragile!.ongoing === 2,
      5_000,
      "both streams hold a slot",
    );
    await eventually(
      async () => {
        gc();
        await new Promise((resolve) => setTimeout(resolve, 50));
        return (await server.status()).applications.faulty!.deployments.fragile!.ongoing === 0;
      },
      10_000,
      "the dropped streams are stopped",
    );
    const bounded = server.getHandle<Fragile>("fragile", { timeout: "2s" });
    assert.equal(await bounded.echo(3), 3, "the replica is free again");
  });

  test("ingress - a request waiting at the ingress gate honours its timeout", async () => {
    await using server = await serve(
      relayApp.withOptions({ ingress: { maxOngoingRequests: 1, maxQueuedRequests: 5 } }),
    );
    const holder = server.handle.call(1_500); // holds the only ingress slot for 1.5 s
    await eventually(
      async () => (await server.status()).applications.relay!.deployments.fragile!.ongoing === 1,
      5_000,
      "the holder has reached the replica",
    );
    const started = Date.now();
    await assert.rejects(server.handle.call(10, { timeout: "100ms" }), TimeoutError);
    assert.ok(Date.now() - started < 1_000, "it did not wait for the slot");
    assert.equal(await holder, "slept");
    assert.equal(await server.handle.call(10), "slept", "the gate was not leaked");
  });

  test("shutdown - requests still running after gracefulShutdownTimeout are cut off", async () => {
    const server = await serve(app.withOptions({ fragile: { gracefulShutdownTimeout: "200ms" } }));
    const stuck = server.getHandle<Fragile>("fragile").sleep(60_000);
    await eventually(
      async () => (await server.status()).applications.faulty!.deployments.fragile!.ongoing === 1,
      5_000,
      "the request runs",
    );
    const started = Date.now();
    await server.close();
    assert.ok(Date.now() - started < 5_000, "close() is bounded");
    await assert.rejects(stuck, ReplicaDiedError);
  });
});
