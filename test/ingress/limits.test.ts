import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import type { Server } from "tributary";
import { app } from "../fixtures/http-app.js";
import { serve } from "../serve.js";
import { scrape, total } from "../observability/scrape.js";

const LIMIT = 1024 * 1024;

interface ErrorBody {
  error: { code: string; message: string; requestId: string };
}

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => resolve(socket));
    socket.on("error", reject);
  });
}

describe("front door limits", { timeout: 60_000 }, () => {
  let server: Server;
  let port: number;

  before(async () => {
    server = await serve(app, { bodyLimit: LIMIT });
    port = Number(new URL(server.url).port);
  });
  after(() => server.close());

  const post = (body: string | FormData, headers: Record<string, string> = {}) =>
    fetch(`${server.url}/echo`, { method: "POST", headers, body });

  test("limits - multipart parts together are bounded by bodyLimit: 413", async () => {
    const form = new FormData();
    form.append("mode", "json");
    form.append("text", "x");
    for (let i = 0; i < 3; i++)
      form.append(`file${i}`, new Blob([new Uint8Array(0.6 * LIMIT)]), `f${i}.bin`);
    const response = await post(form);
    assert.equal(response.status, 413);
    assert.equal(((await response.json()) as ErrorBody).error.code, "PAYLOAD_TOO_LARGE");
  });

  test("limits - a streamed multipart body is cut off with 413 once past bodyLimit, not read whole", async () => {
    const socket = await open(port);
    let received = "";
    socket.on("data", (d: Buffer) => (received += d.toString("latin1")));
    const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
    socket.on("error", () => undefined);
    const boundary = "xyzzy";
    socket.write(
      `POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=${boundary}\r\nTransfer-Encoding: chunked\r\n\r\n`,
    );
    const chunk = (text: string | Buffer) => {
      const data = Buffer.isBuffer(text) ? text : Buffer.from(text);
      socket.write(`${data.length.toString(16)}\r\n`);
      socket.write(data);
      socket.write("\r\n");
    };
    let sent = 0;
    // Files of half the limit each, up to 100 of them (50 MiB), until the server answers.
    for (let i = 0; i < 100 && received === "" && !socket.destroyed; i++) {
      chunk(
        `--${boundary}\r\nContent-Disposition: form-data; name="f${i}"; filename="f${i}.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`,
      );
      chunk(Buffer.alloc(LIMIT / 2, 7));
      chunk("\r\n");
      sent += LIMIT / 2;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 5_000))]);
    socket.destroy();
    assert.match(received, /^HTTP\/1\.1 413/);
    assert.match(received, /"code":"PAYLOAD_TOO_LARGE"/);
    assert.ok(sent < 10 * LIMIT, `the server read ${sent} bytes before answering`);
  });

  test("limits - a chunked JSON body (no Content-Length) past bodyLimit is 413", async () => {
    // A body with a Content-Length is checked against it before it is read; one without is
    // counted as it streams in.
    const big = JSON.stringify({ mode: "json", text: "x", pad: "y".repeat(LIMIT) });
    const socket = await open(port);
    let received = "";
    socket.on("data", (d: Buffer) => (received += d.toString("latin1")));
    socket.on("error", () => undefined);
    const answered = new Promise<void>((resolve) => {
      socket.on("data", () => received.includes("\r\n\r\n") && resolve());
      socket.on("close", () => resolve());
    });
    socket.write(
      `POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`,
    );
    for (let at = 0; at < big.length; at += 64 * 1024) {
      const piece = Buffer.from(big.slice(at, at + 64 * 1024));
      socket.write(`${piece.length.toString(16)}\r\n`);
      socket.write(piece);
      socket.write("\r\n");
    }
    socket.write("0\r\n\r\n");
    await Promise.race([answered, new Promise((resolve) => setTimeout(resolve, 5_000))]);
    socket.destroy();
    assert.match(received, /^HTTP\/1\.1 413/);
    // With its length declared, the same body is refused before it is read.
    const declared = await post(big, { "content-type": "application/json" });
    assert.equal(declared.status, 413);
  });

  test("limits - JSON nested deeper than 400 is a 400 before it is parsed, even in an unknown field", async () => {
    const nested = (depth: number) =>
      `{"mode":"json","text":"x","extra":${"[".repeat(depth)}${"]".repeat(depth)}}`;
    const deep = await post(nested(1000), { "content-type": "application/json" });
    assert.equal(deep.status, 400);
    const body = (await deep.json()) as ErrorBody;
    assert.equal(body.error.code, "BAD_REQUEST");
    assert.match(body.error.message, /more than 400 deep/);
    // 399 arrays inside the top-level object: 400 levels, the limit itself, is accepted.
    const fine = await post(nested(399), { "content-type": "application/json" });
    assert.equal(fine.status, 200, await fine.clone().text());
    // Brackets inside strings are text, not nesting.
    const text = await post(JSON.stringify({ mode: "json", text: "[".repeat(1200) }), {
      "content-type": "application/json",
    });
    assert.equal(text.status, 422, "a long text is a schema violation (max 1000), not a 400");
  });

  test("limits - what Fastify's router or Node's parser refuses gets the error envelope and a request id", async () => {
    const checked = async (response: Response, status: number, message: RegExp, oip = false) => {
      assert.equal(response.status, status);
      const id = response.headers.get("x-request-id");
      assert.ok(id, "x-request-id is set");
      const body = (await response.json()) as Record<string, unknown>;
      const error = oip ? body : (body.error as Record<string, unknown>);
      assert.equal(error.code, "BAD_REQUEST");
      assert.match(String(oip ? body.error : error.message), message);
      assert.equal(error.requestId, id);
    };
    await checked(await fetch(`${server.url}/echo%ZZ`), 400, /not valid URL encoding/);
    await checked(await fetch(`${server.url}/v2/models/%E0%A4%A`), 400, /not valid URL/, true);
    await checked(
      await fetch(`${server.url}/v2/models/echo/versions/${"v".repeat(2_000)}/infer`, {
        method: "POST",
      }),
      400,
      /longer than 1024 characters/,
      true,
    );
    // A model version past 128 characters (and within the router's 1,024) reaches its own check.
    const long = await fetch(`${server.url}/v2/models/echo/versions/${"v".repeat(129)}/infer`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ inputs: [] }),
    });
    assert.equal(long.status, 422);
    // Node's parser: headers past 16 KiB, a malformed Content-Length; answered, then closed.
    const raw = (text: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = connect(port, "127.0.0.1");
        let out = "";
        socket.on("data", (chunk) => (out += String(chunk)));
        socket.on("close", () => resolve(out));
        socket.on("error", reject);
        socket.write(text);
      });
    for (const [text, status] of [
      [`GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`, 431],
      ["POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400],
    ] as const) {
      const answer = await raw(text);
      assert.match(answer, new RegExp(`^HTTP/1\\.1 ${status} `));
      const id = /x-request-id: (\S+)/.exec(answer)?.[1];
      assert.ok(id, answer);
      const body = JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)) as ErrorBody;
      assert.equal(body.error.code, "BAD_REQUEST");
      assert.equal(body.error.requestId, id);
    }
  });

  test("limits - a text/plain body is 415, not a schema violation", async () => {
    const response = await post('{"mode":"json","text":"x"}', { "content-type": "text/plain" });
    assert.equal(response.status, 415);
    const { error } = (await response.json()) as ErrorBody;
    assert.equal(error.code, "UNSUPPORTED_MEDIA_TYPE");
    // It says what was sent and what would be read.
    assert.match(error.message, /text\/plain/);
    assert.match(error.message, /reads application\/json .*multipart\/form-data/);
  });
});

