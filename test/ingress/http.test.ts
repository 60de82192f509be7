import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import sharp from "sharp";
import type { Server } from "tributary";
import { app } from "../fixtures/http-app.js";
import { imageApp } from "../fixtures/oip-app.js";
import { plainApp } from "../fixtures/stream-app.js";
import { app as relayApp } from "../fixtures/relay-app.js";
import { serve } from "../serve.js";

async function post(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

interface ErrorBody {
  error: {
    code: string;
    message: string;
    requestId: string;
    issues?: { path: string; message: string }[];
    stack?: string;
  };
}

describe("HTTP ingress", { timeout: 60_000 }, () => {
  let server: Server;
  let url: string;

  before(async () => {
    server = await serve(app, { requestTimeout: "1s" });
    url = `${server.url}/echo`;
  });
  after(() => server.close());

  test("http - a JSON body runs the graph and answers JSON with an x-request-id", async () => {
    const response = await post(url, { mode: "json", text: "hi", n: 2 });
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
    assert.match(response.headers.get("x-request-id") ?? "", /^[0-9a-f-]{36}$/);
    assert.deepEqual(await response.json(), { echo: "hi", n: 2, fileBytes: null });
    // The route prefix with a trailing slash too, as Ray Serve's proxy matches it.
    const slashed = await post(`${url}/`, { mode: "json", text: "hi", n: 2 });
    assert.equal(slashed.status, 200);
    assert.deepEqual(await slashed.json(), { echo: "hi", n: 2, fileBytes: null });
    // An incoming request id is kept.
    const traced = await post(url, { mode: "json", text: "x" }, { "x-request-id": "trace-42" });
    assert.equal(traced.headers.get("x-request-id"), "trace-42");
  });

  test("http - typed arrays in results are JSON arrays; bytes are octet-stream", async () => {
    assert.deepEqual(await (await post(url, { mode: "tensor", text: "t" })).json(), {
      values: [1.5, 2.5],
      label: "t",
    });
    const bytes = await post(url, { mode: "bytes", text: "ab", n: 3 });
    assert.equal(bytes.headers.get("content-type"), "application/octet-stream");
    assert.equal(await bytes.text(), "ababab");
  });

  test("http - a streamed result arrives as Server-Sent Events", async () => {
    const response = await post(url, { mode: "stream", text: "s", n: 3 });
    assert.equal(response.headers.get("content-type"), "text/event-stream");
    const text = await response.text();
    assert.equal(
      text,
      'data: {"i":0}\n\ndata: {"i":1}\n\ndata: {"i":2}\n\nevent: end\ndata: null\n\n',
    );
  });

  test("http - a stream that fails before its first item is answered with the error's status; after it, with an error event", async () => {
    const before = await post(url, { mode: "stream-fail", text: "", n: 0 });
    assert.equal(before.status, 500);
    const body = (await before.json()) as ErrorBody;
    assert.equal(body.error.code, "EXECUTION_FAILED");
    assert.match(body.error.message, /stream exploded after 0/);
    assert.equal(body.error.requestId, before.headers.get("x-request-id"));
    // Nothing for longer than requestTimeout (1 s here): 504, not a 200 with an error event.
    const late = await post(url, { mode: "stream-fail", text: "wait", n: 1 });
    assert.equal(late.status, 504);
    assert.equal(((await late.json()) as ErrorBody).error.code, "TIMEOUT");
    const after = await post(url, { mode: "stream-fail", text: "", n: 2 });
    assert.equal(after.status, 200);
    assert.equal(after.headers.get("content-type"), "text/event-stream");
    const text = await after.text();
    assert.match(
      text,
      /^data: \{"i":0\}\n\ndata: \{"i":1\}\n\nevent: error\ndata: \{"error":\{"code":"EXECUTION_FAILED"/,
    );
  });

  test("http - multipart form data: file fields become bytes, other fields strings", async () => {
    const form = new FormData();
    form.append("mode", "json");
    form.append("text", "form");
    form.append("file", new Blob([new Uint8Array([1, 2, 3, 4, 5])]), "data.bin");
    const response = await fetch(url, { method: "POST", body: form });
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { echo: "form", n: 1, fileBytes: 5 });
    // A field given twice is refused (before, the last part won unsaid).
    form.append("text", "again");
    const twice = await fetch(url, { method: "POST", body: form });
    assert.equal(twice.status, 422);
    const body = (await twice.json()) as ErrorBody;
    assert.deepEqual(
      body.error.issues?.map((i) => [i.path, i.message]),
      [["text", "given in two parts; a field takes one"]],
    );
  });

  test("http - a result that cannot be written as JSON (a cycle) is 500 EXECUTION_FAILED saying why", async () => {
    const response = await post(url, { mode: "cycle", text: "x" });
    assert.equal(response.status, 500);
    const body = (await response.json()) as ErrorBody;
    assert.equal(body.error.code, "EXECUTION_FAILED");
    // Before: "Internal server error."
    assert.match(body.error.message, /could not be written as JSON: .*circular/i);
  });

  test("http - a JSON body must be UTF-8: other bytes are a 400 saying so; a byte order mark is dropped", async () => {
    const send = (bytes: Uint8Array) =>
      fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: bytes });
    const text = new TextEncoder().encode(JSON.stringify({ mode: "json", text: "é" }));
    const latin1 = Buffer.from(JSON.stringify({ mode: "json", text: "é" }), "latin1");
    const bad = await send(latin1);
    assert.equal(bad.status, 400);
    const body = (await bad.json()) as ErrorBody;
    assert.equal(body.error.code, "BAD_REQUEST");
    assert.equal(body.error.message, "The JSON body is not valid UTF-8.");
    const marked = await send(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), text]));
    assert.equal(marked.status, 200);
    assert.deepEqual(await marked.json(), { echo: "é", n: 1, fileBytes: null });
  });

  test("http - a compressed body is 415 saying to send it uncompressed", async () => {
    const { gzipSync } = await import("node:zlib");
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", "content-encoding": "gzip" },
      body: gzipSync(JSON.stringify({ mode: "json", text: "x" })),
    });
    assert.equal(response.status, 415);
    const body = (await response.json()) as ErrorBody;
    assert.equal(body.error.code, "UNSUPPORTED_MEDIA_TYPE");
    // Before: 400 "The JSON body is not valid UTF-8."
    assert.match(body.error.message, /Content-Encoding "gzip" is not supported/);
  });

  test("http - a schema violation is a 422 listing every failing path", async () => {
    const response = await post(url, { mode: "nope", text: 5, n: 1000 });
    assert.equal(response.status, 422);
    const body = (await response.json()) as ErrorBody;
    assert.equal(body.error.code, "VALIDATION_FAILED");
    assert.deepEqual(
      body.error.issues?.map((i) => i.path),
      ["mode", "text", "n"],
    );
    assert.equal(body.error.requestId, response.headers.get("x-request-id"));
  });

  test("http - assets answer GET under the route prefix with their content type", async () => {
    const css = await fetch(`${server.url}/echo/style.css`);
    assert.equal(css.status, 200);
    assert.equal(css.headers.get("content-type"), "text/css; charset=utf-8");
    assert.equal(css.headers.get("x-content-type-options"), "nosniff");
    assert.equal(
      await css.text(),
      readFileSync(new URL("../fixtures/assets/style.css", import.meta.url), "utf8"),
    );
    assert.ok(css.headers.get("x-request-id"));
    assert.equal((await fetch(`${server.url}/echo/other.css`)).status, 404);
    const posted = await fetch(`${server.url}/echo/style.css`, { method: "POST" });
    assert.deepEqual([posted.status, posted.headers.get("allow")], [405, "GET, HEAD"]);
  });

  test("http - raw bytes for an input that is an object with no bytes field are a 415 that says what to send", async () => {
    await using plain = await serve(plainApp);
    const response = await fetch(`${plain.url}/double`, {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body: new Uint8Array([1, 2, 3]),
    });
    assert.equal(response.status, 415);
    const { error } = (await response.json()) as ErrorBody;
    assert.equal(error.code, "UNSUPPORTED_MEDIA_TYPE");
    assert.match(
      error.message,
      /takes a JSON object \(x\) with no bytes field .*send application\/json/,
    );
  });

  test("http - malformed, unsupported, too large and unknown routes get 400, 415, 413, 404", async () => {
    const malformed = await post(url, "{not json");
    assert.equal(malformed.status, 400);
    assert.equal(((await malformed.json()) as ErrorBody).error.code, "BAD_REQUEST");
    const unsupported = await post(url, "x", { "content-type": "text/csv" });
    assert.equal(unsupported.status, 415);
    assert.equal(((await unsupported.json()) as ErrorBody).error.code, "UNSUPPORTED_MEDIA_TYPE");
    const large = await post(
      url,
      JSON.stringify({ mode: "json", text: "x".repeat(17 * 1024 * 1024) }),
    );
    assert.equal(large.status, 413);
    assert.equal(((await large.json()) as ErrorBody).error.code, "PAYLOAD_TOO_LARGE");
    const missing = await post(`${server.url}/nowhere`, {});
    assert.equal(missing.status, 404);
    const body = (await missing.json()) as ErrorBody;
    assert.equal(body.error.code, "NOT_FOUND");
    assert.match(body.error.message, /No route POST \/nowhere; this server answers POST \/echo/);
    // A path another method takes: 405 with Allow.
    const wrongMethod = await fetch(url);
    assert.equal(wrongMethod.status, 405);
    assert.equal(wrongMethod.headers.get("allow"), "POST");
    assert.match(
      ((await wrongMethod.json()) as ErrorBody).error.message,
      /GET \/echo is not allowed; it takes POST/,
    );
    const infer = await fetch(`${server.url}/v2/health/ready`, { method: "POST" });
    assert.equal(infer.status, 405);
    assert.equal(infer.headers.get("allow"), "GET, HEAD");
    // Under /v2, in the inference protocol's envelope.
    const oip = await fetch(`${server.url}/v2/nowhere`);
    assert.equal(oip.status, 404);
    const oipBody = (await oip.json()) as { error: string; code: string; requestId: string };
    assert.equal(oipBody.code, "NOT_FOUND");
    assert.match(oipBody.error, /No route GET \/v2\/nowhere/);
    assert.ok(oipBody.requestId);
  });

  test("http - a failing model is a 500 with its message and no stack trace", async () => {
    const response = await post(url, { mode: "fail", text: "batch 7" });
    assert.equal(response.status, 500);
    const body = (await response.json()) as ErrorBody;
    assert.equal(body.error.code, "EXECUTION_FAILED");
    assert.match(
      body.error.message,
      /Deployment "respond" failed in respond\(\): model exploded on batch 7/,
    );
    assert.equal(body.error.stack, undefined);
    assert.doesNotMatch(JSON.stringify(body), /at .*\.ts:\d+/);
  });

  test("http - a request past requestTimeout is a 504", async () => {
    const response = await post(url, { mode: "slow", text: "", n: 30 });
    assert.equal(response.status, 504);
    assert.equal(((await response.json()) as ErrorBody).error.code, "TIMEOUT");
  });

  test("http - OpenAPI describes the route from the input schema", async () => {
    const doc = (await (await fetch(`${server.url}/openapi.json`)).json()) as {
      openapi: string;
      paths: Record<
        string,
        {
          post?: {
            requestBody: {
              content: Record<
                string,
                { schema: { properties?: Record<string, unknown>; required?: string[] } }
              >;
            };
          };
        }
      >;
    };
    assert.equal(doc.openapi, "3.1.0");
    const schema = doc.paths["/echo"]?.post?.requestBody.content["application/json"]?.schema;
    assert.deepEqual(Object.keys(schema?.properties ?? {}).sort(), ["file", "mode", "n", "text"]);
    assert.deepEqual(schema?.required?.sort(), ["mode", "text"]);
    assert.ok(doc.paths["/v2/models/{name}/infer"]);
  });
});

