/**
 * Serves the diamond pipeline over HTTP with real replicas (worker threads), sends it one
 * request to show it works, and keeps serving until Ctrl-C, which drains and exits.
 * `npm start` runs this file; PORT picks the port (default 8000, 0 for any free one).
 */
import { run, toMermaid } from "tributary";
import { app, pipeline } from "./app.js";

console.log("Graph (Mermaid):\n" + toMermaid(pipeline) + "\n");
const started = Date.now();
const server = await run(app, { port: Number(process.env.PORT ?? 8000) });
const url = `${server.url}${app.routePrefix}`;
console.log(`Serving "${app.name}" at ${url} (started in ${Date.now() - started} ms)`);

const { deployments } = (await server.status()).applications.diamond!;
for (const d of Object.values(deployments)) {
  console.log(
    `  ${d.name.padEnd(9)} ${d.status.padEnd(8)} ${d.replicas.map((r) => `${r.id} (${r.host})`).join(", ")}`,
  );
}

const body = '{"features":[3,4,0],"id":"a"}';
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
