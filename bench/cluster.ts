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
 * {@link handleAcrossNodes} is where a handle call across nodes joins the table.
 */
import { createServer, connect, type Socket } from "node:net";
import type { NatsConnection } from "@nats-io/transport-node";
import { connectNats, NatsMailbox } from "tributary/internal";
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
): { call: (body: unknown) => Promise<unknown>; ready: Promise<void>; close: () => void } {
  type Message = { id: number; body: unknown };
  const echo = NatsMailbox.open<Message, Message>(echoSide, subject);
  echo.onMessage((message, from) => echo.send(from, message));
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
 * ── Issue 14: a handle call across nodes goes here. ──
 * Pass a closure that makes one handle call from the head to a replica on a node (same
 * small payload as `small` below) and the mailbox floor measured in this run; it returns
 * the rows to add to the table. Not called yet: main() has no cluster to call into.
 */
export async function handleAcrossNodes(
  call: Call,
  floor: { medianUs: number; callsPerS: number },
): Promise<Row[]> {
  const latency = median(await latencyUs(call, SAMPLES, 500));
  const rate = await throughput(call, 64, THROUGHPUT_MS);
  return [
    {
      metric: "handle call across nodes, median serial",
      baseline: floor.medianUs,
      subject: latency,
      unit: "µs",
      target: "≤ 1.5× the mailbox floor",
    },
    {
      metric: "handle calls across nodes/s, 64 in flight",
      baseline: floor.callsPerS,
      subject: rate,
      unit: "/s",
      target: "≥ 0.67× the mailbox floor",
    },
  ];
}

export async function main(): Promise<string> {
  console.log(`NATS transport floor — ${machine()}\n`);
  const server = await startNatsServer();
  const head = await connectNats(server.url, { name: "bench-head" });
  const node = await connectNats(server.url, { name: "bench-node" });
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
    const boxMiB: Call = () => mailbox.call(oneMiB);
    const boxBig: Call = async () => {
      const back = (await mailbox.call(bigFloats)) as Float32Array;
      if (back.length !== bigFloats.length) throw new Error("the 16 MiB echo came back short");
    };
    const tcp = await tcpEcho(bigFloats.byteLength);
    const natsBig = await rawChunked(head, node, bigFloats.byteLength);

    // Alternate baseline and subject in rounds, so the machine's drift hits both alike.
    const lat = { rawSmall: [] as number[], boxSmall: [] as number[] };
    const big = {
      rawMiB: [] as number[],
      boxMiB: [] as number[],
      tcp: [] as number[],
      nats: [] as number[],
      box: [] as number[],
    };
    const rate = { raw: [] as number[], box: [] as number[] };
    for (let round = 0; round < 2; round++) {
      const warm = round === 0 ? 1_000 : 100;
      lat.rawSmall.push(...(await latencyUs(rawSmall, SAMPLES / 2, warm)));
      lat.boxSmall.push(...(await latencyUs(boxSmall, SAMPLES / 2, warm)));
      rate.raw.push(await throughput(rawSmall, 64, THROUGHPUT_MS / 2));
      rate.box.push(await throughput(boxSmall, 64, THROUGHPUT_MS / 2));
      big.rawMiB.push(...(await latencyUs(rawMiB, 60, 10)));
      big.boxMiB.push(...(await latencyUs(boxMiB, 60, 10)));
      big.tcp.push(...(await latencyUs(tcp.call, 8, 2)));
      big.nats.push(...(await latencyUs(natsBig, 8, 2)));
      big.box.push(...(await latencyUs(boxBig, 8, 2)));
    }
    await tcp.close();
    mailbox.close();
    const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
    const rows: Row[] = [
      {
        metric: "16 B request/reply, median serial",
        baseline: median(lat.rawSmall),
        subject: median(lat.boxSmall),
        unit: "µs",
        target: "≤ 1.5×",
      },
      {
        metric: "16 B calls/s, 64 in flight",
        baseline: sum(rate.raw) / rate.raw.length,
        subject: sum(rate.box) / rate.box.length,
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
    return printTable(
      "The NATS transport floor: raw nats.js / TCP vs NatsMailbox",
      "raw",
      "mailbox",
      rows,
    );
  } finally {
    await head.close();
    await node.close();
    await server.stop();
  }
}
