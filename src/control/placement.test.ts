import assert from "node:assert/strict";
import { test } from "node:test";
import { choose, freeResources, shortfall } from "./placement.js";

const node = (name: string, cpus: number, custom: Record<string, number> = {}, same = 0) => ({
  name,
  free: { cpus, gpus: 0, memory: 8e9, custom },
  sameDeployment: same,
});

test("placement - free resources are the node's less what its replicas hold", () => {
  const free = freeResources({ cpus: 4, gpus: 1, memory: 8e9, custom: { ocr: 2 } }, [
    { cpus: 1.5, custom: { ocr: 1 } },
    { cpus: 0.5, gpus: 1, memory: 2e9 },
  ]);
  assert.deepEqual(free, { cpus: 2, gpus: 0, memory: 6e9, custom: { ocr: 1 } });
});

test("placement - a shortfall names the missing resource and what is free", () => {
  const free = { cpus: 1, gpus: 0, memory: 1e9, custom: { ocr: 0 } };
  assert.equal(shortfall(free, { cpus: 1 }), undefined);
  assert.equal(shortfall(free, { cpus: 2 }), "cpus 2 (free: 1)");
  assert.equal(shortfall(free, { gpus: 1 }), "gpus 1 (free: 0)");
  assert.equal(shortfall(free, { memory: 2e9 }), "memory 2000000000 bytes (free: 1000000000)");
  assert.equal(shortfall(free, { custom: { ocr: 1 } }), 'custom resource "ocr" 1 (free: 0)');
  assert.equal(
    shortfall(free, { custom: { shard_9: 1 } }),
    'custom resource "shard_9" 1 (free: 0)',
  );
});

test("placement - spreads: fewest replicas of the deployment first, then the most free CPUs, then the name", () => {
  assert.deepEqual(choose([node("a", 4, {}, 1), node("b", 1, {}, 0)], { cpus: 1 }), { node: "b" });
  assert.deepEqual(choose([node("a", 2), node("b", 3)], { cpus: 1 }), { node: "b" });
  assert.deepEqual(choose([node("b", 2), node("a", 2)], { cpus: 1 }), { node: "a" });
  // Only a node with the custom resource fits, however busy.
  assert.deepEqual(
    choose([node("a", 4), node("gpu", 1, { ocr: 1 }, 3)], { cpus: 1, custom: { ocr: 1 } }),
    { node: "gpu" },
  );
});

test("placement - no fit says why, per node, or that no node has joined", () => {
  assert.deepEqual(choose([], { cpus: 1 }), { reason: "no node has joined the cluster" });
  const result = choose([node("a", 0.5), node("b", 4)], { cpus: 1, custom: { ocr: 1 } });
  assert.ok("reason" in result);
  assert.equal(
    result.reason,
    'no node has the resources free: a lacks cpus 1 (free: 0.5); b lacks custom resource "ocr" 1 (free: 0)',
  );
});
