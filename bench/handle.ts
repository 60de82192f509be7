/**
 * `npm run bench handle`: an empty handle call to a thread replica beside a raw
 * MessagePort round trip to a worker thread, in one run. Targets: median round trip
 * ≤ 1.5× the raw port's, and ≥ 100k calls/s with 64 in flight.
 */
import { Worker } from "node:worker_threads";
import { run } from "tributary";
import { app, type Noop } from "./fixtures/noop-app.js";
import { latencyUs, machine, median, printTable, throughput } from "./stats.js";

const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 20_000);
const THROUGHPUT_MS = Number(process.env.BENCH_MS ?? 3_000);

/** A worker that echoes every message: the floor any thread transport can reach. */
function rawEcho(): { call: () => Promise<unknown>; close: () => Promise<number> } {
  const worker = new Worker(
    `const { parentPort } = require("node:worker_threads");
     parentPort.on("message", (m) => parentPort.postMessage(m));`,
    { eval: true },
  );
  const pending = new Map<number, () => void>();
  let next = 0;
  worker.on("message", (m: { id: number }) => {
    pending.get(m.id)?.();
    pending.delete(m.id);
  });
  return {
    call: () =>
      new Promise<void>((resolve) => {
        const id = next++;
        pending.set(id, resolve);
        worker.postMessage({ t: "call", id, m: "noop", a: [] });
      }),
    close: () => worker.terminate(),
  };
}

export async function main(): Promise<string> {
  console.log(`handle vs raw MessagePort — ${machine()}\n`);
  const raw = rawEcho();
  const server = await run(app, { port: 0 });
  const handle = server.getHandle<Noop>("noop");
  const call = (): Promise<void> => handle.noop();
  try {
    // Interleave the two so that noise on the shared machine hits both alike.
    const rawLatency: number[] = [];
    const handleLatency: number[] = [];
    for (let round = 0; round < 4; round++) {
      rawLatency.push(...(await latencyUs(raw.call, SAMPLES / 4, round === 0 ? 2_000 : 200)));
      handleLatency.push(...(await latencyUs(call, SAMPLES / 4, round === 0 ? 2_000 : 200)));
    }
    const rawRate = await throughput(raw.call, 64, THROUGHPUT_MS);
    const handleRate = await throughput(call, 64, THROUGHPUT_MS);
    return printTable("Empty call to a thread replica", "raw MessagePort", "handle", [
      {
        metric: "median round trip",
        baseline: median(rawLatency),
        subject: median(handleLatency),
        unit: "µs",
        target: "≤ 1.5×",
      },
      {
        metric: "calls/s, 64 in flight",
        baseline: rawRate,
        subject: handleRate,
        unit: "/s",
        target: "≥ 100k/s",
      },
    ]);
  } finally {
    await server.close();
    await raw.close();
  }
}
