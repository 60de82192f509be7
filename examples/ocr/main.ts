/**
 * Serves the OCR pipeline over HTTP (every model in its own worker-thread replicas), reads
 * the sample image once to show it works, and keeps serving until Ctrl-C, which drains and
 * exits. `npm start` runs this file; PORT picks the port (default 8000, 0 for any free one).
 */
import { readFileSync } from "node:fs";
import { serveExample } from "../serve-example.js";
import { app, ocr, type OcrResult } from "./app.js";

const { url, server } = await serveExample(app, ocr);

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
