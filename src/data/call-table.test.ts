import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { getHeapSpaceStatistics, setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { CallTable, INDEX_SPAN } from "./call-table.js";

describe("CallTable", () => {
  test("CallTable - ids are never 0 and never given twice, though indexes are reused", () => {
    const table = new CallTable<string>();
    const seen = new Set<number>();
    for (let round = 0; round < 1000; round++) {
      const a = table.add("a");
      const b = table.add("b");
      for (const id of [a, b]) {
        assert.notEqual(id, 0);
        assert.ok(!seen.has(id), `id ${id} given twice`);
        seen.add(id);
      }
      assert.equal(table.get(a), "a");
      assert.equal(table.take(b), "b");
      assert.equal(table.take(a), "a");
    }
    assert.equal(table.size, 0);
    // Two indexes served all 2,000 calls.
    assert.deepEqual(new Set([...seen].map((id) => id % INDEX_SPAN)), new Set([0, 1]));
  });

  test("CallTable - a late answer to a call given up finds nothing, not the call that took its index", () => {
    const table = new CallTable<string>();
    const old = table.add("cancelled");
    assert.equal(table.take(old), "cancelled");
    const next = table.add("new");
    assert.equal(next % INDEX_SPAN, old % INDEX_SPAN);
    assert.equal(table.get(old), undefined);
    assert.equal(table.take(old), undefined);
    assert.equal(table.has(old), false);
    assert.equal(table.get(next), "new");
    assert.equal(table.size, 1);
  });

  test("CallTable - ids from another table: at their index, beside it when it is taken, and odd ids too", () => {
    const giver = new CallTable<number>();
    const holder = new CallTable<string>();
    const first = giver.add(1);
    giver.take(first);
    const second = giver.add(2); // same index, next generation
    holder.set(first, "still running");
    holder.set(second, "new");
    holder.set(-3, "control");
    holder.set(1.5, "odd");
    holder.set(INDEX_SPAN - 1, "far");
    assert.equal(holder.size, 5);
    assert.equal(holder.get(first), "still running");
    assert.equal(holder.get(second), "new");
    assert.equal(holder.get(-3), "control");
    assert.equal(holder.get(1.5), "odd");
    assert.equal(holder.get(INDEX_SPAN - 1), "far");
    assert.deepEqual(new Set(holder.ids()), new Set([first, second, -3, 1.5, INDEX_SPAN - 1]));
    assert.equal(holder.take(first), "still running");
    assert.equal(holder.get(second), "new");
    assert.equal(holder.delete(-3), true);
    assert.equal(holder.delete(-3), false);
    holder.clear();
    assert.equal(holder.size, 0);
    assert.deepEqual(holder.ids(), []);
  });

  test("CallTable - an id never given (0, the id of a call not sent) finds nothing and frees nothing", () => {
    const table = new CallTable<string>();
    table.take(table.add("over")); // index 0 is free now
    assert.equal(table.take(0), undefined);
    assert.equal(table.take(0), undefined);
    assert.equal(table.has(0), false);
    assert.equal(table.size, 0);
    const a = table.add("a");
    const b = table.add("b");
    assert.notEqual(a % INDEX_SPAN, b % INDEX_SPAN, "one index was given twice");
    const holder = new CallTable<string>();
    holder.set(0, "zero");
    assert.equal(holder.size, 1);
    assert.equal(holder.get(0), "zero");
    assert.equal(holder.take(0), "zero");
    assert.equal(holder.take(0), undefined);
    assert.equal(holder.size, 0);
  });

  test("CallTable - after its last generation an index's ids start again at 1, and still find their calls", () => {
    const table = new CallTable<number>(3);
    const ids: number[] = [];
    for (let i = 0; i < 7; i++) {
      const id = table.add(i);
      ids.push(id);
      assert.equal(table.get(id), i);
      assert.equal(table.take(id), i);
    }
    assert.deepEqual(
      ids.map((id) => Math.floor(id / INDEX_SPAN)),
      [1, 2, 3, 1, 2, 3, 1],
    );
    assert.equal(table.size, 0);
  });

  test("CallTable - a table gives ids or holds others', not both", () => {
    const giver = new CallTable<string>();
    giver.add("a");
    assert.throws(() => giver.set(-1, "b"), /gives ids/);
    const holder = new CallTable<string>();
    holder.set(5, "a");
    assert.throws(() => holder.add("b"), /holds ids from elsewhere/);
  });

  test("CallTable - values and clear", () => {
    const table = new CallTable<string>();
    const ids = ["a", "b", "c"].map((v) => table.add(v));
    table.take(ids[1]!);
    assert.deepEqual(table.values().sort(), ["a", "c"]);
    table.clear();
    assert.equal(table.size, 0);
    assert.equal(table.get(ids[0]!), undefined);
    assert.notEqual(table.add("d"), ids[0]);
  });

  test("CallTable - a long-lived table promotes nothing to the old generation as calls come and go", () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const oldUsed = (): number =>
      getHeapSpaceStatistics().find((s) => s.space_name === "old_space")!.space_used_size;
    /** Bytes the old generation grew by while 400k calls went through `store`, 32 at a time. */
    const promoted = (store: { add(v: object): number; take(id: number): unknown }): number => {
      const live = new Array<number>(32).fill(0);
      for (let i = 0; i < 32; i++) live[i] = store.add({ i });
      gc();
      gc(); // the store and the calls in it are in the old generation, as after a quiet spell
      let grown = 0;
      let last = oldUsed();
      for (let i = 0; i < 400_000; i++) {
        store.take(live[i % 32]!);
        live[i % 32] = store.add({ i, args: [i, i + 1], settle: () => i });
        if (i % 1000 === 0) {
          const now = oldUsed();
          if (now > last) grown += now - last;
          last = now;
        }
      }
      return grown;
    };
    const withTable = promoted(new CallTable<object>());
    let next = 1;
    const map = new Map<number, object>();
    const withMap = promoted({
      add: (v) => (map.set(next, v), next++),
      take: (id) => map.delete(id),
    });
    // For comparison, measured after the table (what a Map leaves behind would count
    // against it): about 100-200 MB here.
    console.log(
      `old generation grown: Map ${(withMap / 1e6).toFixed(1)} MB, CallTable ${(withTable / 1e6).toFixed(2)} MB`,
    );
    assert.ok(withTable < 5e6, `the table promoted ${withTable} bytes`);
  });
});
