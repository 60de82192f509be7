/**
 * `npm run bench handle`: handle calls beside the raw `MessagePort` equivalents, in one
 * run. Baselines are the floor any thread transport can reach: a worker that echoes a
 * small number (round robin over as many workers as replicas), and two workers echoing a
 * number over a `MessageChannel` between them. Targets (issue 12): a call from the front
 * door ≤ 1.5× the raw echo with 1 and with 3 replicas; a hop between replicas ≤ 1.5× the
 * raw round trip between two workers; ≥ 100k calls/s with 64 in flight to 1 replica; with
 * 3 replicas capped at 4, ≥ 80% of what 12 slots allow at the measured serial latency
 * (for a call that holds its slot 1 ms; for an empty call, of the raw capped echo).
 */
import { Worker } from "node:worker_threads";
import { run } from "tributary";
import { app, type Noop } from "./fixtures/noop-app.js";
import { app as hopApp, type Caller } from "./fixtures/hop-app.js";
import { latencyUs, machine, median, printTable, throughput } from "./stats.js";

const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 12_000);
const THROUGHPUT_MS = Number(process.env.BENCH_MS ?? 2_000);

const ECHO = `const { parentPort } = require("node:worker_threads");
parentPort.on("message", (m) => parentPort.postMessage(m));`;
/** A worker that answers each number 1 ms later (a timer, as `Noop.sleep(1)`). */
const SLEEPER = `const { parentPort } = require("node:worker_threads");
parentPort.on("message", (m) => setTimeout(() => parentPort.postMessage(m), 1));`;

/**
 * Calls per second with 64 in flight, measured after a first run of a second that is not
 * counted: the paths a queue takes (a call held at the caller, sent when a slot frees) are
 * not taken by the serial calls before, and their first second measures the JIT.
 */
async function warmThroughput(call: () => Promise<unknown>, inFlight: number): Promise<number> {
  await throughput(call, inFlight, 1_000);
  return throughput(call, inFlight, THROUGHPUT_MS);
}

/** Workers that echo a number; calls go round robin over them. */
function rawEcho(workers: number): { call: () => Promise<unknown>; close: () => Promise<void> } {
  const pending = new Map<number, () => void>();
  const pool = Array.from({ length: workers }, () => {
    const worker = new Worker(ECHO, { eval: true });
    worker.on("message", (id: number) => {
      pending.get(id)?.();
      pending.delete(id);
    });
    return worker;
  });
  let next = 0;
  return {
    call: () =>
      new Promise<void>((resolve) => {
        const id = next++;
        pending.set(id, resolve);
        pool[id % workers]!.postMessage(id);
      }),
    close: async () => void (await Promise.all(pool.map((w) => w.terminate()))),
  };
}

/**
 * The raw equivalent of a capped deployment: workers that echo a number, at most `cap`
 * calls in flight on each, a FIFO queue at the caller, and a queued call sent the moment
 * an answer frees a slot (one `postMessage` per call: nothing gathered).
 */
function rawCapped(
  workers: number,
  cap: number,
  source = ECHO,
): { call: () => Promise<unknown>; close: () => Promise<void> } {
  const pending = new Map<number, () => void>();
  const queue: number[] = [];
  const ongoing = new Array<number>(workers).fill(0);
  const send = (id: number, w: number): void => {
    ongoing[w]!++;
    pool[w]!.postMessage(id);
  };
  const pool = Array.from({ length: workers }, (_, w) => {
    const worker = new Worker(source, { eval: true });
    worker.on("message", (id: number) => {
      ongoing[w]!--;
      const next = queue.shift();
      if (next !== undefined) send(next, w);
      pending.get(id)?.();
      pending.delete(id);
    });
    return worker;
  });
  let next = 0;
  return {
    call: () =>
      new Promise<void>((resolve) => {
        const id = next++;
        pending.set(id, resolve);
        let best = -1;
        for (let w = 0; w < workers; w++)
          if (ongoing[w]! < cap && (best < 0 || ongoing[w]! < ongoing[best]!)) best = w;
        if (best >= 0) send(id, best);
        else queue.push(id);
      }),
    close: async () => void (await Promise.all(pool.map((w) => w.terminate()))),
  };
}

/** Two workers: one times `n` serial round trips of a number to the other over a MessageChannel. */
async function rawHop(n: number, warmup: number): Promise<number[]> {
  const { MessageChannel } = await import("node:worker_threads");
  const { port1, port2 } = new MessageChannel();
  const echo = new Worker(
    `const { workerData } = require("node:worker_threads");
     workerData.port.on("message", (m) => workerData.port.postMessage(m));`,
    { eval: true, workerData: { port: port2 }, transferList: [port2] },
  );
  const timer = new Worker(
    `const { workerData, parentPort } = require("node:worker_threads");
     const port = workerData.port;
     const once = (i) => new Promise((resolve) => { port.once("message", resolve); port.postMessage(i); });
     (async () => {
       for (let i = 0; i < workerData.warmup; i++) await once(i);
       const samples = [];
       for (let i = 0; i < workerData.n; i++) {
         const start = process.hrtime.bigint();
         await once(i);
         samples.push(Number(process.hrtime.bigint() - start) / 1000);
       }
       parentPort.postMessage(samples);
     })();`,
    { eval: true, workerData: { port: port1, n, warmup }, transferList: [port1] },
  );
  const samples = await new Promise<number[]>((resolve) => timer.once("message", resolve));
  await Promise.all([echo.terminate(), timer.terminate()]);
  return samples;
}

