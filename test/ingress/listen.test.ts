/** A port that cannot be listened on is named, with the setting that chooses it. */
import assert from "node:assert/strict";
import { createServer, type AddressInfo, type Server } from "node:net";
import { test } from "node:test";
import { run } from "tributary";
import { app } from "../fixtures/config-app.js";

async function holdPort(): Promise<{ port: number; server: Server }> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { port: (server.address() as AddressInfo).port, server };
}

test(
  "listen - an HTTP or gRPC port in use is an error naming the port and the setting that chooses it",
  { timeout: 60_000 },
  async () => {
    const held = await holdPort();
    try {
      await assert.rejects(
        run(app, { port: held.port, logLevel: "silent" }),
        (error: Error & { code?: string }) => {
          assert.equal(error.code, "EADDRINUSE");
          assert.match(
            error.message,
            new RegExp(
              `^The HTTP port ${held.port} on 127\\.0\\.0\\.1 is in use .*--port.*0 picks a free one`,
            ),
          );
          return true;
        },
      );
      await assert.rejects(
        run(app, { port: 0, grpc: { port: held.port }, logLevel: "silent" }),
        (error: Error & { code?: string }) => {
          assert.equal(error.code, "EADDRINUSE");
          assert.match(
            error.message,
            new RegExp(`^The gRPC port ${held.port} on 127\\.0\\.0\\.1 is in use .*grpc\\.port`),
          );
          return true;
        },
      );
    } finally {
      held.server.close();
    }
  },
);
