/**
 * `npm run bench cluster`: the transport floor of a cluster on NATS, beside raw baselines,
 * in one run against a real nats-server on 127.0.0.1 (two client connections, as a head
 * and a node would have):
 * - a small payload: nats.js request/reply vs a call through two `NatsMailbox`es (a
 *   caller and an echo; an id matches each answer), serial median and calls/s with 64 in
 *   flight;
 * - 1 MiB: raw request/reply (one message at exactly `max_payload`) vs the mailbox (its
 *   V8 form is a few bytes over, so it goes as two chunks);
 * - a 16 MiB Float32Array there and back: the mailbox (17 chunks each way) vs the same
 *   bytes over a raw TCP socket on 127.0.0.1 (a node:net echo), and vs 17 raw NATS
 *   messages each way (what NATS costs for the bytes, without serialization).
 *
 * Then a cluster (issue 14): one `tributary node` process (from dist/) and a head in this
 * process (`ClusterHead` on its own connection, `run(app, { cluster })`) with an echo
 * deployment placed on the node, so a handle call goes head → NATS → the replica thread
 * (which holds its own NATS connection) and back: small (serial, and 64 in flight) vs raw request/reply, and a 16 MiB
 * Float32Array echoed vs the TCP echo. Floors that split the gap apart, in the same rounds:
 * raw request/reply to a responder in another process, and with a worker-thread hop there;
 * the mailbox with a thread hop at the echo. Last (BENCH_HOP=0 skips it), a second node and
 * a replica → replica hop between the two (custom resources place caller and leaf), timed
 * inside the caller. Every process and the server are stopped at the end, also on error.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createServer, connect, type Socket } from "node:net";
import { Worker } from "node:worker_threads";
import type { NatsConnection } from "@nats-io/transport-node";
import { run, type Application, type Server } from "tributary";
import { ClusterHead, connectNats, NatsMailbox } from "tributary/internal";
import { BIN, ROOT } from "../test/cli/run-cli.js";
import { app, type Noop } from "./fixtures/noop-app.js";
import { app as hopApp, type Caller } from "./fixtures/hop-app.js";
import { startNatsServer } from "../test/cluster/nats-server.js";
import { latencyUs, machine, median, printTable, throughput, type Row } from "./stats.js";

const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 4_000);
const THROUGHPUT_MS = Number(process.env.BENCH_MS ?? 2_000);
const MIB = 1024 * 1024;

type Call = () => Promise<unknown>;

/** A caller mailbox that sends `{ id, body }` to an echo mailbox and awaits the same id. */
function mailboxCaller(
  caller: NatsConnection,
  echoSide: NatsConnection,
  subject: string,
  thread?: Worker,
): { call: (body: unknown) => Promise<unknown>; ready: Promise<void>; close: () => void } {
  type Message = { id: number; body: unknown };
  const echo = NatsMailbox.open<Message, Message>(echoSide, subject);
  if (thread) {
    // As a node passes a call to its replica thread: through a MessagePort and back.
    thread.on("message", ([from, message]: [string, Message]) => echo.send(from, message));
    echo.onMessage((message, from) => thread.postMessage([from, message]));
  } else echo.onMessage((message, from) => echo.send(from, message));
  const mine = NatsMailbox.open<Message, Message>(caller);
  const pending = new Map<number, (body: unknown) => void>();
  mine.onMessage(({ id, body }) => {
    pending.get(id)?.(body);
    pending.delete(id);
  });
  let next = 0;
  return {
    call: (body) =>
      new Promise((resolve) => {
        const id = next++;
        pending.set(id, resolve);
        mine.send(echo.address, { id, body });
      }),
    ready: Promise.all([echo.ready(), mine.ready()]).then(() => undefined),
    close: () => {
      echo.close();
      mine.close();
    },
  };
}

