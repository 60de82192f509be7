/**
 * Serves the sharded recommender over HTTP with real replicas (worker threads): four shard
 * replicas each holding a quarter of the embedding table, a lookup and a scorer. Prints
 * what each shard holds, sends one request, and keeps serving until Ctrl-C, which drains
 * and exits. Run: `npx tsx examples/sharded-embedding/main.ts` (PORT picks the port,
 * default 8000, 0 for any free one).
 */
import { run, toMermaid } from "tributary";
import { app, DEFAULT_CONFIG, pipeline, type EmbeddingShard } from "./app.js";

console.log("Graph (Mermaid):\n" + toMermaid(pipeline) + "\n");
const started = Date.now();
const server = await run(app, { port: Number(process.env.PORT ?? 8000) });
const url = `${server.url}${app.routePrefix}`;
console.log(`Serving "${app.name}" at ${url} (started in ${Date.now() - started} ms)`);

const { deployments } = (await server.status()).applications.recommend!;
for (const d of Object.values(deployments)) {
  console.log(
    `  ${d.name.padEnd(8)} ${d.status.padEnd(8)} ${d.replicas.map((r) => `${r.id} (${r.host})`).join(", ")}`,
  );
}

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

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    console.log("\nDraining…");
    void server.close().then(() => {
      console.log("Stopped.");
      process.exit(0);
    });
  });
}
