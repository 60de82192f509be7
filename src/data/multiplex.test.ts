import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ActiveRequest, requestStorage } from "./context.js";
import { multiplexed, reportModelsTo } from "./multiplex.js";

/** A model that records its close(). */
class FakeModel {
  closed = false;
  constructor(readonly id: string) {}
  close(): void {
    this.closed = true;
  }
}

describe("multiplexed", () => {
  test("multiplexed - loads a model once, keeps at most maxModelsPerReplica, evicts the least recently used and closes it", async () => {
    const made: FakeModel[] = [];
    const models = multiplexed(
      (id: string) => {
        const model = new FakeModel(id);
        made.push(model);
        return model;
      },
      { maxModelsPerReplica: 2 },
    );
    const a = await models("a");
    assert.equal(await models("a"), a, "a second call gets the loaded model");
    await models("b");
    await models("a"); // a is now the most recently used
    await models("c"); // evicts b
    assert.deepEqual(models.stats(), { loads: 3, evictions: 1, loaded: ["a", "c"] });
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(
      made.map((m) => [m.id, m.closed]),
      [
        ["a", false],
        ["b", true],
        ["c", false],
      ],
    );
    await models("b");
    assert.deepEqual(models.stats(), { loads: 4, evictions: 2, loaded: ["c", "b"] });
  });

  test("multiplexed - concurrent calls for one model share its load; a failed load is retried by the next call", async () => {
    let loads = 0;
    let fail = true;
    const models = multiplexed(async (id: string) => {
      loads++;
      await new Promise((resolve) => setImmediate(resolve));
      if (fail) throw new Error(`no ${id}`);
      return { id };
    });
    const both = await Promise.allSettled([models("x"), models("x")]);
    assert.deepEqual(
      both.map((r) => r.status),
      ["rejected", "rejected"],
    );
    assert.equal(loads, 1);
    assert.deepEqual(models.stats().loaded, []);
    fail = false;
    assert.deepEqual(await models("x"), { id: "x" });
    assert.equal(loads, 2);
  });

  test("multiplexed - without an id it loads the request's multiplexedModelId; with none it says how to name one", async () => {
    const models = multiplexed((id: string) => `model ${id}`);
    const request = new ActiveRequest("r1", "d", "d#1", "en-v2");
    assert.equal(await requestStorage.run(request, () => models()), "model en-v2");
    await assert.rejects(models(), /names no model.*x-tributary-model-id/s);
    assert.throws(() => multiplexed(() => 1, { maxModelsPerReplica: 0 }), /positive integer/);
  });

  // Last: it installs this thread's report, as a replica does.
  test("multiplexed - a replica reports its loaded models: a cache made before the report at once, every change after", async () => {
    const early = multiplexed((id: string) => id, { maxModelsPerReplica: 1 });
    const reports: string[][] = [];
    // (Caches of the tests above live on in this thread: only this test's ids are compared.)
    reportModelsTo((models) => reports.push(models.filter((m) => m.startsWith("r-")).sort()));
    assert.deepEqual(reports, [[]], "reported at once: the replica multiplexes");
    await early("r-a");
    const late = multiplexed((id: string) => id);
    await late("r-b");
    await early("r-c"); // evicts r-a
    assert.deepEqual(reports, [[], ["r-a"], ["r-a"], ["r-a", "r-b"], ["r-b"], ["r-b", "r-c"]]);
  });
});