/** A TCP echo on 127.0.0.1, and a call that writes `bytes` and reads them all back. */
async function tcpEcho(bytes: number): Promise<{ call: Call; close: () => Promise<void> }> {
  const server = createServer((socket) => socket.pipe(socket));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  const socket: Socket = connect(port, "127.0.0.1");
  socket.setNoDelay(true);
  await new Promise((resolve) => socket.once("connect", resolve));
  const payload = Buffer.alloc(bytes, 7);
  let waiting: { left: number; chunks: Buffer[]; done: (b: Buffer) => void } | undefined;
  socket.on("data", (chunk: Buffer) => {
    if (!waiting) return;
    waiting.chunks.push(chunk);
    waiting.left -= chunk.length;
    if (waiting.left <= 0) {
      const { chunks, done } = waiting;
      waiting = undefined;
      done(Buffer.concat(chunks)); // the receiver gets one buffer, as the mailbox does
    }
  });
  return {
    call: () =>
      new Promise<Buffer>((done) => {
        waiting = { left: bytes, chunks: [], done };
        socket.write(payload);
      }),
    close: async () => {
      socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * The same 16 MiB as raw NATS messages of `max_payload` less the mailbox's chunk head,
 * echoed one by one: what NATS itself costs for the bytes, without V8 serialization.
 */
async function rawChunked(
  caller: NatsConnection,
  echoSide: NatsConnection,
  bytes: number,
): Promise<Call> {
  const frame = Buffer.alloc((caller.info?.max_payload ?? MIB) - 17, 3);
  const count = Math.ceil(bytes / frame.length);
  echoSide.subscribe("bench.rawchunks", {
    callback: (_, m) => {
      if (m.reply) echoSide.publish(m.reply, m.data);
    },
  });
  const inbox = `_INBOX.bench-raw-chunks`;
  let left = 0;
  let done: () => void = () => undefined;
  caller.subscribe(inbox, {
    callback: () => {
      if (--left === 0) done();
    },
  });
  await Promise.all([caller.flush(), echoSide.flush()]);
  return () =>
    new Promise<void>((resolve) => {
      left = count;
      done = resolve;
      for (let i = 0; i < count; i++) caller.publish("bench.rawchunks", frame, { reply: inbox });
    });
}

/**
 * A plain nats.js responder in a process of its own (as a node is): `bench.proc` answers
 * at once; `bench.proc-thread` passes the payload to a worker thread and answers with what
 * comes back (the floor of a node that hands each call to a replica thread).
 */
const RESPONDER = `
import { connect } from "@nats-io/transport-node";
import { Worker } from "node:worker_threads";
const nc = await connect({ servers: process.argv[1] });
// An eval'd worker inherits --input-type=module.
const worker = new Worker('import { parentPort } from "node:worker_threads"; parentPort.on("message", (m) => parentPort.postMessage(m));', { eval: true });
const waiting = new Map();
let next = 0;
worker.on("message", ([id, data]) => { waiting.get(id).respond(data); waiting.delete(id); });
nc.subscribe("bench.proc", { callback: (_, m) => m.respond(m.data) });
nc.subscribe("bench.proc-thread", { callback: (_, m) => { const id = next++; waiting.set(id, m); worker.postMessage([id, m.data]); } });
await nc.flush();
console.log("ready");
process.on("SIGTERM", async () => { await nc.close(); await worker.terminate(); process.exit(0); });
`;

async function responderProcess(url: string): Promise<() => Promise<void>> {
  const child = spawn(process.execPath, ["--input-type=module", "-e", RESPONDER, url], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "inherit"],
  });
  const killOnExit = (): void => void child.kill("SIGKILL");
  process.once("exit", killOnExit);
  const exited = new Promise<void>((resolve) =>
    child.once("exit", () => {
      process.off("exit", killOnExit);
      resolve();
    }),
  );
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
    }
  };
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout?.on("data", (d: Buffer) => d.toString().includes("ready") && resolve());
      void exited.then(() => reject(new Error("the responder process exited during start")));
    });
  } catch (error) {
    await stop();
    throw error;
  }
  return stop;
}

