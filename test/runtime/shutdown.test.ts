import assert from "node:assert/strict";
import { connect } from "node:net";
import { test } from "node:test";
import { app } from "../fixtures/sleepy-app.js";
import { serve } from "../serve.js";

const napRequest = (ms: number): string => {
  const body = JSON.stringify({ ms });
  return `POST /nap HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
};

/** The JSON bodies of the responses in `raw`, in order, with their status. */
function responses(raw: string): { status: number; body: { error?: { code: string } } }[] {
  const found = [];
  const pattern = /HTTP\/1\.1 (\d{3})[^]*?content-length: (\d+)\r\n[^]*?\r\n\r\n/gi;
  for (let m = pattern.exec(raw); m; m = pattern.exec(raw)) {
    const start = m.index + m[0].length;
    const text = raw.slice(start, start + Number(m[2]));
    found.push({ status: Number(m[1]), body: JSON.parse(text) as { error?: { code: string } } });
    pattern.lastIndex = start + Number(m[2]);
  }
  return found;
}

for (const workers of [1, 2]) {
  test(
    `shutdown - close() ends within gracefulShutdownTimeout plus a margin, answering what still runs and what arrives with the error body (${workers} front door${workers > 1 ? "s" : ""})`,
    { timeout: 60_000 },
    async () => {
      const server = await serve(app.withOptions({ sleeper: { gracefulShutdownTimeout: "1s" } }), {
        http: { workers },
      });
      const socket = connect(Number(new URL(server.url).port), "127.0.0.1");
      let raw = "";
      socket.on("data", (d: Buffer) => (raw += d.toString("latin1")));
      const ended = new Promise<void>((resolve) => socket.on("close", () => resolve()));
      socket.on("error", () => undefined);
      await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
      try {
        socket.write(napRequest(60_000)); // runs far past the drain
        await new Promise((resolve) => setTimeout(resolve, 300));
        const started = Date.now();
        const closed = server.close();
        await new Promise((resolve) => setTimeout(resolve, 100));
        socket.write(napRequest(10)); // arrives after shutdown began, on a live connection
        await closed;
        const took = Date.now() - started;
        assert.ok(took < 1_000 + 2_000, `close() took ${took} ms`);
        await Promise.race([ended, new Promise((resolve) => setTimeout(resolve, 5_000))]);
        const answers = responses(raw);
        assert.deepEqual(
          answers.map((a) => [a.status, a.body.error?.code]),
          [
            [503, "REPLICA_DIED"],
            [503, "SERVER_CLOSED"],
          ],
          raw,
        );
        for (const answer of answers) {
          assert.equal(typeof (answer.body.error as { message?: unknown }).message, "string");
          assert.equal(typeof (answer.body.error as { requestId?: unknown }).requestId, "string");
        }
      } finally {
        socket.destroy();
        await server.close();
      }
    },
  );
}
