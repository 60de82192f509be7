/**
 * Serves the diamond pipeline with real replicas (worker threads), sends it a few
 * requests, prints the answers and the deployments' status, then shuts down gracefully.
 * `npm start` runs this file.
 */
import { run, toMermaid } from "tributary";
import { app, pipeline } from "./app.js";

console.log("Graph (Mermaid):\n" + toMermaid(pipeline) + "\n");
const started = Date.now();
await using server = await run(app, { port: Number(process.env.PORT ?? 8000) });
console.log(
  `Serving "${app.name}" (${Object.keys(app.deployments).join(", ")}) after ${Date.now() - started} ms\n`,
);

for (const request of [
  { features: [3, 4, 0], id: "a" },
  { features: [1, 2, 3], scale: 2, id: "b" },
]) {
  console.log(JSON.stringify(request), "->", JSON.stringify(await server.handle.call(request)));
}
try {
  await server.handle.call({ features: [], id: 7 } as never);
} catch (error) {
  console.log("\nA bad request is rejected:", (error as Error).message);
}

const { deployments } = (await server.status()).applications.diamond!;
console.log("\nStatus:");
for (const d of Object.values(deployments)) {
  console.log(
    `  ${d.name.padEnd(9)} ${d.status.padEnd(8)} ${d.replicas.map((r) => `${r.id} (${r.host})`).join(", ")}`,
  );
}
