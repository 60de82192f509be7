/**
 * `npm run bench scale`: (a) the per-request cost of walking a 100-node plan, beside calling
 * the same 100 functions by hand; (b) starting many deployments × 5 thread replicas: time
 * until every one is healthy, and resident memory per replica. SCALE_DEPLOYMENTS sets the
 * count (default 10; 200 × 5 thread replicas at ~40 MiB each needs more memory than this machine has).
 */
import { run, build, deployment, InputNode } from "tributary";
import { runPlan } from "tributary/internal";
import { machine, printTable } from "./stats.js";
import { app as wideApp } from "./fixtures/wide-app.js";

const add = (x: number): number => x + 1;

function planCost(): { plan: number; byHand: number } {
  const inc = deployment(function inc(x: number): number {
    return add(x);
  });
  let node = inc.bind(new InputNode<number>());
  for (let i = 1; i < 100; i++) node = inc.bind(node);
  const graph = build(node, { name: "chain" }).graph;
  const callbacks = {
    call: (_step: unknown, args: unknown[]) => add(args[0] as number),
    handle: () => undefined,
  };
  const N = 20_000;
  const time = (f: () => void): number => {
    for (let i = 0; i < 2_000; i++) f();
    const start = performance.now();
    for (let i = 0; i < N; i++) f();
    return ((performance.now() - start) * 1000) / N;
  };
  const plan = time(() => void runPlan(graph, 0, callbacks));
  const byHand = time(() => {
    let x = 0;
    for (let i = 0; i < 100; i++) x = add(x);
    void Promise.resolve(x);
  });
  return { plan, byHand };
}

export async function main(): Promise<string> {
  console.log(`scale — ${machine()}\n`);
  const { plan, byHand } = planCost();
  const table1 = printTable(
    "Per-request plan cost, 100-node graph (calls are synchronous no-ops)",
    "100 calls by hand",
    "plan walk",
    [{ metric: "per request", baseline: byHand, subject: plan, unit: "µs", target: "report" }],
  );
  global.gc?.();
  const before = process.memoryUsage().rss;
  const started = performance.now();
  const server = await run(wideApp, { port: 0, logLevel: "silent" });
  const startMs = performance.now() - started;
  const status = (await server.status()).applications.wide!;
  const replicas = Object.values(status.deployments).reduce((n, d) => n + d.replicas.length, 0);
  const reconcileStart = performance.now();
  await server.status();
  const statusMs = performance.now() - reconcileStart;
  const perReplicaMiB = (process.memoryUsage().rss - before) / replicas / 2 ** 20;
  await server.close();
  const table2 = [
    `### ${Object.keys(status.deployments).length} deployments × 5 thread replicas (${replicas} replicas)`,
    "",
    "| metric | value |",
    "| --- | ---: |",
    `| start until every deployment is healthy | ${startMs.toFixed(0)} ms |`,
    `| status of every replica | ${statusMs.toFixed(2)} ms |`,
    `| resident memory per replica | ${perReplicaMiB.toFixed(1)} MiB |`,
    "",
  ].join("\n");
  console.log(table2);
  return `${table1}\n${table2}`;
}
