import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { serve } from "../serve.js";
import * as grpc from "@grpc/grpc-js";
import { loadInferenceService } from "tributary/internal";
import { app } from "../fixtures/traced-app.js";
import { app as oipApp } from "../fixtures/oip-app.js";
import { app as sleepyApp } from "../fixtures/sleepy-app.js";
import { type Client, rpc } from "../ingress/grpc-client.js";
import { otlpReceiver, type ReceivedSpan } from "./otlp-receiver.js";

const SERVER = 2;
const ERROR = 2;
const TRACE_ONE = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACE_TWO = "5bf92f3577b34da6a3ce929d0e0e4737";
const TRACE_ROUTE_ONE = "6bf92f3577b34da6a3ce929d0e0e4738";
const TRACE_ROUTE_TWO = "7bf92f3577b34da6a3ce929d0e0e4739";
const CLIENT_SPAN = "00f067aa0ba902b7";

describe(
  "tracing: one request is one trace across threads and processes",
  { timeout: 240_000 },
  () => {
    let receiver: Awaited<ReturnType<typeof otlpReceiver>>;
    before(async () => {
      receiver = await otlpReceiver();
    });
    after(() => receiver.close());

    /** The spans of one trace once `count` of them arrived. */
    async function traceOf(traceId: string, count: number): Promise<ReceivedSpan[]> {
      const deadline = Date.now() + 15_000;
      for (;;) {
        const spans = receiver.spans.filter((s) => s.traceId === traceId);
        if (spans.length >= count || Date.now() > deadline) return spans;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }

    for (const workers of [1, 2]) {
      test(`tracing - an HTTP request's traceparent is continued: the server span, one span per deployment call in the graph's shape, the user's own span under its deployment's (front door ${workers === 1 ? "in the main thread" : "in worker processes"})`, async () => {
        const TRACE_ID = workers === 1 ? TRACE_ONE : TRACE_TWO;
        const server = await serve(app, {
          tracing: { otlpEndpoint: receiver.url, serviceName: "traced-test" },
          http: { workers },
        });
        let body: { text: string; sawActiveSpan: boolean };
        try {
          const response = await fetch(`${server.url}/traced`, {
            method: "POST",
            headers: {
              "content-type": "application/json",
              traceparent: `00-${TRACE_ID}-${CLIENT_SPAN}-01`,
              "x-request-id": "trace-me",
            },
            body: JSON.stringify({ text: "hi" }),
          });
          assert.equal(response.status, 200);
          body = (await response.json()) as typeof body;
        } finally {
          await server.close(); // flushes every exporter
        }
        assert.deepEqual(body, { text: "<HI|HI>", sawActiveSpan: true });
        // http, split, left, right, join, the user's span, helper
        const spans = await traceOf(TRACE_ID, 7);
        const names = spans.map((s) => s.name).sort();
        assert.deepEqual(names, [
          "Helper/shout",
          "Join/join",
          "POST /traced",
          "join.user-work",
          "left/call",
          "right/call",
          "split/call",
        ]);
        const byName = new Map(spans.map((s) => [s.name, s]));
        const http = byName.get("POST /traced")!;
        assert.equal(http.parentSpanId, CLIENT_SPAN);
        assert.equal(http.kind, SERVER);
        assert.equal(http.attributes["http.request.method"], "POST");
        assert.equal(http.attributes["http.route"], "/traced");
        assert.equal(http.attributes["http.response.status_code"], 200);
        assert.equal(http.service, "traced-test");
        // The graph's calls are children of the front door's span; the handle call is the child of
        // the user's span inside Join (a process replica), which is the child of Join's span.
        for (const name of ["split/call", "left/call", "right/call", "Join/join"]) {
          const span = byName.get(name)!;
          assert.equal(span.parentSpanId, http.spanId, name);
          assert.equal(span.kind, SERVER, name);
          assert.equal(span.attributes["tributary.outcome"], "ok", name);
          assert.equal(span.attributes["tributary.application"], "traced", name);
          assert.equal(span.attributes["tributary.request_id"], "trace-me", name);
          assert.match(String(span.attributes["tributary.replica"]), /^\w+#\d+$/, name);
        }
        const join = byName.get("Join/join")!;
        assert.equal(join.attributes["tributary.deployment"], "Join");
        assert.equal(join.attributes["tributary.method"], "join");
        assert.equal(join.attributes["tributary.replica"], "Join#1");
        const user = byName.get("join.user-work")!;
        assert.equal(user.parentSpanId, join.spanId);
        assert.equal(user.scope, "traced-app");
        const shout = byName.get("Helper/shout")!;
        assert.equal(shout.parentSpanId, user.spanId);
        assert.equal(shout.attributes["tributary.deployment"], "Helper");
        assert.equal(shout.attributes["tributary.method"], "shout");
      });
    }

    for (const workers of [1, 2]) {
      test(`tracing - a route of the application's own runs under its request's server span: a user's span there and the handle calls it makes are in the request's trace, with its request id (front door ${workers === 1 ? "in the main thread" : "in worker processes"})`, async () => {
        const TRACE_ID = workers === 1 ? TRACE_ROUTE_ONE : TRACE_ROUTE_TWO;
        const server = await serve(app, {
          tracing: { otlpEndpoint: receiver.url, serviceName: "traced-test" },
          http: { workers },
        });
        let body: { text: string; sawActiveSpan: boolean };
        try {
          const response = await fetch(`${server.url}/traced/shout/hey`, {
            headers: {
              traceparent: `00-${TRACE_ID}-${CLIENT_SPAN}-01`,
              "x-request-id": "route-me",
            },
          });
          assert.equal(response.status, 200);
          body = (await response.json()) as typeof body;
        } finally {
          await server.close();
        }
        assert.deepEqual(body, { text: "HEY", sawActiveSpan: true });
        const spans = await traceOf(TRACE_ID, 3);
        const byName = new Map(spans.map((s) => [s.name, s]));
        assert.deepEqual([...byName.keys()].sort(), [
          "GET /traced/shout/:text",
          "Helper/shout",
          "route.user-work",
        ]);
        const http = byName.get("GET /traced/shout/:text")!;
        assert.equal(http.parentSpanId, CLIENT_SPAN);
        const user = byName.get("route.user-work")!;
        assert.equal(user.parentSpanId, http.spanId);
        const shout = byName.get("Helper/shout")!;
        assert.equal(shout.parentSpanId, user.spanId);
        assert.equal(shout.attributes["tributary.request_id"], "route-me");
      });
    }

    test("tracing - a failing deployment call is a span with outcome error, the exception recorded, and the server span says 500", async () => {
      const server = await serve(app, { tracing: { otlpEndpoint: receiver.url } });
      const traceId = "0af7651916cd43dd8448eb211c80319c";
      try {
        const response = await fetch(`${server.url}/traced`, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            traceparent: `00-${traceId}-b7ad6b7169203331-01`,
          },
          body: JSON.stringify({ text: "hi", fail: true }),
        });
        assert.equal(response.status, 500);
      } finally {
        await server.close();
      }
      const spans = await traceOf(traceId, 2);
      assert.deepEqual(spans.map((s) => s.name).sort(), ["POST /traced", "split/call"]);
      const split = spans.find((s) => s.name === "split/call")!;
      assert.equal(split.attributes["tributary.outcome"], "error");
      assert.equal(split.status, ERROR);
      assert.deepEqual(split.events, ["exception"]);
      const http = spans.find((s) => s.name === "POST /traced")!;
      assert.equal(http.attributes["http.response.status_code"], 500);
      assert.equal(http.status, ERROR);
    });

    test("tracing - a client that hangs up mid-request still gets its server span, an error, with the deployment's under it", async () => {
      const server = await serve(sleepyApp, { tracing: { otlpEndpoint: receiver.url } });
      const traceId = "1af7651916cd43dd8448eb211c80319d";
      try {
        await assert.rejects(
          fetch(`${server.url}/nap`, {
            method: "POST",
            headers: {
              "content-type": "application/json",
              traceparent: `00-${traceId}-b7ad6b7169203331-01`,
            },
            body: JSON.stringify({ ms: 3_000 }),
            signal: AbortSignal.timeout(300),
          }),
        );
        await new Promise((resolve) => setTimeout(resolve, 200));
      } finally {
        await server.close();
      }
      // Before, only the deployment's span came: its parent was never ended.
      const spans = await traceOf(traceId, 2);
      const http = spans.find((s) => s.name === "POST /nap");
      assert.ok(http, `spans: ${spans.map((s) => s.name).join(", ")}`);
      assert.equal(http.status, ERROR);
      assert.equal(http.parentSpanId, "b7ad6b7169203331");
      const nap = spans.find((s) => s.name !== "POST /nap")!;
      assert.equal(nap.parentSpanId, http.spanId);
    });

    test("tracing - without a traceparent a request starts a trace of its own", async () => {
      const server = await serve(app, { tracing: { otlpEndpoint: receiver.url } });
      const before = new Set(receiver.spans.map((s) => s.traceId));
      try {
        const response = await fetch(`${server.url}/traced`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ text: "new" }),
        });
        assert.equal(response.status, 200);
      } finally {
        await server.close();
      }
      const deadline = Date.now() + 15_000;
      let fresh: ReceivedSpan[] = [];
      while (Date.now() < deadline) {
        fresh = receiver.spans.filter((s) => !before.has(s.traceId));
        if (fresh.length >= 7) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.equal(fresh.length, 7);
      assert.equal(new Set(fresh.map((s) => s.traceId)).size, 1, "one trace");
      const http = fresh.find((s) => s.name === "POST /traced")!;
      assert.equal(http.parentSpanId, "");
    });

    test("tracing - a gRPC ModelInfer with traceparent metadata is continued: the RPC's server span, then the deployment's", async () => {
      const server = await serve(oipApp, {
        grpc: { port: 0 },
        tracing: { otlpEndpoint: receiver.url },
      });
      const traceId = "11111111111111111111111111111111";
      const Service = loadInferenceService();
      const client = new Service(
        `127.0.0.1:${server.grpcPort}`,
        grpc.credentials.createInsecure(),
      ) as unknown as Client;
      try {
        const metadata = new grpc.Metadata();
        metadata.set("traceparent", `00-${traceId}-2222222222222222-01`);
        const infer = client.ModelInfer as unknown as (
          request: unknown,
          metadata: grpc.Metadata,
          callback: (error: grpc.ServiceError | null) => void,
        ) => void;
        await new Promise<void>((resolve, reject) =>
          infer.call(client, INFER_REQUEST, metadata, (error) =>
            error ? reject(error) : resolve(),
          ),
        );
        assert.deepEqual(await rpc(client, "ServerLive", {}), { live: true });
      } finally {
        client.close();
        await server.close();
      }
      const spans = await traceOf(traceId, 2);
      assert.deepEqual(spans.map((s) => s.name).sort(), [
        "inference.GRPCInferenceService/ModelInfer",
        "scaleRows/call",
      ]);
      const rpcSpan = spans.find((s) => s.name.startsWith("inference."))!;
      assert.equal(rpcSpan.parentSpanId, "2222222222222222");
      assert.equal(rpcSpan.kind, SERVER);
      assert.equal(rpcSpan.attributes["rpc.system"], "grpc");
      assert.equal(rpcSpan.attributes["rpc.grpc.status_code"], 0);
      const call = spans.find((s) => s.name === "scaleRows/call")!;
      assert.equal(call.parentSpanId, rpcSpan.spanId);
      assert.equal(call.attributes["tributary.request_id"], "g-trace");
    });

    test("tracing - an otlpEndpoint that is not an http(s) URL is refused before anything starts", async () => {
      await assert.rejects(serve(app, { tracing: { otlpEndpoint: "collector:4318" } }), {
        name: "OptionsError",
        message: /tracing\.otlpEndpoint must be an http\(s\) URL/,
      });
    });
  },
);

const INFER_REQUEST = {
  model_name: "scaler",
  id: "g-trace",
  inputs: [
    { name: "x", datatype: "FP32", shape: [1, 2], contents: { fp32_contents: [2, 4] } },
    { name: "scale", datatype: "FP64", shape: [1], contents: { fp64_contents: [3] } },
  ],
};