/** A `tributary node` process (from dist/), resolved once it says it joined. */
async function startNode(
  url: string,
  name: string,
  resources: object,
): Promise<{ stop: () => Promise<void>; pid: number | undefined }> {
  const child: ChildProcess = spawn(
    process.execPath,
    [
      ...(process.env.BENCH_NODE_ARGS?.split(" ").filter(Boolean) ?? []),
      BIN,
      "node",
      "--cluster",
      url,
      "--name",
      name,
      "--resources",
      JSON.stringify(resources),
    ],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  // A bench that dies before stop() still leaves no node behind.
  const killOnExit = (): void => void child.kill("SIGKILL");
  process.once("exit", killOnExit);
  const exited = new Promise<void>((resolve) =>
    child.once("exit", () => {
      process.off("exit", killOnExit);
      resolve();
    }),
  );
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    }
  };
  let output = "";
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`node ${name} did not join within 30 s:\n${output}`)),
        30_000,
      );
      const read = (d: Buffer): void => {
        output = (output + d.toString()).slice(-20_000);
        if (output.includes(`Node "${name}" joined`)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout?.on("data", read);
      child.stderr?.on("data", read);
      void exited.then(() => reject(new Error(`node ${name} exited during start:\n${output}`)));
    });
  } catch (error) {
    await stop();
    throw error;
  }
  return { stop, pid: child.pid };
}

/** A head in this process (its own NATS connection) with `app` placed on the nodes. */
async function clusterHead(url: string): Promise<{
  head: ClusterHead;
  serve: (app: Application) => Promise<Server>;
  close: () => Promise<void>;
}> {
  const nc = await connectNats(url, { name: "bench-cluster-head" });
  const head = await ClusterHead.open(nc, { name: "tributary", nodeTimeoutMs: 10_000 });
  const servers: Server[] = [];
  return {
    head,
    serve: async (app) => {
      const server = await run(app, { cluster: head, port: 0, logLevel: "fatal" });
      servers.push(server);
      return server;
    },
    close: async () => {
      for (const server of servers.splice(0)) await server.close().catch(() => undefined);
      await head.close();
      await nc.drain().catch(() => undefined);
    },
  };
}

