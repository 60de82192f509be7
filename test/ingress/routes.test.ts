import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { run, type Server } from "tributary";
import { app, takeover, type Store } from "../fixtures/routes-app.js";
import { app as tickerApp, type Ticker } from "../fixtures/stream-app.js";
import { eventually } from "../runtime/eventually.js";
import type * as grpc from "@grpc/grpc-js";
import { inferenceClient } from "./grpc-client.js";

describe("an application's own routes", { timeout: 60_000 }, () => {
  let server: Server;
  before(async () => {
    server = await run(app, { port: 0, logLevel: "fatal" });
  });
  after(() => server.close());

  test("routes - a GET with path and query parameters answers with its own status and headers", async () => {
    const found = await fetch(`${server.url}/api/items/2?case=upper`);
    assert.equal(found.status, 200);
    assert.equal(found.headers.get("x-item"), "2");
    assert.ok(found.headers.get("x-request-id"));
    assert.deepEqual(await found.json(), { id: 2, name: "TWO" });

    const missing = await fetch(`${server.url}/api/items/7`);
    assert.equal(missing.status, 404);
    assert.match(
      ((await missing.json()) as { error: { message: string } }).error.message,
      /No item 7/,
    );

    const created = await fetch(`${server.url}/api/items`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "three" }),
    });
    assert.equal(created.status, 201);
    assert.equal(created.headers.get("location"), "/api/items/3");
    assert.deepEqual(await created.json(), { created: "three" });
  });

  test("routes - params, query and body are validated with the error envelope and the failing paths", async () => {
    const badParam = await fetch(`${server.url}/api/items/zero`, {
      headers: { "x-request-id": "req-1" },
    });
    assert.equal(badParam.status, 422);
    const body = (await badParam.json()) as {
      error: { code: string; requestId: string; issues: { path: string }[] };
    };
    assert.equal(body.error.code, "VALIDATION_FAILED");
    assert.equal(body.error.requestId, "req-1");
    assert.deepEqual(
      body.error.issues.map((i) => i.path),
      ["params.id"],
    );

    const badQuery = await fetch(`${server.url}/api/items/1?case=title`);
    assert.equal(badQuery.status, 422);
    assert.deepEqual(
      ((await badQuery.json()) as { error: { issues: { path: string }[] } }).error.issues.map(
        (i) => i.path,
      ),
      ["query.case"],
    );

    const badBody = await fetch(`${server.url}/api/items`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "" }),
    });
    assert.equal(badBody.status, 422);
    assert.deepEqual(
      ((await badBody.json()) as { error: { issues: { path: string }[] } }).error.issues.map(
        (i) => i.path,
      ),
      ["body.name"],
    );

    const broken = await fetch(`${server.url}/api/boom`);
    assert.equal(broken.status, 500);
    const failure = (await broken.json()) as { error: { code: string; message: string } };
    assert.equal(failure.error.code, "INTERNAL");
    assert.doesNotMatch(failure.error.message, /route broke/, "no detail without debug");
  });

  test("routes - a text answer, bytes, and a stream of a deployment's items", async () => {
    const hello = await fetch(`${server.url}/api/hello`, { headers: { "x-user": "ada" } });
    assert.equal(hello.status, 200);
    assert.match(hello.headers.get("content-type") ?? "", /^text\/plain/);
    assert.equal(await hello.text(), "hello ada");

    const bytes = await fetch(`${server.url}/api/bytes`);
    assert.equal(bytes.headers.get("content-type"), "application/octet-stream");
    assert.deepEqual([...new Uint8Array(await bytes.arrayBuffer())], [0, 1, 2, 255]);

    const counted = await fetch(`${server.url}/api/count/5`);
    assert.equal(counted.status, 200);
    assert.equal(counted.headers.get("transfer-encoding"), "chunked");
    assert.equal(await counted.text(), "0\n1\n2\n3\n4\n");

    // app.respond answers as POST {routePrefix} does: a stream as Server-Sent Events.
    const events = await fetch(`${server.url}/api/events/3`);
    assert.match(events.headers.get("content-type") ?? "", /^text\/event-stream/);
    assert.equal(
      await events.text(),
      "data: 0\n\ndata: 1\n\ndata: 2\n\nevent: end\ndata: null\n\n",
    );
  });

  test("routes - an error with a status of its own (thrown with statusCode, or sent after reply.code()) keeps it and its message; a 500 says only that it failed", async () => {
    const answer = async (path: string) => {
      const response = await fetch(`${server.url}/api${path}`);
      const body = (await response.json()) as { error: { code: string; message: string } };
      return [response.status, body.error.code, body.error.message];
    };
    assert.deepEqual(await answer("/status/409"), [409, "BAD_REQUEST", "thrown 409"]);
    assert.deepEqual(await answer("/status/404"), [404, "NOT_FOUND", "thrown 404"]);
    assert.deepEqual(await answer("/status/503"), [503, "INTERNAL", "thrown 503"]);
    assert.deepEqual(await answer("/status/500"), [500, "INTERNAL", "Internal server error."]);
    assert.deepEqual(await answer("/sent/429"), [429, "BAD_REQUEST", "sent 429"]);
    assert.deepEqual(await answer("/sent/502"), [502, "INTERNAL", "sent 502"]);
  });

  test("routes - the default POST {routePrefix} stays, and unknown routes list the routes", async () => {
    const posted = await fetch(`${server.url}/api`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ id: 1 }),
    });
    assert.equal(posted.status, 200);
    assert.equal(await posted.json(), "one");

    const unknown = await fetch(`${server.url}/api/nothing`);
    assert.equal(unknown.status, 404);
    const message = ((await unknown.json()) as { error: { message: string } }).error.message;
    assert.match(message, /GET \/api\/items\/:id/);
    assert.match(message, /POST \/api\b/);
  });

  test("routes - /openapi.json lists every route with its zod schemas", async () => {
    const doc = (await (await fetch(`${server.url}/openapi.json`)).json()) as {
      paths: Record<string, Record<string, Record<string, unknown>>>;
    };
    const item = doc.paths["/api/items/{id}"]?.get as {
      parameters: { name: string; in: string; required: boolean; schema: { enum?: string[] } }[];
      responses: Record<string, { content?: Record<string, { schema: { properties?: object } }> }>;
    };
    assert.ok(item, `paths: ${Object.keys(doc.paths).join(", ")}`);
    assert.deepEqual(
      item.parameters.map((p) => [p.name, p.in, p.required]),
      [
        ["id", "path", true],
        ["case", "query", false],
      ],
    );
    assert.deepEqual(item.parameters[1]!.schema.enum, ["upper", "lower"]);
    assert.deepEqual(
      Object.keys(item.responses["200"]!.content!["application/json"]!.schema.properties!),
      ["id", "name"],
    );
    const create = doc.paths["/api/items"]?.post as {
      requestBody: { content: Record<string, { schema: { required: string[] } }> };
    };
    assert.deepEqual(create.requestBody.content["application/json"]!.schema.required, ["name"]);
    assert.ok(doc.paths["/api/hello"]?.get);
    assert.ok(doc.paths["/api/count/{n}"]?.get);
    assert.ok(doc.paths["/api"]?.post, "the default route");
    assert.ok(doc.paths["/v2/models/{name}/infer"]?.post);
  });
});

