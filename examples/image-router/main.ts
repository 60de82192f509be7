/**
 * Serves the image router over HTTP, sends a grey and a red image, and keeps serving until
 * Ctrl-C. Run: `npx tsx examples/image-router/main.ts` (PORT picks the port, default 8000).
 * To move the canary's share live, serve it with `tributary start` and
 * `tributary deploy examples/image-router/serve.yaml` instead, then edit `splits:`.
 */
import { serveExample } from "../serve-example.js";
import { app, pipeline, solid } from "./app.js";

const { url, server } = await serveExample(app, pipeline);
for (const [what, colour] of [
  ["grey", [40, 40, 40]],
  ["red", [220, 30, 20]],
] as const) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/octet-stream", "x-user-id": "demo" },
    body: solid(colour),
  });
  console.log(`POST a ${what} 8×8 image -> ${response.status} ${await response.text()}`);
}
console.log(
  `\nTry it:  head -c 192 /dev/urandom | curl -s -X POST ${url} -H 'content-type: application/octet-stream' -H 'x-user-id: me' --data-binary @-`,
);
console.log(`API:     ${server.url}/openapi.json    Ctrl-C drains and stops.`);
