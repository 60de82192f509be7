/**
 * Serves the sharded recommender over HTTP with real replicas (worker threads): four shard
 * replicas each holding a quarter of the embedding table, a lookup and a scorer. Prints
 * what each shard holds, sends one request, and keeps serving until Ctrl-C, which drains
 * and exits. Run: `npx tsx examples/sharded-embedding/main.ts` (PORT picks the port,
 * default 8000, 0 for any free one).
 */
import { serveExample } from "../serve-example.js";
import { app, DEFAULT_CONFIG, pipeline, type EmbeddingShard } from "./app.js";

const { url, server } = await serveExample(app, pipeline);

const { vocab, dim, numShards } = DEFAULT_CONFIG;
console.log(`\nTable: ${vocab} rows × ${dim} float32 = ${(vocab * dim * 4) / 1e6} MB in all`);
for (let s = 0; s < numShards; s++) {
  const stats = await server.getHandle<EmbeddingShard>(`shard_${s}`).stats();
  console.log(
    `  shard_${s} holds ${stats.rows} rows (ids ${stats.firstId}, ${stats.firstId + numShards}, …, ${stats.lastId}): ${stats.bytes / 1e6} MB`,
  );
}

const body = '{"history":[12,7,190001,7],"candidates":[3,99,1024,150000,199999,99],"k":3}';
const response = await fetch(url, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body,
});
console.log(`\nPOST ${body} -> ${response.status} ${await response.text()}`);
console.log(`\nTry it:  curl -s -X POST ${url} -H 'content-type: application/json' -d '${body}'`);
console.log(`API:     ${server.url}/openapi.json    Ctrl-C drains and stops.`);
