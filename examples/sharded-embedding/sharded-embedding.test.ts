import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ValidationError, type Application, type Server } from "tributary";
import { serve } from "../../test/serve.js";
import {
  app,
  DEFAULT_CONFIG,
  fullTable,
  pipeline,
  recommender,
  referenceRecommend,
  shardOf,
  type EmbeddingShard,
  type Lookup,
  type Recommendation,
  type TableConfig,
} from "./app.js";
import { assertSameRecommendation, requests, withK } from "./cases.js";

const V = DEFAULT_CONFIG.vocab;
const N = DEFAULT_CONFIG.numShards;

const hasRepeats = (ids: readonly number[]) => new Set(ids).size < ids.length;

after(() => pipeline.dispose());

test("sharded-embedding - the requests cover every shard, both ends and repeated ids", () => {
  const ids = requests.flatMap((r) => [...r.history, ...r.candidates]);
  assert.deepEqual(new Set(ids.map((id) => shardOf(id, N))), new Set([0, 1, 2, 3]));
  assert.ok(ids.includes(0) && ids.includes(V - 1));
  assert.ok(requests.some((r) => hasRepeats(r.history)));
  assert.ok(requests.some((r) => hasRepeats(r.candidates)));
});

test(
  "sharded-embedding - executed locally, the sharded pipeline recommends what the full table does",
  { timeout: 20_000 },
  async () => {
    for (const request of requests) {
      const expected = referenceRecommend(withK(request), DEFAULT_CONFIG);
      const distinct = new Set(request.candidates).size;
      assert.equal(expected.items.length, Math.min(withK(request).k, distinct));
      assertSameRecommendation(await pipeline.execute(request), expected);
    }
  },
);

test(
  "sharded-embedding - a vocabulary that does not divide evenly across shards still matches",
  { timeout: 20_000 },
  async () => {
    const config: TableConfig = { vocab: 1_001, dim: 5, numShards: 3, seed: 1 };
    const { pipeline: small } = recommender(config);
    try {
      const all = Array.from({ length: config.vocab }, (_, i) => i);
      const request = { history: [1_000, 999, 998, 0, 1_000], candidates: all, k: 25 };
      const expected = referenceRecommend(request, config);
      assert.equal(expected.items.length, 25);
      assertSameRecommendation(await small.execute(request), expected);
    } finally {
      await small.dispose();
    }
  },
);

test(
  "sharded-embedding - an id out of range is rejected locally with its path",
  { timeout: 10_000 },
  async () => {
    await assert.rejects(
      pipeline.execute({ history: [1, V], candidates: [-1, 2.5, 3] }),
      (error: unknown) =>
        error instanceof ValidationError &&
        error.issues.map((i) => i.path).join() === "history[1],candidates[0],candidates[1]",
    );
  },
);

type RecommendServer =
  typeof app extends Application<infer In, infer Out> ? Server<In, Out> : never;

let server: RecommendServer | undefined;

function served(): RecommendServer {
  assert.ok(server, "the server did not start");
  return server;
}

async function post(body: unknown): Promise<Response> {
  return fetch(`${served().url}${app.routePrefix}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(5_000),
  });
}

describe("sharded-embedding - served with replicas", () => {
  before(async () => (server = await serve(app)), { timeout: 30_000 });
  after(() => server?.close());

  test(
    "sharded-embedding - served over HTTP, the pipeline recommends what the full table does",
    { timeout: 20_000 },
    async () => {
      for (const request of requests) {
        const response = await post(request);
        assert.equal(response.status, 200);
        const body = (await response.json()) as Recommendation;
        assertSameRecommendation(body, referenceRecommend(withK(request), DEFAULT_CONFIG));
      }
    },
  );

  test(
    "sharded-embedding - through server.handle.call, the pipeline recommends what the full table does",
    { timeout: 20_000 },
    async () => {
      const results = await Promise.all(
        requests.map((request) => served().handle.call(request, { timeout: "5s" })),
      );
      results.forEach((result, i) =>
        assertSameRecommendation(result, referenceRecommend(withK(requests[i]!), DEFAULT_CONFIG)),
      );
    },
  );

  test(
    "sharded-embedding - each shard replica holds only its quarter of the rows",
    { timeout: 20_000 },
    async () => {
      for (let s = 0; s < N; s++) {
        const shard = served().getHandle<EmbeddingShard>(`shard_${s}`, { timeout: "5s" });
        assert.deepEqual(await shard.stats(), {
          shardIndex: s,
          numShards: N,
          rows: V / N,
          bytes: (V / N) * DEFAULT_CONFIG.dim * 4,
          firstId: s,
          lastId: V - N + s,
        });
        const foreign = (s + 1) % N;
        await assert.rejects(shard.lookup([foreign]), new RegExp(`lives on shard ${foreign}`));
      }
      const { deployments } = (await served().status()).applications.recommend!;
      const hosts = [0, 1, 2, 3].map((s) => deployments[`shard_${s}`]!.replicas.map((r) => r.host));
      assert.ok(hosts.every((h) => h.length === 1));
      assert.equal(new Set(hosts.flat()).size, N, `shards share a replica host: ${hosts.join()}`);
    },
  );

  test(
    "sharded-embedding - the served Lookup gathers rows from every shard in request order",
    { timeout: 20_000 },
    async () => {
      const { dim } = DEFAULT_CONFIG;
      const table = fullTable(DEFAULT_CONFIG);
      const ids = [7, 0, V - 1, 7, 50_002, 3, 0, 133_331];
      const lookup = served().getHandle<Lookup>("Lookup", { timeout: "5s" });
      const rows = await lookup.lookup(ids);
      assert.ok(rows instanceof Float32Array);
      assert.equal(rows.length, ids.length * dim);
      ids.forEach((id, i) =>
        assert.deepEqual(
          rows.subarray(i * dim, (i + 1) * dim),
          table.subarray(id * dim, (id + 1) * dim),
          `row ${i} (id ${id})`,
        ),
      );
    },
  );

  test(
    "sharded-embedding - an id out of range is a 422 naming the field",
    { timeout: 20_000 },
    async () => {
      const response = await post({ history: [3], candidates: [1, V, 2], k: 0 });
      assert.equal(response.status, 422);
      const { error } = (await response.json()) as {
        error: { code: string; message: string; issues: { path: string; message: string }[] };
      };
      assert.equal(error.code, "VALIDATION_FAILED");
      assert.deepEqual(
        error.issues.map((i) => i.path),
        ["candidates[1]", "k"],
      );
      assert.equal(error.issues[0]!.message, `ids are integers in [0, ${V})`);
      assert.match(error.message, /candidates\[1\]: ids are integers in \[0, 200000\)/);
    },
  );
});