export async function main(): Promise<string> {
  console.log(`NATS transport floor and handle calls across nodes — ${machine()}\n`);
  const server = await startNatsServer();
  const head = await connectNats(server.url, { name: "bench-head" });
  const node = await connectNats(server.url, { name: "bench-node" });
  const stops: (() => Promise<void>)[] = [];
  try {
    const small = new Uint8Array(16).fill(1);
    const oneMiB = new Uint8Array(MIB).fill(2);
    const bigFloats = new Float32Array((16 * MIB) / 4).fill(1.5);

    node.subscribe("bench.raw", {
      callback: (_, m) => {
        m.respond(m.data);
      },
    });
    await node.flush();
    const rawSmall: Call = () => head.request("bench.raw", small, { timeout: 10_000 });
    const rawMiB: Call = () => head.request("bench.raw", oneMiB, { timeout: 10_000 });

    const mailbox = mailboxCaller(head, node, "bench.mailbox");
    await mailbox.ready;
    const boxSmall: Call = () => mailbox.call(small);
    // The same with the echo in a worker thread behind the receiving mailbox: the floor of
    // a node that hands each call to a replica thread.
    const echoThread = new Worker(
      `require("node:worker_threads").parentPort.on("message", (m) => require("node:worker_threads").parentPort.postMessage(m));`,
      { eval: true },
    );
    stops.push(() => echoThread.terminate().then(() => undefined));
    const threaded = mailboxCaller(head, node, "bench.mailbox-thread", echoThread);
    await threaded.ready;
    const threadSmall: Call = () => threaded.call(small);
    const boxMiB: Call = () => mailbox.call(oneMiB);
    const boxBig: Call = async () => {
      const back = (await mailbox.call(bigFloats)) as Float32Array;
      if (back.length !== bigFloats.length) throw new Error("the 16 MiB echo came back short");
    };
    stops.push(await responderProcess(server.url));
    const procSmall: Call = () => head.request("bench.proc", small, { timeout: 10_000 });
    const procThread: Call = () => head.request("bench.proc-thread", small, { timeout: 10_000 });
    const tcp = await tcpEcho(bigFloats.byteLength);
    stops.push(() => tcp.close());
    const natsBig = await rawChunked(head, node, bigFloats.byteLength);

    // The cluster: one node process, and a head in this process with the echo deployment
    // placed on that node. A handle call goes head → NATS → the replica thread on the node, and back.
    // `leaf` is for the hop below (its leaf goes here, its caller on a second node).
    const benchNode = await startNode(server.url, "bench-node", { cpus: 4, custom: { leaf: 1 } });
    stops.push(benchNode.stop);
    const cluster = await clusterHead(server.url);
    stops.unshift(cluster.close); // the head goes before its node
    const served = await cluster.serve(app);
    const placed = cluster.head.nodes().map((n) => `${n.name}: ${n.replicas.join(", ")}`);
    console.log(`placed: ${placed.join("; ")}`);
    const echo = served.getHandle<Noop>("noop");
    const handleSmall: Call = () => echo.echo(small);
    const handleBig: Call = async () => {
      const back = (await echo.echo(bigFloats)) as Float32Array;
      if (back.length !== bigFloats.length) throw new Error("the 16 MiB echo came back short");
    };

    // Alternate baseline and subject in rounds, so the machine's drift hits both alike.
    const lat = {
      rawSmall: [] as number[],
      boxSmall: [] as number[],
      thread: [] as number[],
      proc: [] as number[],
      procThread: [] as number[],
      handle: [] as number[],
    };
    const big = {
      rawMiB: [] as number[],
      boxMiB: [] as number[],
      tcp: [] as number[],
      nats: [] as number[],
      box: [] as number[],
      handle: [] as number[],
    };
    const rate = { raw: [] as number[], box: [] as number[], handle: [] as number[] };
    const ROUNDS = 3;
    for (let round = 0; round < ROUNDS; round++) {
      const warm = round === 0 ? 1_000 : 100;
      lat.rawSmall.push(...(await latencyUs(rawSmall, SAMPLES / ROUNDS, warm)));
      lat.boxSmall.push(...(await latencyUs(boxSmall, SAMPLES / ROUNDS, warm)));
      lat.thread.push(...(await latencyUs(threadSmall, SAMPLES / ROUNDS, warm)));
      lat.proc.push(...(await latencyUs(procSmall, SAMPLES / ROUNDS, warm)));
      lat.procThread.push(...(await latencyUs(procThread, SAMPLES / ROUNDS, warm)));
      lat.handle.push(...(await latencyUs(handleSmall, SAMPLES / ROUNDS, warm)));
      rate.raw.push(await throughput(rawSmall, 64, THROUGHPUT_MS / ROUNDS));
      rate.box.push(await throughput(boxSmall, 64, THROUGHPUT_MS / ROUNDS));
      rate.handle.push(await throughput(handleSmall, 64, THROUGHPUT_MS / ROUNDS));
      big.rawMiB.push(...(await latencyUs(rawMiB, 40, 10)));
      big.boxMiB.push(...(await latencyUs(boxMiB, 40, 10)));
      big.tcp.push(...(await latencyUs(tcp.call, 6, 2)));
      big.nats.push(...(await latencyUs(natsBig, 6, 2)));
      big.box.push(...(await latencyUs(boxBig, 6, 2)));
      big.handle.push(...(await latencyUs(handleBig, 6, 2)));
    }
    mailbox.close();
    threaded.close();
    const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
    const mean = (xs: number[]): number => sum(xs) / xs.length;
    const floor: Row[] = [
      {
        metric: "16 B request/reply, median serial",
        baseline: median(lat.rawSmall),
        subject: median(lat.boxSmall),
        unit: "µs",
        target: "≤ 1.5×",
      },
      {
        metric: "16 B calls/s, 64 in flight",
        baseline: mean(rate.raw),
        subject: mean(rate.box),
        unit: "/s",
        target: "≥ 0.67×",
      },
      {
        metric: "1 MiB request/reply, median (mailbox: 2 chunks)",
        baseline: median(big.rawMiB),
        subject: median(big.boxMiB),
        unit: "µs",
        target: "≤ 1.5×",
      },
      {
        metric: "16 MiB Float32Array there and back, median (TCP vs mailbox)",
        baseline: median(big.tcp),
        subject: median(big.box),
        unit: "µs",
        target: "(measured)",
      },
      {
        metric: "16 MiB there and back, median (17 raw NATS messages vs mailbox)",
        baseline: median(big.nats),
        subject: median(big.box),
        unit: "µs",
        target: "(measured)",
      },
    ];
    const across: Row[] = [
      {
        metric: "16 B echo, median serial (raw request/reply vs handle)",
        baseline: median(lat.rawSmall),
        subject: median(lat.handle),
        unit: "µs",
        target: "≤ 1.3×",
      },
      {
        metric: "16 B echo calls/s, 64 in flight (raw request/reply vs handle)",
        baseline: mean(rate.raw),
        subject: mean(rate.handle),
        unit: "/s",
        target: "≥ 0.77× (1 ÷ 1.3)",
      },
      {
        metric: "16 B echo, median serial (mailbox floor vs handle)",
        baseline: median(lat.boxSmall),
        subject: median(lat.handle),
        unit: "µs",
        target: "(measured)",
      },
      {
        metric: "16 B echo, median serial (mailbox + a thread hop at the echo vs handle)",
        baseline: median(lat.thread),
        subject: median(lat.handle),
        unit: "µs",
        target: "(measured)",
      },
      {
        metric: "16 B echo, median serial (raw, responder in another process vs handle)",
        baseline: median(lat.proc),
        subject: median(lat.handle),
        unit: "µs",
        target: "(measured)",
      },
      {
        metric: "16 B echo, median serial (raw, another process + a thread hop vs handle)",
        baseline: median(lat.procThread),
        subject: median(lat.handle),
        unit: "µs",
        target: "(measured)",
      },
      {
        metric: "16 MiB Float32Array there and back, median (raw TCP vs handle)",
        baseline: median(big.tcp),
        subject: median(big.handle),
        unit: "µs",
        target: "(measured)",
      },
      {
        metric: "16 MiB there and back, median (mailbox floor vs handle)",
        baseline: median(big.box),
        subject: median(big.handle),
        unit: "µs",
        target: "(measured)",
      },
    ];
    const sections = [
      printTable(
        "The NATS transport floor: raw nats.js / TCP vs NatsMailbox",
        "raw",
        "mailbox",
        floor,
      ),
      printTable(
        "A handle call across nodes: head (this process) → NATS → a replica thread on the node",
        "raw",
        "handle",
        across,
      ),
    ];
    if (process.env.BENCH_HOP !== "0")
      sections.push(await hopAcrossNodes(server.url, cluster, rawSmall, stops));
    return sections.join("\n");
  } finally {
    for (const stop of stops) await stop().catch((error: unknown) => console.error(error));
    await head.close();
    await node.close();
    await server.stop();
  }
}

