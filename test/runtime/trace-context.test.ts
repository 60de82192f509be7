import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { serve } from "../serve.js";
import { app } from "../fixtures/trace-context-app.js";

// No OpenTelemetry SDK in this process or its replicas: no span is made, and the trace
// context a request came with is still carried through every hop.
describe("trace context without an SDK", { timeout: 60_000 }, () => {
  test("tracing - with no SDK registered, an incoming traceparent reaches every deployment unchanged (a thread, then a process); a malformed one or none gives none", async () => {
    await using server = await serve(app);
    const where = async (traceparent?: string) => {
      const response = await fetch(`${server.url}/where`, {
        method: "POST",
        headers: { "content-type": "application/json", ...(traceparent && { traceparent }) },
        body: JSON.stringify("x"),
      });
      assert.equal(response.status, 200);
      return (await response.json()) as { outer: string | null; inner: string | null };
    };
    const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    assert.deepEqual(await where(traceparent), { outer: traceparent, inner: traceparent });
    assert.deepEqual(await where(), { outer: null, inner: null });
    assert.deepEqual(await where("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01"), {
      outer: null,
      inner: null,
    });
    assert.deepEqual(await where("not a traceparent"), { outer: null, inner: null });
  });
});
