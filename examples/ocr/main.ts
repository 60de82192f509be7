/**
 * Serves the OCR pipeline over HTTP (every model in its own worker-thread replicas), reads
 * the sample image once to show it works, and keeps serving until Ctrl-C, which drains and
 * exits. `npm start` runs this file; PORT picks the port (default 8000, 0 for any free one).
 */
import { readFileSync } from "node:fs";
import { run, toMermaid } from "tributary";
import { app, ocr, type OcrResult } from "./app.js";

console.log("Graph (Mermaid):\n" + toMermaid(ocr) + "\n");
const started = Date.now();
const server = await run(app, { port: Number(process.env.PORT ?? 8000) });
const url = `${server.url}${app.routePrefix}`;
console.log(`Serving "${app.name}" at ${url} (started in ${Date.now() - started} ms)`);

const { deployments } = (await server.status()).applications.ocr!;
for (const d of Object.values(deployments)) {
  console.log(
    `  ${d.name.padEnd(10)} ${d.status.padEnd(8)} ${d.replicas.map((r) => `${r.id} (${r.host})`).join(", ")}`,
  );
}

const sample = new URL("./sample.png", import.meta.url);
const response = await fetch(url, {
  method: "POST",
  headers: { "content-type": "image/png" },
  body: readFileSync(sample),
});
const result = (await response.json()) as OcrResult;
console.log(`\nPOST examples/ocr/sample.png -> ${response.status}`);
for (const line of result.lines ?? []) console.log(`  ${line.score.toFixed(3)}  ${line.text}`);
console.log(`\nIn a browser: ${url}   (pick an image; the boxes are drawn over it)`);
console.log(
  `With curl:    curl -s -X POST ${url} -H 'content-type: image/png' --data-binary @examples/ocr/sample.png`,
);
console.log(`API:          ${server.url}/openapi.json    Ctrl-C drains and stops.`);

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    console.log("\nDraining…");
    void server.close().then(() => {
      console.log("Stopped.");
      process.exit(0);
    });
  });
}