/** Interleaves the two so that noise on the shared machine hits both alike. */
async function interleaved(
  a: () => Promise<unknown>,
  b: () => Promise<unknown>,
): Promise<[number, number]> {
  const as: number[] = [];
  const bs: number[] = [];
  for (let round = 0; round < 4; round++) {
    as.push(...(await latencyUs(a, SAMPLES / 4, round === 0 ? 2_000 : 200)));
    bs.push(...(await latencyUs(b, SAMPLES / 4, round === 0 ? 2_000 : 200)));
  }
  return [median(as), median(bs)];
}

export async function main(): Promise<string> {
  console.log(`handle calls vs raw MessagePort — ${machine()}\n`);
  const sections: string[] = [];
  const raw1 = rawEcho(1);
  const raw3 = rawEcho(3);
  const rawCap = rawCapped(3, 4);
  const rawSleep = rawCapped(3, 4, SLEEPER);
  const one = await run(app, { port: 0, logLevel: "fatal" });
  const three = await run(app.withOptions({ noop: { numReplicas: 3 } }), {
    port: 0,
    logLevel: "fatal",
  });
  const capped = await run(
    app.withOptions({ noop: { numReplicas: 3, maxOngoingRequests: 4, maxQueuedRequests: 1000 } }),
    { port: 0, logLevel: "fatal" },
  );
  const hop = await run(hopApp, { port: 0, logLevel: "fatal" });
  try {
    const h1 = one.getHandle<Noop>("noop");
    const h3 = three.getHandle<Noop>("noop");
    const hc = capped.getHandle<Noop>("noop");
    const [raw1Us, handle1Us] = await interleaved(raw1.call, () => h1.noop());
    const [raw3Us, handle3Us] = await interleaved(raw3.call, () => h3.noop());
    const raw1Rate = await warmThroughput(raw1.call, 64);
    const handle1Rate = await warmThroughput(() => h1.noop(), 64);
    sections.push(
      printTable("A call from the front door (this thread) to thread replicas", "raw", "handle", [
        {
          metric: "1 replica: median round trip",
          baseline: raw1Us,
          subject: handle1Us,
          unit: "µs",
          target: "≤ 1.5×",
        },
        {
          metric: "3 replicas: median round trip (raw: round robin over 3 workers)",
          baseline: raw3Us,
          subject: handle3Us,
          unit: "µs",
          target: "≤ 1.5×",
        },
        {
          metric: "1 replica: calls/s, 64 in flight",
          baseline: raw1Rate,
          subject: handle1Rate,
          unit: "/s",
          target: "≥ 100k/s",
        },
      ]),
    );
    // 3 replicas × maxOngoingRequests 4 = 12 slots. The bound is 12 ÷ the serial latency of
    // the same call: for a call that holds its slot 1 ms (a model's wait), it is what the
    // slots allow, and reaching it means a queued call starts the moment a slot frees.
    // For an empty call the bound assumes 12 calls run at once on 2 cores, which no
    // transport can reach; there the baseline is the raw capped equivalent.
    const SLEEP_MS = 1;
    const sleepSerialUs = median(await latencyUs(() => hc.sleep(SLEEP_MS), 400, 100));
    const sleepBound = 12 / (sleepSerialUs / 1e6);
    const sleepRate = await warmThroughput(() => hc.sleep(SLEEP_MS), 64);
    const rawSleepRate = await warmThroughput(rawSleep.call, 64);
    const serialUs = median(await latencyUs(() => hc.noop(), SAMPLES / 4, 2_000));
    const bound = 12 / (serialUs / 1e6);
    const rawCappedRate = await warmThroughput(rawCap.call, 64);
    const cappedRate = await warmThroughput(() => hc.noop(), 64);
    sections.push(
      printTable(
        "3 replicas with maxOngoingRequests 4 (12 slots), 64 callers in flight",
        "bound",
        "handle",
        [
          {
            metric: `calls/s, a call that holds its slot ${SLEEP_MS} ms (bound: 12 ÷ serial latency ${(sleepSerialUs / 1000).toFixed(2)} ms)`,
            baseline: sleepBound,
            subject: sleepRate,
            unit: "/s",
            target: "≥ 0.8×",
          },
          {
            metric: `calls/s, a call that holds its slot ${SLEEP_MS} ms (raw: 3 workers capped at 4 that answer after a ${SLEEP_MS} ms timer, queue at the caller)`,
            baseline: rawSleepRate,
            subject: sleepRate,
            unit: "/s",
            target: "report",
          },
          {
            metric:
              "calls/s, empty call (bound: raw echo, 3 workers capped at 4, queue at the caller)",
            baseline: rawCappedRate,
            subject: cappedRate,
            unit: "/s",
            target: "≥ 0.8×",
          },
          {
            metric: `calls/s, empty call (bound: 12 ÷ serial latency ${serialUs.toFixed(1)} µs; needs 12 cores)`,
            baseline: bound,
            subject: cappedRate,
            unit: "/s",
            target: "report",
          },
        ],
      ),
    );
    const caller = hop.getHandle<Caller>("caller");
    const hopUs: number[] = [];
    const rawHopUs: number[] = [];
    for (let round = 0; round < 4; round++) {
      rawHopUs.push(...(await rawHop(SAMPLES / 4, round === 0 ? 2_000 : 200)));
      hopUs.push(...(await caller.time(SAMPLES / 4, round === 0 ? 2_000 : 200)));
    }
    sections.push(
      printTable(
        "A hop from one replica to another (timed inside the calling replica)",
        "raw MessageChannel between 2 workers",
        "handle",
        [
          {
            metric: "median round trip",
            baseline: median(rawHopUs),
            subject: median(hopUs),
            unit: "µs",
            target: "≤ 1.5×",
          },
        ],
      ),
    );
    return sections.join("\n");
  } finally {
    await Promise.all([one.close(), three.close(), capped.close(), hop.close()]);
    await Promise.all([raw1.close(), raw3.close(), rawCap.close(), rawSleep.close()]);
  }
}
