/**
 * `npm run bench scale`: (a) the per-request cost of walking a 100-node plan, beside calling
 * the same 100 functions by hand; (b) what a thread replica costs, each mode in a fresh
 * process: a JavaScript app on the built package (no TypeScript loader anywhere), the same
 * app in TypeScript (tsx in each replica), and the library run from its TypeScript
 * sources (what every replica paid before the package was compiled), beside a bare worker
 * thread (the floor); (c) starting many deployments × 5 thread replicas. SCALE_DEPLOYMENTS
 * sets the count (default 10; 200 × 5 thread replicas needs more memory than this machine has).
 */
import { run, build, deployment, InputNode } from "tributary";
import { runPlan } from "tributary/internal";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
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

interface ReplicaCost {
  startMs: number;
  replicas: number;
  perReplicaMiB: number;
}

/** One mode of bench/fixtures/replica-cost.mjs in a fresh process. */
async function replicaCost(
  app: string,
  size: { deployments: number; replicas: number },
  flags: { tsx?: boolean; source?: boolean; bare?: boolean } = {},
): Promise<ReplicaCost> {
  const script = fileURLToPath(new URL("./fixtures/replica-cost.mjs", import.meta.url));
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => key !== "NODE_OPTIONS"),
  );
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [
      "--expose-gc",
      ...(flags.source ? ["--conditions=tributary-source"] : []),
      ...(flags.tsx ? ["--import", "tsx"] : []),
      script,
      flags.bare ? "--bare" : fileURLToPath(new URL(`./fixtures/${app}`, import.meta.url)),
    ],
    {
      env: {
        ...env,
        SCALE_DEPLOYMENTS: String(size.deployments),
        SCALE_REPLICAS: String(size.replicas),
      },
      timeout: 600_000,
      maxBuffer: 1 << 20,
    },
  );
  return JSON.parse(stdout.trim().split("\n").at(-1)!) as ReplicaCost;
}

async function replicaCosts(): Promise<string> {
  const one = { deployments: 1, replicas: 1 };
  const ten = { deployments: 2, replicas: 5 };
  const modes = [
    {
      label: "bare worker thread (the floor)",
      run: (size: typeof one) => replicaCost("", size, { bare: true }),
    },
    {
      label: "JavaScript app, built package",
      run: (size: typeof one) => replicaCost("wide-app.mjs", size),
    },
    {
      label: "TypeScript app, built package (tsx in replicas)",
      run: (size: typeof one) => replicaCost("wide-app.ts", size, { tsx: true }),
    },
    {
      label: "TypeScript app, library from its sources (before)",
      run: (size: typeof one) => replicaCost("wide-app.ts", size, { tsx: true, source: true }),
    },
  ];
  const rows = [];
  for (const mode of modes) {
    const single = await mode.run(one);
    const many = await mode.run(ten);
    rows.push(
      `| ${mode.label} | ${single.startMs.toFixed(0)} ms | ${many.perReplicaMiB.toFixed(1)} MiB |`,
    );
  }
  const table = [
    "### What a thread replica costs (no-op deployment; each mode in a fresh process)",
    "",
    "Start: median time from `run()` to healthy for one replica, over 5 starts after a warm-up.",
    "Memory: resident memory added per replica, 10 replicas. Targets for a JavaScript app: ≤ 100 ms and ≤ 15 MiB.",
    "",
    "| mode | start, 1 replica | memory per replica |",
    "| --- | ---: | ---: |",
    ...rows,
    "",
  ].join("\n");
  console.log(table);
  return table;
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
  const table3 = await replicaCosts();
  return `${table1}\n${table2}\n${table3}`;
}