/**
 * A replica → replica hop between two nodes (custom resources force the placement): the
 * caller on a second node times serial calls to the leaf on the first (replica thread →
 * NATS → replica thread, each on its own connection, and back), vs raw request/reply.
 */
async function hopAcrossNodes(
  url: string,
  cluster: Awaited<ReturnType<typeof clusterHead>>,
  rawSmall: Call,
  stops: (() => Promise<void>)[],
): Promise<string> {
  const second = await startNode(url, "bench-node-2", { cpus: 4, custom: { caller: 1 } });
  stops.push(second.stop);
  const served = await cluster.serve(
    hopApp.withOptions({
      leaf: { resources: { cpus: 1, custom: { leaf: 1 } } },
      caller: { resources: { cpus: 1, custom: { caller: 1 } } },
    }),
  );
  const placed = cluster.head.nodes().map((n) => `${n.name}: ${n.replicas.join(", ")}`);
  console.log(`placed: ${placed.join("; ")}`);
  const caller = served.getHandle<Caller>("caller");
  const raw: number[] = [];
  const hop: number[] = [];
  const ROUNDS = 3;
  const n = Math.round(SAMPLES / 2 / ROUNDS);
  for (let round = 0; round < ROUNDS; round++) {
    const warm = round === 0 ? 1_000 : 100;
    raw.push(...(await latencyUs(rawSmall, n, warm)));
    hop.push(...(await caller.time(n, warm)));
  }
  return printTable(
    "A replica → replica hop across two nodes (timed inside the calling replica)",
    "raw",
    "hop",
    [
      {
        metric: "empty call, median serial (raw request/reply vs hop)",
        baseline: median(raw),
        subject: median(hop),
        unit: "µs",
        target: "(measured)",
      },
    ],
  );
}