describe("HTTP ingress: back-pressure and debug", { timeout: 60_000 }, () => {
  test("http - back-pressure is a 503 with Retry-After", async () => {
    await using server = await serve(
      app.withOptions({ respond: { maxOngoingRequests: 1, maxQueuedRequests: 1 } }),
    );
    const responses = await Promise.all(
      Array.from({ length: 5 }, () => post(`${server.url}/echo`, { mode: "slow", text: "", n: 3 })),
    );
    const statuses = responses.map((r) => r.status).sort();
    assert.deepEqual(statuses, [200, 200, 503, 503, 503]);
    const shed = responses.find((r) => r.status === 503)!;
    assert.equal(shed.headers.get("retry-after"), "1");
    assert.equal(((await shed.json()) as ErrorBody).error.code, "BACK_PRESSURE");
  });

  test("http - back-pressure further on (a deployment's handle call to a full one, not caught) is also a 503 with Retry-After, naming that deployment", async () => {
    await using server = await serve(
      relayApp.withOptions({ fragile: { maxOngoingRequests: 1, maxQueuedRequests: 1 } }),
    );
    const responses = await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        fetch(`${server.url}/relay`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-request-id": `r${i}` },
          body: "300",
        }),
      ),
    );
    assert.deepEqual(responses.map((r) => r.status).sort(), [200, 200, 503, 503, 503]);
    const shed = responses.find((r) => r.status === 503)!;
    assert.equal(shed.headers.get("retry-after"), "1");
    const body = (await shed.json()) as ErrorBody;
    assert.equal(body.error.code, "BACK_PRESSURE");
    assert.match(body.error.message, /Deployment "fragile" is overloaded/);
    assert.match(body.error.requestId ?? "", /^r\d$/);
  });

  test("http - with debug on, a 500 carries the stack", async () => {
    await using server = await serve(app, { debug: true });
    const body = (await (
      await post(`${server.url}/echo`, { mode: "fail", text: "x" })
    ).json()) as ErrorBody;
    assert.match(body.error.stack ?? "", /GraphExecutionError/);
  });

  test("http - every log line of a request carries its request id", async () => {
    const lines: string[] = [];
    await using server = await serve(app, {
      logLevel: "info",
      logStream: { write: (line) => void lines.push(line) },
    });
    await post(`${server.url}/echo`, { mode: "fail", text: "x" }, { "x-request-id": "trace-7" });
    const entries = lines.map(
      (line) => JSON.parse(line) as { requestId?: string; application?: string; msg: string },
    );
    const ofRequest = entries.filter((e) => e.requestId !== undefined || /request/.test(e.msg));
    assert.ok(ofRequest.length >= 3, JSON.stringify(entries.map((e) => e.msg)));
    for (const entry of ofRequest) {
      assert.equal(entry.requestId, "trace-7", JSON.stringify(entry));
      assert.equal(entry.application, "echo", JSON.stringify(entry));
    }
    const failed = entries.find((e) => e.msg === "request failed") as
      { err: { message: string; code: string; causedBy: { message: string } } } | undefined;
    assert.ok(failed);
    // The cause's message once (pino's serializer wrote "…: model exploded on x: model exploded on x").
    assert.equal(
      failed.err.message,
      'Deployment "respond" failed in respond(): model exploded on x',
    );
    assert.equal(failed.err.code, "EXECUTION_FAILED");
    assert.equal(failed.err.causedBy.message, "model exploded on x");
  });

  test("http - raw image bytes and multipart files are decoded to RGB tensors", async () => {
    await using server = await serve(imageApp);
    const png = await sharp({
      create: { width: 4, height: 3, channels: 4, background: { r: 200, g: 10, b: 30, alpha: 1 } },
    })
      .png()
      .toBuffer();
    const raw = await fetch(`${server.url}/pixels`, {
      method: "POST",
      headers: { "content-type": "image/png" },
      body: png,
    });
    assert.deepEqual(await raw.json(), { shape: [3, 4, 3], firstPixel: [200, 10, 30] });
    const form = new FormData();
    form.append("image", new Blob([png]), "red.png");
    const multipart = await fetch(`${server.url}/pixels`, { method: "POST", body: form });
    assert.deepEqual(await multipart.json(), { shape: [3, 4, 3], firstPixel: [200, 10, 30] });
    const notImage = await fetch(`${server.url}/pixels`, {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body: new Uint8Array([1, 2, 3]),
    });
    assert.equal(notImage.status, 422);
    assert.match(
      ((await notImage.json()) as ErrorBody).error.message,
      /image: not a decodable image/,
    );
  });
});