test(
  "limits - past maxConnections a connection is answered 503 TOO_MANY_CONNECTIONS and closed",
  { timeout: 60_000 },
  async () => {
    await using server = await serve(app, { maxConnections: 5 });
    const port = Number(new URL(server.url).port);
    const idle = await Promise.all(Array.from({ length: 5 }, () => open(port)));
    try {
      await new Promise((resolve) => setTimeout(resolve, 200));
      const extra = await open(port);
      // A request on it is counted as the 503 it was answered (before: 499, as if the
      // client had gone away).
      extra.write(
        `POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`,
      );
      const answer = await new Promise<string>((resolve) => {
        let text = "";
        extra.on("data", (d: Buffer) => (text += d.toString()));
        extra.on("close", () => resolve(text));
        extra.on("error", () => undefined);
        setTimeout(() => resolve(text), 5_000);
      });
      extra.destroy();
      assert.match(answer, /^HTTP\/1\.1 503/);
      assert.match(answer, /"code":"TOO_MANY_CONNECTIONS"/);
      assert.match(answer, /maxConnections/);
      // The id in the header is the body's, as on every other answer.
      const header = /\r\nx-request-id: ([^\r]+)\r\n/.exec(answer)?.[1];
      assert.ok(header, "an x-request-id header");
      assert.match(answer, new RegExp(`"requestId":"${header}"`));
      // One idle connection goes away: a new client is served.
      idle.pop()!.destroy();
      await new Promise((resolve) => setTimeout(resolve, 200));
      const ok = await fetch(`${server.url}/echo`, {
        method: "POST",
        headers: { "content-type": "application/json", connection: "close" },
        body: JSON.stringify({ mode: "json", text: "x" }),
      });
      assert.equal(ok.status, 200);
      const { samples } = await scrape(server.url);
      assert.equal(total(samples, "tributary_http_requests_total", { code: "503" }), 1);
      assert.equal(total(samples, "tributary_http_requests_total", { code: "499" }), 0);
    } finally {
      for (const socket of idle) socket.destroy();
    }
  },
);
