import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import {
  DeployFailedError,
  GraphBuildError,
  GraphExecutionError,
  ReplicaDiedError,
} from "tributary";
import { serve } from "../serve.js";
import {
  app as brokenApp,
  FLAKY_MARKER,
  flakyApp,
  ONE_DEVICE_MARKER,
  oneDeviceApp,
} from "../fixtures/broken-app.js";
import { app as faultyApp, type Fragile } from "../fixtures/faulty-app.js";
import { makeApp } from "../fixtures/nested-app.js";
import { app as relayApp, type Relay } from "../fixtures/relay-app.js";
import { eventually } from "./eventually.js";

const crashes = [
  ["thread", "exit", /exited with code 3/],
  ["thread", "throwLater", /uncaught Error: uncaught in a timer/],
  ["process", "exit", /exited with code 3/],
  ["process", "segfault", /killed by SIGSEGV/],
] as const;

describe("replica failures", { timeout: 240_000 }, () => {
  for (const [isolation, method, reason] of crashes) {
    test(`crash - a ${isolation} replica that dies in ${method}() fails its in-flight requests with ReplicaDiedError and is replaced`, async () => {
      type Line = { level: number; deployment?: string; replica?: string; msg: string };
      const lines: Line[] = [];
      await using server = await serve(
        faultyApp.withOptions({ fragile: { isolation, numReplicas: 1 } }),
        {
          logLevel: "error",
          logStream: { write: (line: string) => void lines.push(JSON.parse(line) as Line) },
        },
      );
      const fragile = server.getHandle<Fragile>("fragile");
      const before = await fragile.info();
      const inFlight = [fragile[method](), fragile.sleep(5_000), fragile.sleep(5_000)];
      const results = await Promise.allSettled(inFlight);
      for (const result of results) {
        assert.equal(result.status, "rejected");
        const error = result.reason as ReplicaDiedError;
        assert.ok(error instanceof ReplicaDiedError, String(error));
        assert.equal(error.code, "REPLICA_DIED");
        assert.equal(error.replica, "fragile#1");
        assert.match(error.message, reason);
      }
      // Later requests wait for the replacement instead of failing.
      const after = await fragile.info();
      assert.equal(after.replica, "fragile#2");
      assert.notEqual(after.bornAt, before.bornAt);
      assert.equal(await fragile.echo(7), 7);
      const status = (await server.status()).applications.faulty!.deployments.fragile!;
      assert.match(status.message, /Replica fragile#1 died/);
      assert.match(status.message, reason);
      // The log says so too (before, only the status did).
      const died = lines.find((l) => l.replica === "fragile#1" && /died/.test(l.msg));
      assert.ok(died, JSON.stringify(lines));
      assert.equal(died.level, 50);
      assert.equal(died.deployment, "fragile");
      assert.match(died.msg, reason);
      // What the code logged just before process.exit is not lost with it.
      if (method === "exit")
        assert.ok(
          lines.some((l) => l.replica === "fragile#1" && l.msg === "fragile is exiting"),
          JSON.stringify(lines),
        );
      await eventually(
        async () =>
          (await server.status()).applications.faulty!.deployments.fragile!.status === "HEALTHY",
        5_000,
        "healthy again",
      );
    });
  }

  // A replica calls the one that dies: its router learns of it from its own channel
  // closing, and the control plane's membership says why.
  const relayed = [
    ["thread", "thread", "exit", /\(thread \d+ exited with code 3\)/],
    ["thread", "process", "segfault", /\(pid \d+ killed by SIGSEGV\)/],
    ["process", "thread", "throwLater", /\(thread \d+ uncaught Error: uncaught in a timer\)/],
  ] as const;
  for (const [caller, callee, how, reason] of relayed) {
    test(`crash - a ${caller} replica calling a ${callee} replica that dies in ${how}() gets ReplicaDiedError naming why`, async () => {
      await using server = await serve(
        relayApp.withOptions({ Relay: { isolation: caller }, fragile: { isolation: callee } }),
      );
      const start = Date.now();
      const error = await server.getHandle<Relay>("Relay").outlive(how);
      assert.equal(error.name, "ReplicaDiedError", error.message);
      assert.equal(error.code, "REPLICA_DIED");
      assert.match(error.message, /Replica fragile#1 of deployment "fragile" died/);
      assert.match(error.message, reason);
      // Told, not given up on after the wait for why.
      assert.ok(Date.now() - start < 900, `${Date.now() - start} ms`);
    });
  }

  for (const isolation of ["thread", "process"] as const) {
    test(`crash - a ${isolation} replica that ends itself right after a stream item sends that item to the replica reading it first`, async () => {
      await using server = await serve(
        relayApp.withOptions({ Relay: { isolation }, fragile: { isolation } }),
      );
      const read = await server.getHandle<Relay>("Relay").readUntilDeath(3);
      assert.deepEqual(read, { items: [0, 1, 2], code: "REPLICA_DIED" });
    });
  }

  for (const isolation of ["thread", "process"] as const) {
    test(`crash - a ${isolation} replica's Unix socket file goes when it dies and when the server closes`, async () => {
      // The replicas (this process's worker threads, and child processes) make their sockets
      // in the temporary folder they start with: a folder of this test's own.
      const dir = await mkdtemp(join(tmpdir(), "tributary-sockets-"));
      const before = process.env.TMPDIR;
      process.env.TMPDIR = dir;
      const sockets = async (): Promise<string[]> =>
        (await readdir(dir)).filter((name) => name.endsWith(".sock"));
      try {
        {
          await using server = await serve(
            faultyApp.withOptions({ fragile: { isolation, numReplicas: 1 } }),
          );
          const fragile = server.getHandle<Fragile>("fragile");
          assert.equal(await fragile.echo(1), 1);
          const first = await sockets();
          assert.equal(first.length, 1, `sockets: ${first.join(", ")}`);
          // A process killed by a signal runs no exit handler of its own.
          const die = isolation === "process" ? fragile.segfault() : fragile.exit();
          await assert.rejects(die, ReplicaDiedError);
          assert.equal(await fragile.echo(2), 2); // the replacement runs
          await eventually(
            async () => {
              const now = await sockets();
              return now.length === 1 && now[0] !== first[0];
            },
            5_000,
            "only the replacement's socket is left",
          );
        }
        assert.deepEqual(await sockets(), [], "no socket is left once the server has closed");
      } finally {
        if (before === undefined) delete process.env.TMPDIR;
        else process.env.TMPDIR = before;
        await rm(dir, { recursive: true, force: true });
      }
    });
  }

  test("health - a replica whose checkHealth hangs is replaced, and the status says why", async () => {
    await using server = await serve(
      faultyApp.withOptions({
        fragile: { healthCheckPeriod: "50ms", healthCheckTimeout: "200ms" },
      }),
    );
    const fragile = server.getHandle<Fragile>("fragile");
    assert.equal((await fragile.info()).replica, "fragile#1");
    const stuck = fragile.sleep(10_000);
    await fragile.becomeSick();
    await assert.rejects(
      stuck,
      (error: unknown) =>
        error instanceof ReplicaDiedError && /failed its health check/.test(error.message),
    );
    await eventually(
      async () => (await fragile.info()).replica === "fragile#2",
      10_000,
      "the replacement serves",
    );
    const status = (await server.status()).applications.faulty!.deployments.fragile!;
    assert.match(
      status.message,
      /fragile#1 failed its health check 3 times in a row: health of replica fragile#1 timed out after 200 ms/,
    );
  });

  test("health - a replica that fails fewer than 3 checks in a row is kept (as Ray Serve's threshold)", async () => {
    await using server = await serve(
      faultyApp.withOptions({
        fragile: { healthCheckPeriod: "30ms", healthCheckTimeout: "1s" },
      }),
    );
    const fragile = server.getHandle<Fragile>("fragile");
    assert.equal((await fragile.info()).replica, "fragile#1");
    // Twice: the count starts again after a check that passes.
    for (let round = 0; round < 2; round++) {
      await fragile.failHealthChecks(2);
      await eventually(
        async () => {
          const { toFail, passed } = await fragile.healthChecks();
          return toFail === 0 && passed > 0;
        },
        10_000,
        "two checks failed, then one passed",
      );
    }
    assert.equal((await fragile.info()).replica, "fragile#1", "not replaced");
    const status = (await server.status()).applications.faulty!.deployments.fragile!;
    assert.equal(status.replicas.length, 1);
    assert.doesNotMatch(status.message, /failed/);
    await fragile.failHealthChecks(3);
    await eventually(
      async () => {
        // A call in flight on fragile#1 when the third check fails is failed with it (in CI,
        // this loop's info() once was): it says why, and the loop asks again.
        const info = await fragile.info().catch((error: unknown) => {
          if (error instanceof ReplicaDiedError && /3 times in a row/.test(error.message))
            return undefined;
          throw error;
        });
        return info?.replica === "fragile#2";
      },
      10_000,
      "replaced after 3 in a row",
    );
    // Once whole again, the message keeps why, and says the replica was replaced.
    await eventually(
      async () =>
        /fragile#1 failed its health check 3 times in a row: .*a passing fault \(0 more\); replaced\.$/.test(
          (await server.status()).applications.faulty!.deployments.fragile!.message,
        ),
      10_000,
      "the status says the replica was replaced",
    );
  });

  test("errors - a throwing method rejects with GraphExecutionError whose cause is the original error", async () => {
    await using server = await serve(faultyApp.withOptions({ fragile: { isolation: "process" } }));
    const fragile = server.getHandle<{ fail(message: string): Promise<number> }>("fragile");
    const error = await fragile.fail("bad weights").catch((e: unknown) => e);
    assert.ok(error instanceof GraphExecutionError);
    assert.equal(error.deployment, "fragile");
    assert.equal(error.method, "fail()");
    assert.ok(error.cause instanceof RangeError);
    assert.equal(error.cause.message, "bad weights");
    assert.match(error.cause.stack ?? "", /faulty-app\.ts/);
  });

  test("errors - a result that cannot be sent back fails that call only; the replica lives on", async () => {
    await using server = await serve(faultyApp);
    const fragile = server.getHandle<Fragile>("fragile");
    const error = await fragile.unsendable().catch((e: unknown) => e);
    assert.ok(error instanceof GraphExecutionError, String(error));
    assert.match((error.cause as Error).message, /the result could not be sent back to the caller/);
    assert.equal((await fragile.info()).replica, "fragile#1");
  });

  test("deploy - a constructor that throws gives DEPLOY_FAILED with its message, and run() rejects", async () => {
    const started = Date.now();
    const error = await serve(brokenApp).catch((e: unknown) => e);
    assert.ok(error instanceof DeployFailedError, String(error));
    assert.equal(error.code, "DEPLOY_FAILED");
    assert.match(
      error.message,
      /Deployment "NeedsWeights" failed to deploy: .*weights not found at \/models\/missing\.onnx/,
    );
    assert.equal(error.status?.status, "DEPLOY_FAILED");
    const deployment = error.status?.deployments.NeedsWeights;
    assert.equal(deployment?.status, "DEPLOY_FAILED");
    // Tried three times, with backoff, as the README's limits say.
    assert.match(
      deployment?.message ?? "",
      /NeedsWeights#3 failed to start \(failure 3 of at most 3\): .*weights not found/,
    );
    assert.ok(Date.now() - started < 30_000, "it fails fast instead of hanging");
  });

  test("deploy - one replica of two that keeps failing to start fails the start once its attempts are spent", async () => {
    rmSync(ONE_DEVICE_MARKER, { force: true });
    try {
      const started = Date.now();
      const error = await serve(oneDeviceApp).catch((e: unknown) => e);
      assert.ok(error instanceof DeployFailedError, String(error));
      // Three attempts for each of the two replicas it wants, as Ray Serve counts them.
      assert.match(error.message, /failure 6 of at most 6\): the device is taken/);
      assert.ok(Date.now() - started < 30_000);
    } finally {
      rmSync(ONE_DEVICE_MARKER, { force: true });
    }
  });

  test("deploy - a constructor that fails once is tried again, and the application starts", async () => {
    rmSync(FLAKY_MARKER, { force: true });
    try {
      await using server = await serve(flakyApp);
      assert.equal(await server.handle.call(1), 2);
      const replicas = (await server.status()).applications.flaky!.deployments.Flaky!.replicas;
      assert.deepEqual(
        replicas.map((r) => [r.id, r.state]),
        [["Flaky#2", "RUNNING"]],
      );
    } finally {
      rmSync(FLAKY_MARKER, { force: true });
    }
  });

  test("deploy - a graph built inside a function is refused with what to do", async () => {
    await assert.rejects(
      serve(makeApp()),
      (error: unknown) =>
        error instanceof GraphBuildError &&
        /built inside a function \(makeApp, at .*nested-app\.ts:\d+:\d+\)/.test(error.message) &&
        /build the graph at the module's top level/.test(error.message),
    );
  });
});