test(
  "routes - a route of its own at POST / takes the place of the default one",
  { timeout: 60_000 },
  async () => {
    await using server = await run(takeover, { port: 0, logLevel: "fatal" });
    const answer = await fetch(`${server.url}/take`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ n: "2" }),
    });
    assert.equal(answer.status, 202);
    assert.deepEqual(await answer.json(), { own: "two" });
    const doc = (await (await fetch(`${server.url}/openapi.json`)).json()) as {
      paths: Record<string, { post?: { summary: string } }>;
    };
    assert.match(doc.paths["/take"]?.post?.summary ?? "", /application takeover/);
  },
);

test(
  "routes - front-door workers serve the routes too, with handles of their own",
  { timeout: 90_000 },
  async () => {
    await using server = await run(app, { port: 0, logLevel: "fatal", http: { workers: 2 } });
    const answers = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const found = await fetch(`${server.url}/api/items/1?case=upper`);
        return [found.status, await found.json()] as const;
      }),
    );
    assert.deepEqual(
      answers,
      Array.from({ length: 8 }, () => [200, { id: 1, name: "ONE" }]),
    );
    const counted = await fetch(`${server.url}/api/count/3`);
    assert.equal(await counted.text(), "0\n1\n2\n");
  },
);

test(
  "routes - a client that leaves a route's stream of a deployment, before its first item or after, stops it",
  { timeout: 60_000 },
  async () => {
    await using server = await run(tickerApp, { port: 0, logLevel: "fatal" });
    const ticker = server.getHandle<Ticker>("ticker");
    // Gone before the first tick (at 500 ms), and gone after two (every 50 ms).
    for (const [ms, leaveAfter, stopped] of [
      [500, 150, 1],
      [50, 130, 2],
    ] as const) {
      const controller = new AbortController();
      setTimeout(() => controller.abort(), leaveAfter);
      // (Headers come with the first item: a client gone before it never sees a response.)
      await fetch(`${server.url}/ticker/sse/${ms}`, { signal: controller.signal })
        .then((response) => response.text())
        .catch(() => undefined);
      await eventually(
        async () => (await ticker.stops()).stopped === stopped,
        5_000,
        `stream ${stopped} stopped`,
      );
    }
    const ongoing = async () =>
      Object.values((await server.status()).applications)[0]!.deployments.ticker!.ongoing;
    await eventually(async () => (await ongoing()) === 0, 5_000, "no call left running");
  },
);

