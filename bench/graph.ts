/**
 * `npm run bench graph`: the same four-deployment diamond called through the compiled graph
 * (`server.handle.call`) and written by hand with deployment handles, in one run.
 * Target: the graph path ≤ 1.1× the hand-written one.
 */
import { run } from "tributary";
import { app } from "./fixtures/noop-graph.js";
import { latencyUs, machine, median, printTable, throughput } from "./stats.js";

const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 10_000);
const THROUGHPUT_MS = Number(process.env.BENCH_MS ?? 3_000);

type Fn = { call(...args: number[]): Promise<number> };

export async function main(): Promise<string> {
  console.log(`graph path vs hand-written handles — ${machine()}\n`);
  const server = await run(app, { port: 0, logLevel: "silent" });
  try {
    const [first, left, right, join] = ["first", "left", "right", "join"].map((n) =>
      server.getHandle<Fn>(n),
    ) as unknown as [Fn, Fn, Fn, Fn];
    const byHand = async (): Promise<number> => {
      const x = await first.call(1);
      const [a, b] = await Promise.all([left.call(x), right.call(x)]);
      return join.call(a, b);
    };
    const graph = (): Promise<number> => server.handle.call(1);
    if ((await byHand()) !== 5 || (await graph()) !== 5) throw new Error("the two paths disagree");
    const handLatency: number[] = [];
    const graphLatency: number[] = [];
    for (let round = 0; round < 4; round++) {
      handLatency.push(...(await latencyUs(byHand, SAMPLES / 4, round === 0 ? 1_000 : 100)));
      graphLatency.push(...(await latencyUs(graph, SAMPLES / 4, round === 0 ? 1_000 : 100)));
    }
    const handRate = await throughput(byHand, 64, THROUGHPUT_MS);
    const graphRate = await throughput(graph, 64, THROUGHPUT_MS);
    return printTable(
      "Graph path vs the same pipeline by hand with handles (4 deployments)",
      "by hand",
      "graph",
      [
        {
          metric: "median latency",
          baseline: median(handLatency),
          subject: median(graphLatency),
          unit: "µs",
          target: "≤ 1.1×",
        },
        {
          metric: "pipelines/s, 64 in flight",
          baseline: handRate,
          subject: graphRate,
          unit: "/s",
          target: "≥ 0.9×",
        },
      ],
    );
  } finally {
    await server.close();
  }
}
