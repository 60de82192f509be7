import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import type { Server } from "tributary";
import { loadInferenceService } from "tributary/internal";
import { app } from "../fixtures/http-app.js";
import { serve } from "../serve.js";

/** Sends raw bytes over TCP and resolves with what came back before the server closed (or `ms`). */
function rawHttp(port: number, chunks: (string | Buffer)[], ms = 3_000): Promise<string> {
  return new Promise((resolve) => {
    const socket: Socket = connect(port, "127.0.0.1");
    let received = "";
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(received);
    }, ms);
    socket.on("data", (data) => (received += data.toString("latin1")));
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(received);
    });
    socket.on("error", () => undefined);
    socket.on("connect", () => {
      for (const chunk of chunks) socket.write(chunk);
    });
  });
}

const statusOf = (response: string): number =>
  Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1] ?? 0);

describe("hostile input", { timeout: 90_000 }, () => {
  let server: Server;
  let port: number;

  before(async () => {
    server = await serve(app, { grpc: { port: 0 }, readTimeout: "1s" });
    port = Number(new URL(server.url).port);
  });
  after(() => server.close());

  const json = (body: string | Buffer, headers: Record<string, string> = {}) =>
    fetch(`${server.url}/echo`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body,
    });

  const corpus: [string, () => Promise<number>][] = [
    [
      "deeply nested arrays",
      async () => (await json("[".repeat(100_000) + "]".repeat(100_000))).status,
    ],
    [
      "deeply nested objects",
      async () => (await json('{"a":'.repeat(50_000) + "1" + "}".repeat(50_000))).status,
    ],
    [
      "a __proto__ key",
      async () => (await json('{"__proto__":{"polluted":1},"mode":"json","text":"x"}')).status,
    ],
    [
      "a constructor.prototype key",
      async () =>
        (await json('{"constructor":{"prototype":{"polluted":1}},"mode":"json","text":"x"}'))
          .status,
    ],
    [
      "invalid UTF-8",
      async () =>
        (
          await json(
            Buffer.from([
              ...Buffer.from('{"mode":"json","text":"'),
              0xff,
              0xfe,
              0xc3,
              ...Buffer.from('"}'),
            ]),
          )
        ).status,
    ],
    [
      "a body that is not JSON at all",
      async () => (await json(Buffer.from([0, 1, 2, 3, 255]))).status,
    ],
    ["an empty JSON body", async () => (await json("")).status],
    [
      "a bogus charset",
      async () =>
        (
          await json('{"mode":"json","text":"x"}', {
            "content-type": "application/json; charset=utf-999",
          })
        ).status,
    ],
    [
      "a multipart body with a __proto__ field",
      async () => {
        const form = new FormData();
        form.append("__proto__", "polluted");
        form.append("mode", "json");
        form.append("text", "x");
        return (await fetch(`${server.url}/echo`, { method: "POST", body: form })).status;
      },
    ],
    [
      "a truncated multipart body",
      async () =>
        (
          await fetch(`${server.url}/echo`, {
            method: "POST",
            headers: { "content-type": "multipart/form-data; boundary=xyz" },
            body: '--xyz\r\nContent-Disposition: form-data; name="mode"\r\n\r\njs',
          })
        ).status,
    ],
    [
      "a tensor whose shape and data disagree",
      async () =>
        (
          await fetch(`${server.url}/v2/models/echo/infer`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({
              inputs: [{ name: "text", datatype: "BYTES", shape: [3], data: ["a"] }],
            }),
          })
        ).status,
    ],
    [
      "an unknown datatype",
      async () =>
        (
          await fetch(`${server.url}/v2/models/echo/infer`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({
              inputs: [{ name: "text", datatype: "STRING", shape: [1], data: ["a"] }],
            }),
          })
        ).status,
    ],
    [
      "an enormous shape",
      async () =>
        (
          await fetch(`${server.url}/v2/models/echo/infer`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({
              inputs: [{ name: "n", datatype: "FP32", shape: [1e9, 1e9], data: [] }],
            }),
          })
        ).status,
    ],
    [
      "an input named constructor",
      async () =>
        (
          await fetch(`${server.url}/v2/models/echo/infer`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({
              inputs: [{ name: "constructor", datatype: "BYTES", shape: [1], data: ["x"] }],
            }),
          })
        ).status,
    ],
    [
      "inputs that are not an array",
      async () =>
        (
          await fetch(`${server.url}/v2/models/echo/infer`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: '{"inputs":{"length":1e9}}',
          })
        ).status,
    ],
    [
      "a Content-Length larger than the body",
      async () =>
        statusOf(
          await rawHttp(
            port,
            [
              'POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"mode"',
            ],
            4_000,
          ),
        ) || 408,
    ],
    [
      "two Content-Length headers",
      async () =>
        statusOf(
          await rawHttp(port, [
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\n{}",
          ]),
        ),
    ],
    ["a malformed request line", async () => statusOf(await rawHttp(port, ["GARBAGE\r\n\r\n"]))],
    [
      "huge headers",
      async () =>
        statusOf(
          await rawHttp(port, [
            `GET /v2 HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(100_000)}\r\n\r\n`,
          ]),
        ),
    ],
  ];

  for (const [name, send] of corpus) {
    test(`hostile - ${name} gets a 4xx, not a crash`, async () => {
      const status = await send();
      assert.ok(status >= 400 && status < 500, `status ${status}`);
    });
  }

  test("hostile - a slow sender (slowloris) is cut off while others are served", async () => {
    const socket = connect(port, "127.0.0.1");
    socket.on("error", () => undefined);
    const closed = new Promise<number>((resolve) => socket.on("close", () => resolve(Date.now())));
    const started = Date.now();
    socket.write("POST /echo HTTP/1.1\r\nHost: x\r\n");
    const drip = setInterval(() => socket.write("X-Slow: a\r\n"), 200);
    try {
      const ok = await json('{"mode":"json","text":"meanwhile"}');
      assert.equal(ok.status, 200, "other clients are served meanwhile");
      const at = await Promise.race([
        closed,
        new Promise<number>((r) => setTimeout(() => r(0), 10_000)),
      ]);
      assert.ok(at > 0 && at - started < 8_000, "the slow connection was closed by the server");
    } finally {
      clearInterval(drip);
      socket.destroy();
    }
  });

  test("hostile - truncated and garbage protobuf over gRPC get an error status", async () => {
    const Service = loadInferenceService();
    const client = new Service(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createInsecure());
    try {
      for (const bytes of [
        Buffer.from([0x0a, 0x10, 0x73]),
        Buffer.from([0xff, 0xff, 0xff, 0xff]),
        Buffer.from([0x2a, 0x05, 0x0a]),
      ]) {
        const error = await new Promise<grpc.ServiceError | null>((resolve) =>
          client.makeUnaryRequest(
            "/inference.GRPCInferenceService/ModelInfer",
            (b: Buffer) => b,
            (b: Buffer) => b,
            bytes,
            (e) => resolve(e),
          ),
        );
        assert.ok(
          error && error.code !== grpc.status.OK,
          `bytes ${bytes.toString("hex")} were accepted`,
        );
      }
    } finally {
      client.close();
    }
  });

  test("hostile - afterwards the server answers correctly and no prototype was polluted", async () => {
    const response = await json('{"mode":"json","text":"still here","n":3}');
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { echo: "still here", n: 3, fileBytes: null });
    assert.equal(({} as { polluted?: unknown }).polluted, undefined);
    assert.ok(!Object.prototype.hasOwnProperty.call(Object.prototype, "polluted"));
    const status = (await server.status()).applications.echo!;
    assert.equal(status.status, "RUNNING");
    assert.equal(
      status.deployments.respond?.replicas[0]?.id,
      "respond#1",
      "the replica never died",
    );
  });
});