for (const workers of [1, 2]) {
  test(
    `routes - a shutdown lets a request in a route's own code finish, its handle calls and app.call included (front door ${workers === 1 ? "in the main thread" : "in worker processes"})`,
    { timeout: 60_000 },
    async () => {
      const server = await run(app, { port: 0, logLevel: "fatal", http: { workers } });
      try {
        // One calls a deployment through a handle, the other the whole graph (app.call).
        const requests = ["later", "later-graph"].map((route) =>
          fetch(`${server.url}/api/${route}/600`),
        );
        const store = server.getHandle<Store>("store");
        await eventually(async () => (await store.startedSoFar()) === 2, 10_000, "both started");
        const closed = server.close();
        for (const response of await Promise.all(requests)) {
          assert.equal(response.status, 200);
          assert.deepEqual(await response.json(), { name: "one" });
        }
        await closed;
      } finally {
        await server.close();
      }
    },
  );
}

test(
  "routes - a multipart body a route reads itself is bounded by bodyLimit as a whole, not only part by part",
  { timeout: 60_000 },
  async () => {
    await using server = await run(app, { port: 0, logLevel: "fatal", bodyLimit: 1000 });
    const upload = (files: number) => {
      const form = new FormData();
      for (let i = 0; i < files; i++) form.append(`f${i}`, new Blob([new Uint8Array(900)]), "x");
      return fetch(`${server.url}/api/upload`, { method: "POST", body: form });
    };
    const small = await upload(1);
    assert.equal(small.status, 200);
    assert.deepEqual(await small.json(), { parts: 1, bytes: 900 });
    // 400 parts of 900 bytes: each within the limit, 360 KB together.
    const large = await upload(400);
    assert.equal(large.status, 413);
    assert.equal(
      ((await large.json()) as { error: { code: string } }).error.code,
      "PAYLOAD_TOO_LARGE",
    );
  },
);

test(
  "routes - a shutdown does not wait for an idle gRPC stream a client keeps open",
  { timeout: 60_000 },
  async () => {
    const server = await run(app, { port: 0, logLevel: "fatal", grpc: { port: 0 } });
    const client = inferenceClient(server.grpcPort);
    try {
      const stream = (
        client as unknown as { ModelStreamInfer(): grpc.ClientDuplexStream<unknown, unknown> }
      ).ModelStreamInfer();
      stream.on("error", () => undefined);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const started = Date.now();
      await server.close();
      // Waiting for the stream would take the whole gracefulShutdownTimeout (20 s).
      const took = Date.now() - started;
      assert.ok(took < 10_000, `close() took ${took} ms`);
    } finally {
      client.close();
      await server.close();
    }
  },
);
