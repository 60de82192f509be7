/**
 * Serves the diamond pipeline over HTTP with real replicas (worker threads), sends it one
 * request to show it works, and keeps serving until Ctrl-C, which drains and exits.
 * Run: `npx tsx examples/diamond/main.ts` (PORT picks the port, default 8000, 0 for any
 * free one).
 */
import { serveExample } from "../serve-example.js";
import { app, pipeline } from "./app.js";

const { url, server } = await serveExample(app, pipeline);

const body = '{"features":[3,4,0],"id":"a"}';
const response = await fetch(url, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body,
});
console.log(`\nPOST ${body} -> ${response.status} ${await response.text()}`);
console.log(`\nTry it:  curl -s -X POST ${url} -H 'content-type: application/json' -d '${body}'`);
console.log(`API:     ${server.url}/openapi.json    Ctrl-C drains and stops.`);
