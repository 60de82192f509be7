/**
 * A real nats-server for tests and benchmarks: JetStream on, its store in a fresh temp
 * dir, listening on 127.0.0.1 on a port the server picks (`-p -1`, read back from its
 * log). `natsServerOrSkip(t)` skips a test with the reason when the binary is missing,
 * and fails it under `CI=true` (.ci/run installs nats-server).
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";

export interface NatsServer {
  /** `nats://127.0.0.1:<port>`. */
  readonly url: string;
  readonly port: number;
  /** The JetStream store directory (removed by stop()). */
  readonly storeDir: string;
  /** The server's recent log (stderr), for assertion messages. */
  log(): string;
  /** SIGTERM, then SIGKILL after 5 s; removes the store unless it was passed in. Safe twice. */
  stop(): Promise<void>;
  /** SIGKILL now, for crash tests; call stop() afterwards to wait and clean up. */
  kill(): void;
}

export interface NatsServerOptions {
  /** Extra command-line arguments, e.g. `["--user", "u", "--pass", "p"]`. */
  readonly args?: readonly string[];
  /** A fixed port (to restart a server where clients expect it); default: one it picks. */
  readonly port?: number;
  /** A JetStream store to reuse (kept by stop()); default: a fresh temp dir. */
  readonly storeDir?: string;
  /** How long to wait for it to accept connections. Default 10 000 ms. */
  readonly startTimeoutMs?: number;
}

/** The nats-server binary: $NATS_SERVER, on PATH, or where Debian puts it. */
export const natsServerBinary: string | undefined = [
  process.env.NATS_SERVER,
  "nats-server",
  "/usr/sbin/nats-server",
  "/usr/local/bin/nats-server",
].find(
  (bin) =>
    bin !== undefined &&
    (bin.includes("/") ? existsSync(bin) : spawnSync(bin, ["--version"]).status === 0),
);

/** False (and the test skipped with the reason) when nats-server is missing outside CI. */
export function natsServerOrSkip(t: TestContext): boolean {
  if (natsServerBinary) return true;
  if (process.env.CI) assert.fail("CI installs nats-server (.ci/run); it is missing");
  t.skip("nats-server is not installed (apt-get install nats-server; .ci/run does)");
  return false;
}

/** Starts a nats-server and resolves once it accepts TCP connections. */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const bin = natsServerBinary;
  if (!bin) throw new Error("nats-server is not installed (apt-get install nats-server)");
  const ownStore = options.storeDir === undefined;
  const storeDir = options.storeDir ?? (await mkdtemp(join(tmpdir(), "tributary-nats-")));
  const child = spawn(
    bin,
    [
      "-a",
      "127.0.0.1",
      "-p",
      String(options.port ?? -1),
      "-js",
      "-sd",
      storeDir,
      ...(options.args ?? []),
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let log = "";
  // A test that forgets stop() still leaves no server behind when the process exits.
  const killOnExit = (): void => void child.kill("SIGKILL");
  process.once("exit", killOnExit);
  const exited = new Promise<void>((resolve) =>
    child.once("exit", () => {
      process.off("exit", killOnExit);
      resolve();
    }),
  );
  const listening = new Promise<number>((resolve, reject) => {
    child.stderr?.on("data", (d: Buffer) => {
      log = (log + d.toString()).slice(-20_000);
      const match = /Listening for client connections on [^\s]*:(\d+)/.exec(log);
      if (match?.[1]) resolve(Number(match[1]));
    });
    child.once("error", reject);
    void exited.then(() => reject(new Error(`nats-server exited during start:\n${log}`)));
  });
  const cleanUp = (): void => {
    if (ownStore) rmSync(storeDir, { recursive: true, force: true });
  };
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(timer);
      }
      cleanUp();
    })());
  try {
    const timeoutMs = options.startTimeoutMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    const port = await Promise.race([
      listening,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`nats-server did not listen within ${timeoutMs} ms:\n${log}`)),
          timeoutMs,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    await acceptsConnections(port, timeoutMs);
    return {
      url: `nats://127.0.0.1:${port}`,
      port,
      storeDir,
      log: () => log,
      stop,
      kill: () => {
        child.kill("SIGKILL");
      },
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Resolves once a TCP connection to the port succeeds (retrying every 20 ms). */
async function acceptsConnections(port: number, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (ok) return;
    if (performance.now() > deadline)
      throw new Error(`nats-server on port ${port} refused connections for ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
