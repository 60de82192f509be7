/**
 * `npm run bench batching`: throughput of one replica with dynamic batching on vs off, for a
 * model whose cost per batch is sub-linear (synthetic: 4 ms + 0.25 ms per item), 32 callers.
 */
import { run } from "tributary";
import { app, type Batched, type Unbatched } from "./fixtures/batch-model.js";
import { machine, printTable, throughput } from "./stats.js";

const MS = Number(process.env.BENCH_MS ?? 4_000);

export async function main(): Promise<string> {
  console.log(`batching on vs off — ${machine()}\n`);
  const server = await run(app, { port: 0, logLevel: "silent" });
  try {
    const on = server.getHandle<Batched>("batched");
    const off = server.getHandle<Unbatched>("unbatched");
    const offRate = await throughput(() => off.forward(1), 32, MS);
    const onRate = await throughput(() => on.forward(1), 32, MS);
    return printTable(
      "Dynamic batching (synthetic model: 4 ms + 0.25 ms per item; maxBatchSize 16)",
      "batching off",
      "batching on",
      [
        {
          metric: "items/s, 32 callers",
          baseline: offRate,
          subject: onRate,
          unit: "/s",
          target: "> 1×",
        },
      ],
    );
  } finally {
    await server.close();
  }
}
