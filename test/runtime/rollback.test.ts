import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { DeployFailedError } from "tributary";
import { app as countedApp, type Counted } from "../fixtures/health-count-app.js";
import { app as shyApp, type Shy } from "../fixtures/shy-app.js";
import { app, type Sleeper } from "../fixtures/sleepy-app.js";
import { serve } from "../serve.js";
import { eventually } from "./eventually.js";

/** Runs `body` with TRIBUTARY_TEST_SHY_MARKER naming a marker file in a fresh directory. */
async function withShyMarker(body: (marker: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "tributary-shy-"));
  const marker = join(dir, "one-started");
  process.env.TRIBUTARY_TEST_SHY_MARKER = marker;
  try {
    await body(marker);
  } finally {
    delete process.env.TRIBUTARY_TEST_SHY_MARKER;
    await rm(dir, { recursive: true, force: true });
  }
}

test(
  "update - a failed update is rolled back whole: what runs and what the controller believes are the old version",
  { timeout: 90_000 },
  async () => {
    await using server = await serve(app.withOptions({ sleeper: { numReplicas: 2 } }));
    const status = async () => (await server.status()).applications.sleepy!.deployments.sleeper!;
    await assert.rejects(
      server.update(
        server.app.withOptions({
          sleeper: { numReplicas: 3, maxOngoingRequests: 1, userConfig: { fail: true } },
        }),
      ),
      (error: unknown) =>
        error instanceof DeployFailedError && /this userConfig is refused/.test(error.message),
    );
    assert.equal(server.app.deployments.sleeper!.maxOngoingRequests, 2);
    assert.equal((await status()).replicas.length, 2);

    // The router limit is the old one: 2 replicas × 2 slots run at once, not 2 × 1.
    const sleeper = server.getHandle<Sleeper>("sleeper");
    const naps = Array.from({ length: 8 }, () => sleeper.nap({ ms: 1_500 }));
    await eventually(async () => (await status()).ongoing === 4, 5_000, "4 requests run at once");
    assert.equal((await status()).queued, 4);
    await Promise.all(naps);

    // The controller believes the old version too: numReplicas 3 is a change again.
    assert.deepEqual(await server.update(server.app.withOptions({ sleeper: { numReplicas: 3 } })), {
      sleeper: ["scale"],
    });
    await eventually(
      async () => (await status()).replicas.filter((r) => r.state === "RUNNING").length === 3,
      20_000,
      "3 replicas run",
    );
  },
);

test(
  "update - a rolling restart that fails halfway puts the replicas it had replaced back",
  { timeout: 90_000 },
  async () => {
    await withShyMarker(async () => {
      await using server = await serve(shyApp);
      const status = async () => (await server.status()).applications.shy!.deployments.shy!;
      await assert.rejects(
        server.update(server.app.withOptions({ shy: { isolation: "process" } })),
        (error: unknown) =>
          error instanceof DeployFailedError &&
          /only one process replica may start/.test(error.message),
      );
      await eventually(
        async () => {
          const replicas = (await status()).replicas;
          return (
            replicas.length === 2 &&
            replicas.every((r) => r.state === "RUNNING" && r.isolation === "thread")
          );
        },
        20_000,
        "two thread replicas run again",
      );
      // The restart had got halfway (one process replica ran) before the rollback: the
      // replica it had replaced is a new thread replica now, not the old one kept.
      const ids = (await status()).replicas.map((r) => Number(r.id.split("#")[1]));
      assert.ok(
        ids.some((n) => n > 4),
        `replicas ${ids.join(", ")}`,
      );
      assert.equal(server.app.deployments.shy!.isolation, "thread");
      const shy = server.getHandle<Shy>("shy");
      const answers = await Promise.all(Array.from({ length: 6 }, () => shy.where()));
      assert.deepEqual(answers, Array(6).fill("thread"));
    });
  },
);

test(
  "update - a failed restart's rollback keeps the old replicas, also those given a userConfig since they started",
  { timeout: 90_000 },
  async () => {
    await withShyMarker(async (marker) => {
      // The marker is there already: no process replica may start at all.
      await writeFile(marker, "");
      await using server = await serve(shyApp);
      const ids = async () =>
        (await server.status()).applications.shy!.deployments.shy!.replicas.map((r) => r.id);
      const before = await ids();
      const configured = shyApp.withOptions({ shy: { userConfig: { a: 1 } } });
      assert.deepEqual(await server.update(configured), { shy: ["reconfigure"] });
      await assert.rejects(
        server.update(configured.withOptions({ shy: { isolation: "process" } })),
        DeployFailedError,
      );
      // Before, the rollback took the reconfigured replicas for ones started otherwise and
      // replaced every one of them.
      assert.deepEqual(await ids(), before);
    });
  },
);

test(
  "update - a rolling restart whose new replica ends soon after it started is rolled back before the last old replica goes",
  { timeout: 90_000 },
  async () => {
    process.env.TRIBUTARY_TEST_SHY_EXIT = "1";
    try {
      await using server = await serve(shyApp.withOptions({ shy: { numReplicas: 1 } }));
      await assert.rejects(
        server.update(server.app.withOptions({ shy: { isolation: "process" } })),
        (error: unknown) =>
          error instanceof DeployFailedError &&
          /Update rolled back: New replica shy#2 ended after it started .*; the old replicas keep serving/.test(
            error.message,
          ),
      );
      const shy = server.getHandle<Shy>("shy");
      assert.equal(await shy.where(), "thread", "the old replica serves");
      assert.equal(server.app.deployments.shy!.isolation, "thread");
      await eventually(
        async () => {
          const replicas = (await server.status()).applications.shy!.deployments.shy!.replicas;
          return replicas.length === 1 && replicas[0]!.isolation === "thread";
        },
        20_000,
        "one thread replica, and no process replica, runs",
      );
    } finally {
      delete process.env.TRIBUTARY_TEST_SHY_EXIT;
    }
  },
);

test(
  "update - a rolling restart health-checks each new replica once, before its old one drains",
  { timeout: 90_000 },
  async () => {
    await using server = await serve(countedApp);
    assert.deepEqual(
      await server.update(server.app.withOptions({ counted: { isolation: "process" } })),
      { counted: ["restart"] },
    );
    const handle = server.getHandle<Counted>("counted");
    const counts = await Promise.all(Array.from({ length: 30 }, () => handle.count()));
    // With a period of an hour, the only checks are the rolling restart's: one each.
    assert.deepEqual([...new Set(counts)], [1]);
  },
);
