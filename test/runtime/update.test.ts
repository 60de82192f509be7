import assert from "node:assert/strict";
import { test } from "node:test";
import { DeployFailedError, type DeploymentOptions } from "tributary";
import { app } from "../fixtures/config-app.js";
import { serve } from "../serve.js";
import { eventually } from "./eventually.js";

interface Answer {
  pass: boolean;
  threshold: number;
  replica: string;
}

test(
  "update - config changes under load lose no request and switch the answers",
  { timeout: 120_000 },
  async () => {
    await using server = await serve(app, { port: 0 });
    let running = true;
    /** Each answer with the time its call started: only calls started after a change must see it. */
    const answers: { answer: Answer; started: number }[] = [];
    const failures: unknown[] = [];
    // A bounded client loop: four callers, until the changes are done (at most 2 minutes).
    const deadline = Date.now() + 110_000;
    const callers = Array.from({ length: 4 }, async () => {
      while (running && Date.now() < deadline) {
        const started = Date.now();
        try {
          answers.push({ answer: await server.handle.call(0.7), started });
        } catch (error) {
          failures.push(error);
        }
      }
    });
    const status = async () => (await server.status()).applications.gate!.deployments.thresholder!;
    /** At least `count` answers to calls started after `since` (waited for), all of them. */
    const startedAfter = async (since: number, count = 20): Promise<Answer[]> => {
      await eventually(
        async () => answers.filter((a) => a.started > since).length >= count,
        20_000,
        `${count} answers to calls started after the change`,
      );
      return answers.filter((a) => a.started > since).map((a) => a.answer);
    };

    // userConfig: reconfigure() on the live replica, no restart.
    assert.deepEqual(
      await server.update(app.withOptions({ thresholder: { userConfig: { threshold: 0.9 } } })),
      { thresholder: ["reconfigure"] },
    );
    let changed = Date.now();
    const afterConfig = await startedAfter(changed);
    assert.deepEqual(
      afterConfig.filter((a) => a.threshold !== 0.9 || a.pass || a.replica !== "thresholder#1"),
      [],
    );

    // numReplicas: scaling only.
    assert.deepEqual(
      await server.update(server.app.withOptions({ thresholder: { numReplicas: 3 } })),
      { thresholder: ["scale"] },
    );
    await eventually(
      async () => (await status()).replicas.filter((r) => r.state === "RUNNING").length === 3,
      20_000,
      "3 replicas run",
    );

    // isolation: a rolling restart into child processes.
    assert.deepEqual(
      await server.update(server.app.withOptions({ thresholder: { isolation: "process" } })),
      { thresholder: ["restart"] },
    );
    changed = Date.now();
    const after = await status();
    assert.deepEqual(
      after.replicas.map((r) => [r.state, r.isolation]),
      Array(3).fill(["RUNNING", "process"]),
    );
    assert.ok(
      after.replicas.every((r) => Number(r.id.split("#")[1]) > 3),
      "every replica is new",
    );
    const newIds = new Set(after.replicas.map((r) => r.id));
    assert.deepEqual(
      (await startedAfter(changed)).filter((a) => !newIds.has(a.replica) || a.threshold !== 0.9),
      [],
      "answers come from the new replicas, config kept",
    );

    // A change that fails is rolled back and the deployment keeps serving.
    await assert.rejects(
      server.update(server.app.withOptions({ thresholder: { userConfig: { threshold: 5 } } })),
      (error: unknown) =>
        error instanceof DeployFailedError &&
        /userConfig update rolled back: reconfigure\(\) failed: .*threshold 5 is above 1/.test(
          error.message,
        ),
    );
    changed = Date.now();
    assert.deepEqual(
      (await startedAfter(changed)).filter((a) => a.threshold !== 0.9),
      [],
    );

    running = false;
    await Promise.all(callers);
    assert.deepEqual(failures, [], "no request failed during the changes");
    assert.ok(answers.length > 100, `only ${answers.length} answers`);
  },
);

test(
  "update - a userConfig removed restarts the replicas without one (reconfigure() is not handed null); added back it is a reconfigure; a failed one added where there was none is undone by a restart",
  { timeout: 60_000 },
  async () => {
    await using server = await serve(app, { port: 0 });
    const first = await server.handle.call(0.7);
    assert.equal(first.threshold, 0.5);
    // As serve.yaml without the userConfig its code never had (TypeScript's options type
    // has no way to write "none" over a value).
    const removed = app.withOptions({
      thresholder: { userConfig: undefined } as unknown as DeploymentOptions,
    });
    assert.deepEqual(await server.update(removed), { thresholder: ["restart"] });
    const fresh = await server.handle.call(0.7);
    assert.equal(fresh.threshold, 0, "as a replica started without a userConfig");
    assert.notEqual(fresh.replica, first.replica);
    assert.deepEqual(await server.update(app), { thresholder: ["reconfigure"] });
    assert.deepEqual(await server.handle.call(0.7), { ...fresh, threshold: 0.5, pass: true });
    // A config added where there was none fails: the replicas go back to having none.
    await server.update(removed);
    const none = await server.handle.call(0.7);
    await assert.rejects(
      server.update(app.withOptions({ thresholder: { userConfig: { threshold: 5 } } })),
      DeployFailedError,
    );
    const after = await server.handle.call(0.7);
    assert.equal(after.threshold, 0);
    assert.notEqual(after.replica, none.replica, "replaced, not handed null");
    const status = (await server.status()).applications.gate!.deployments.thresholder!;
    assert.deepEqual(
      status.replicas.map((r) => r.state),
      ["RUNNING"],
    );
  },
);

test("update - overlapping updates apply one after the other", { timeout: 60_000 }, async () => {
  await using server = await serve(app.withOptions({ thresholder: { numReplicas: 2 } }), {
    port: 0,
  });
  const toProcess = server.app.withOptions({ thresholder: { isolation: "process" } });
  const [first, second] = await Promise.all([
    server.update(toProcess),
    server.update(toProcess.withOptions({ thresholder: { numReplicas: 1 } })),
  ]);
  assert.deepEqual([first, second], [{ thresholder: ["restart"] }, { thresholder: ["scale"] }]);
  const status = async () => (await server.status()).applications.gate!.deployments.thresholder!;
  await eventually(
    async () => (await status()).replicas.length === 1,
    20_000,
    "one replica is left",
  );
  assert.deepEqual(
    (await status()).replicas.map((r) => [r.state, r.isolation]),
    [["RUNNING", "process"]],
  );
});

test(
  "update - new ingress limits apply and are reported as a change",
  { timeout: 60_000 },
  async () => {
    await using server = await serve(app, { port: 0 });
    const plan = await server.update(
      server.app.withOptions({ ingress: { maxOngoingRequests: 1, maxQueuedRequests: 0 } }),
    );
    assert.deepEqual(plan.ingress, ["router"]);
    // One graph walk at a time and none waiting: a second one at once is refused.
    const calls = await Promise.allSettled([server.handle.call(0.7), server.handle.call(0.7)]);
    assert.deepEqual(
      calls.map((c) => c.status),
      ["fulfilled", "rejected"],
    );
    assert.match(String((calls[1] as PromiseRejectedResult).reason), /ingress/);
    assert.deepEqual(await server.update(server.app), { thresholder: [] }, "the same limits again");
  },
);
