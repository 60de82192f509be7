import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { type AddressInfo, connect, createServer } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { Instance, loadInferenceService } from "tributary/internal";
import { type Client, rpc } from "../ingress/grpc-client.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

const config = (
  requestTimeout: string,
) => `http: { port: 0, requestTimeout: ${requestTimeout}, readTimeout: 1s }
applications:
  - name: sleepy
    importPath: ./app.ts:app
`;

const nap = (ms: number): string => {
  const body = JSON.stringify({ ms });
  return `POST /nap HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
};

/** An instance with a state folder, and an `app.ts` there serving the sleepy fixture. */
async function sleepyInstance(
  prefix: string,
): Promise<{ dir: string; instance: Instance; file: string }> {
  const dir = await mkdtemp(join(ROOT, prefix));
  const instance = new Instance({
    adminHost: "127.0.0.1",
    adminPort: 0,
    adminToken: undefined,
    stateDir: join(dir, "state"),
    imports: { projectDir: ROOT },
  });
  await writeFile(join(dir, "app.ts"), 'export { app } from "../test/fixtures/sleepy-app.js";\n');
  return { dir, instance, file: join(dir, "serve.yaml") };
}

test(
  "instance - a change of http settings alone applies in place, drops no connection and is reported",
  { timeout: 90_000 },
  async () => {
    const { dir, instance, file } = await sleepyInstance(".tmp-http-settings-");
    try {
      assert.equal((await instance.deploy(config("30s"), file)).applications[0]?.action, "started");
      const url = new URL((await instance.status()).url as string);
      const socket = connect(Number(url.port), "127.0.0.1");
      let received = "";
      let closed = false;
      socket.on("data", (d: Buffer) => (received += d.toString()));
      socket.on("close", () => (closed = true));
      socket.on("error", () => undefined);
      const answer = async (count: number): Promise<string> => {
        const until = Date.now() + 10_000;
        while ((received.match(/HTTP\/1\.1 /g) ?? []).length < count) {
          if (Date.now() > until || closed) assert.fail(`no answer ${count}: ${received}`);
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        return received.slice(received.lastIndexOf("HTTP/1.1 "));
      };
      try {
        socket.write(nap(10));
        assert.match(await answer(1), /^HTTP\/1\.1 200/);

        const result = await instance.deploy(config("500ms"), file);
        assert.deepEqual(result, {
          applications: [{ application: "sleepy", action: "unchanged", changes: {} }],
          http: ["requestTimeout"],
        });
        assert.equal((await instance.status()).url, url.origin, "same address");

        // The same connection is still open, and the new timeout applies to it.
        socket.write(nap(3_000));
        const timedOut = await answer(2);
        assert.match(timedOut, /^HTTP\/1\.1 504/);
        assert.match(timedOut, /"code":"TIMEOUT"/);
        assert.equal(closed, false, "the connection was not dropped");

        // readTimeout bounds receiving a request, not waiting for its answer: a call longer
        // than it is answered after a change too (it was cut off with no answer).
        await instance.deploy(config("10s"), file);
        socket.write(nap(1_500));
        assert.match(await answer(3), /^HTTP\/1\.1 200/);
        assert.equal(closed, false, "the connection was not dropped");
      } finally {
        socket.destroy();
      }
    } finally {
      await instance.close();
      await rm(dir, { recursive: true, force: true });
    }
  },
);

test(
  "instance - a new bodyLimit reaches the gRPC listener in place: same port, the new message limit",
  { timeout: 90_000 },
  async () => {
    const { dir, instance, file } = await sleepyInstance(".tmp-grpc-settings-");
    const withLimit = (limit: string): string =>
      `http: { port: 0${limit} }\ngrpc: { port: 0 }\napplications:\n  - name: sleepy\n    importPath: ./app.ts:app\n`;
    let client: Client | undefined;
    try {
      await instance.deploy(withLimit(""), file);
      const { grpcPort } = (await instance.status()) as { grpcPort: number };
      const Service = loadInferenceService();
      client = new Service(
        `127.0.0.1:${grpcPort}`,
        grpc.credentials.createInsecure(),
      ) as unknown as Client;
      const long = { name: "x".repeat(100) };
      await assert.rejects(
        rpc(client, "ModelMetadata", long),
        (error: grpc.ServiceError) => error.code === grpc.status.NOT_FOUND,
      );
      const result = await instance.deploy(withLimit(", bodyLimit: 64"), file);
      assert.deepEqual(result.http, ["bodyLimit"]);
      assert.equal(((await instance.status()) as { grpcPort: number }).grpcPort, grpcPort);
      await assert.rejects(
        rpc(client, "ModelMetadata", long),
        (error: grpc.ServiceError) => error.code === grpc.status.RESOURCE_EXHAUSTED,
      );
      assert.deepEqual(await rpc(client, "ModelReady", { name: "sleepy" }), { ready: true });
    } finally {
      client?.close();
      await instance.close();
      await rm(dir, { recursive: true, force: true });
    }
  },
);

test(
  "instance - a new http port that is in use fails the deploy, and the front door goes on serving at its old address",
  { timeout: 90_000 },
  async () => {
    const { dir, instance, file } = await sleepyInstance(".tmp-http-busy-");
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", resolve));
    const busyPort = (busy.address() as AddressInfo).port;
    const napOver = async (url: string): Promise<number> =>
      (
        await fetch(`${url}/nap`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ ms: 10 }),
        })
      ).status;
    try {
      await instance.deploy(config("30s"), file);
      const url = (await instance.status()).url as string;
      assert.equal(await napOver(url), 200);
      await assert.rejects(
        instance.deploy(config("30s").replace("port: 0", `port: ${busyPort}`), file),
        new RegExp(`HTTP port ${busyPort} .*in use`),
      );
      assert.equal((await instance.status()).url, url, "the same address");
      assert.equal(await napOver(url), 200, "still served");

      // The same HTTP port and a gRPC port in use: the old listeners must close for the new
      // ones to start, and come back when they cannot.
      const port = Number(new URL(url).port);
      const fixed = config("30s").replace("port: 0", `port: ${port}`);
      await instance.deploy(fixed, file);
      await assert.rejects(
        instance.deploy(`${fixed}grpc: { port: ${busyPort} }\n`, file),
        new RegExp(`gRPC port ${busyPort} .*in use`),
      );
      assert.equal((await instance.status()).url, url, "the same address");
      assert.equal(await napOver(url), 200, "served again");
    } finally {
      busy.close();
      await instance.close();
      await rm(dir, { recursive: true, force: true });
    }
  },
);
