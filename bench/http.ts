/**
 * `npm run bench http`: wrk against (a) a bare Fastify hello-world and (b) a four-deployment
 * no-op diamond pipeline served by Tributary, in one run, on the same machine.
 * Target (issue 12): with one front door, ≥ 0.7× bare Fastify's requests per second (p99
 * reported). This machine's speed drifts by up to 2× within minutes, so the three servers
 * take turns for {@link ROUNDS} rounds, and each ratio is the median of the rounds' own
 * ratios (each round's runs are seconds apart). The same pipeline with 2 front-door worker
 * processes is reported beside it, and (issue 15) the pipeline with its observability on (the default: Prometheus metrics,
 * and tracing with no exporter) against the same with it off: within 5% of throughput.
 * A pipeline of one no-op deployment takes its turn in the same rounds: the front door and
 * a single hop, which tells the front door's own cost from what each further stage adds.
 * So does the same diamond without Tributary (bench/raw-diamond.ts: Fastify and four
 * worker threads with nothing but `postMessage` between them, walked from the route's
 * handler, and chained stage to stage): what any design with the stages in worker threads
 * reaches on the same machine.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import Fastify from "fastify";
import { run } from "tributary";
import { app } from "./fixtures/diamond-noop.js";
import { app as oneApp } from "./fixtures/one-noop.js";
import { rawDiamond } from "./raw-diamond.js";
import { machine, median, printTable, type Row } from "./stats.js";

const DURATION = process.env.BENCH_DURATION ?? "4s";
/** Rounds of bare Fastify, the pipeline and the pooled pipeline, one after another. */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const BODY = '{"x":1}';

interface WrkResult {
  rps: number;
  p50: number;
  p99: number;
  /** CPU time of this process's main thread per request, in µs (NaN without Linux's /proc). */
  mainUs: number;
  /** The share of the run this process's main thread was on a CPU, in %. */
  mainBusy: number;
}

/**
 * CPU time of this process's main thread so far, in ms, from Linux's /proc (utime + stime,
 * in clock ticks of 10 ms); NaN elsewhere. Bare Fastify and the one-front-door pipeline both
 * serve from this thread, so its CPU per request compares them without the run-to-run drift
 * of requests/s, and its busy share says whether the pipeline waits on its replicas.
 */
function mainThreadCpuMs(): number {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return NaN;
  }
}

function toMs(value: string, unit: string): number {
  const n = Number(value);
  return unit === "us" ? n / 1000 : unit === "s" ? n * 1000 : n;
}

async function wrk(url: string, script: string): Promise<WrkResult> {
  const cpuBefore = mainThreadCpuMs();
  const wallBefore = performance.now();
  const { stdout } = await promisify(execFile)(
    "wrk",
    ["-t1", `-c${CONNECTIONS}`, `-d${DURATION}`, "--latency", "-s", script, url],
    { timeout: 120_000 },
  );
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1]);
  const latency = (p: string): number => {
    const match = new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s)`).exec(stdout);
    return match ? toMs(match[1]!, match[2]!) : NaN;
  };
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(stdout)?.[1];
  if (errors) throw new Error(`wrk saw ${errors} error responses from ${url}:\n${stdout}`);
  const cpuMs = mainThreadCpuMs() - cpuBefore;
  const requests = Number(/(\d+) requests in/.exec(stdout)?.[1]);
  return {
    rps,
    p50: latency("50"),
    p99: latency("99"),
    mainUs: (cpuMs * 1000) / requests,
    mainBusy: (100 * cpuMs) / (performance.now() - wallBefore),
  };
}

export async function main(): Promise<string> {
  try {
    await promisify(execFile)("wrk", ["--version"]).catch((e: { stdout?: string }) => {
      if (!e.stdout?.includes("wrk")) throw e;
    });
  } catch {
    const message = "wrk is not installed: `apt-get install -y wrk` (Debian) and run again.";
    console.log(message);
    return `### HTTP pipeline vs bare Fastify\n\n${message}\n`;
  }
  console.log(`HTTP pipeline vs bare Fastify — ${machine()}, wrk -c${CONNECTIONS} -d${DURATION}\n`);
  const dir = await mkdtemp(join(tmpdir(), "tributary-bench-"));
  const script = join(dir, "post.lua");
  await writeFile(
    script,
    `wrk.method = "POST"\nwrk.body = '${BODY}'\nwrk.headers["Content-Type"] = "application/json"\n`,
  );
  // Observability on: each request carries a W3C trace context, which every hop passes on.
  const traced = join(dir, "traced.lua");
  await writeFile(
    traced,
    `wrk.method = "POST"\nwrk.body = '${BODY}'\nwrk.headers["Content-Type"] = "application/json"\n` +
      `wrk.headers["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"\n`,
  );

  // Everything started is closed, whatever fails, in the reverse order.
  const closers: (() => Promise<unknown>)[] = [() => rm(dir, { recursive: true, force: true })];
  try {
    const bare = Fastify({ logger: false });
    closers.push(() => bare.close());
    bare.post("/hello", async () => ({ hello: "world" }));
    await bare.listen({ host: "127.0.0.1", port: 0 });
    const address = bare.server.address();
    const bareUrl = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}/hello`;
    const server = await run(app, { port: 0, logLevel: "silent" });
    closers.push(() => server.close());
    // Observability off: metrics switched off, and requests without a trace context.
    const OFF = { metrics: false } as const;
    const quiet = await run(app, { port: 0, logLevel: "silent", ...OFF });
    closers.push(() => quiet.close());
    const workers = await run(app, { port: 0, logLevel: "silent", http: { workers: 2 } });
    closers.push(() => workers.close());
    const one = await run(oneApp, { port: 0, logLevel: "silent" });
    closers.push(() => one.close());
    const rawHub = await rawDiamond("hub");
    closers.push(() => rawHub.close());
    const rawChain = await rawDiamond("chain");
    closers.push(() => rawChain.close());
    for (const { url } of [server, rawHub, rawChain]) {
      const answer = await fetch(`${url}/diamond`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: BODY,
      });
      const check = (await answer.json()) as { sum: number };
      if (check.sum !== 5) throw new Error(`${url}/diamond answered ${JSON.stringify(check)}`);
    }
    await wrk(bareUrl, script); // warm-up of both, then the measured runs
    await wrk(`${server.url}/diamond`, script);
    await wrk(`${workers.url}/diamond`, script);
    await wrk(`${quiet.url}/diamond`, script);
    await wrk(`${one.url}/diamond`, script);
    await wrk(`${rawHub.url}/diamond`, script);
    await wrk(`${rawChain.url}/diamond`, script);
    type Round = {
      fastify: WrkResult;
      pipeline: WrkResult;
      pooled: WrkResult;
      one: WrkResult;
      hub: WrkResult;
      chain: WrkResult;
    };
    const rounds: Round[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      rounds.push({
        fastify: await wrk(bareUrl, script),
        pipeline: await wrk(`${server.url}/diamond`, script),
        pooled: await wrk(`${workers.url}/diamond`, script),
        one: await wrk(`${one.url}/diamond`, script),
        hub: await wrk(`${rawHub.url}/diamond`, script),
        chain: await wrk(`${rawChain.url}/diamond`, script),
      });
    }
    const med = (pick: (r: Round) => number): number => median(rounds.map(pick));
    /** Each figure's median over the rounds, for one server's runs. */
    const medianOf = (runs: (r: Round) => WrkResult): WrkResult => ({
      rps: med((r) => runs(r).rps),
      p50: med((r) => runs(r).p50),
      p99: med((r) => runs(r).p99),
      mainUs: med((r) => runs(r).mainUs),
      mainBusy: med((r) => runs(r).mainBusy),
    });
    const fastify = medianOf((r) => r.fastify);
    const pipeline = medianOf((r) => r.pipeline);
    /** Requests/s (the median round's ratio) and p99 of one server's runs against bare Fastify. */
    const againstBare = (runs: (r: Round) => WrkResult): Row[] => {
      const subject = medianOf(runs);
      return [
        {
          metric: `requests/s (median of ${ROUNDS} rounds)`,
          baseline: fastify.rps,
          subject: subject.rps,
          unit: "/s",
          target: "",
          ratio: med((r) => runs(r).rps / r.fastify.rps),
        },
        {
          metric: "p99 latency",
          baseline: fastify.p99,
          subject: subject.p99,
          unit: "ms",
          target: "",
        },
      ];
    };
    const each = (pick: (r: Round) => number): string =>
      rounds.map((r) => pick(r).toFixed(2)).join(", ");
    console.log(
      `pipeline ÷ bare Fastify, each round: ${each((r) => r.pipeline.rps / r.fastify.rps)}`,
    );
    console.log(
      `one deployment ÷ bare Fastify, each round: ${each((r) => r.one.rps / r.fastify.rps)}`,
    );
    console.log(
      `raw diamond, walked ÷ bare Fastify, each round: ${each((r) => r.hub.rps / r.fastify.rps)}`,
    );
    console.log(
      `raw diamond, chained ÷ bare Fastify, each round: ${each((r) => r.chain.rps / r.fastify.rps)}`,
    );
    // On (metrics, and a traceparent carried through every hop; no SDK, so no exporter) and
    // off alternate four times (the machine's noise, ±10% from one run to the next here,
    // falls on both alike), and the means compare.
    const ons: WrkResult[] = [];
    const offs: WrkResult[] = [];
    for (let round = 0; round < 4; round++) {
      ons.push(await wrk(`${server.url}/diamond`, traced));
      offs.push(await wrk(`${quiet.url}/diamond`, script));
    }
    const mean = (runs: WrkResult[]): WrkResult => {
      const of = (pick: (r: WrkResult) => number): number =>
        runs.reduce((sum, r) => sum + pick(r), 0) / runs.length;
      return {
        rps: of((r) => r.rps),
        p50: of((r) => r.p50),
        p99: of((r) => r.p99),
        mainUs: of((r) => r.mainUs),
        mainBusy: of((r) => r.mainBusy),
      };
    };
    const on = mean(ons);
    const off = mean(offs);
    const table = printTable(
      "HTTP: four-deployment no-op diamond vs bare Fastify",
      "bare Fastify",
      "pipeline",
      [
        {
          metric: `requests/s (median of ${ROUNDS} rounds; ratio: the median round's)`,
          baseline: fastify.rps,
          subject: pipeline.rps,
          unit: "/s",
          target: "≥ 0.7×",
          ratio: med((r) => r.pipeline.rps / r.fastify.rps),
        },
        {
          metric: "p50 latency",
          baseline: fastify.p50,
          subject: pipeline.p50,
          unit: "ms",
          target: "",
        },
        {
          metric: "p99 latency",
          baseline: fastify.p99,
          subject: pipeline.p99,
          unit: "ms",
          target: "",
        },
      ],
    );
    const main = printTable(
      "This process's main thread during those runs (it serves both; Linux /proc, medians)",
      "bare Fastify",
      "pipeline",
      [
        {
          metric: "CPU per request",
          baseline: fastify.mainUs,
          subject: pipeline.mainUs,
          unit: "µs",
          target: "",
        },
        {
          metric: "busy share of the run",
          baseline: fastify.mainBusy,
          subject: pipeline.mainBusy,
          unit: "%",
          target: "",
        },
      ],
    );
    const stages = printTable(
      "One no-op deployment instead of four (the front door and one hop), in the same rounds",
      "bare Fastify",
      "one deployment",
      [
        ...againstBare((r) => r.one),
        {
          metric: "main-thread CPU per request",
          baseline: fastify.mainUs,
          subject: medianOf((r) => r.one).mainUs,
          unit: "µs",
          target: "",
        },
      ],
    );
    const raw = printTable(
      "The same diamond without Tributary, in the same rounds (Fastify and four worker threads, postMessage only)",
      "bare Fastify",
      "raw diamond",
      [
        ...againstBare((r) => r.hub).map((row) => ({ ...row, metric: `walked: ${row.metric}` })),
        {
          metric: "walked: main-thread CPU per request",
          baseline: fastify.mainUs,
          subject: medianOf((r) => r.hub).mainUs,
          unit: "µs",
          target: "",
        },
        ...againstBare((r) => r.chain).map((row) => ({
          ...row,
          metric: `chained stage to stage: ${row.metric}`,
        })),
      ],
    );
    const againstRaw = printTable(
      "The pipeline against the raw walked diamond, in the same rounds",
      "raw diamond, walked",
      "pipeline",
      [
        {
          metric: `requests/s (median of ${ROUNDS} rounds; ratio: the median round's)`,
          baseline: medianOf((r) => r.hub).rps,
          subject: pipeline.rps,
          unit: "/s",
          target: "report",
          ratio: med((r) => r.pipeline.rps / r.hub.rps),
        },
      ],
    );
    const pool = printTable(
      "The same diamond with http: { workers: 2 } (two front-door processes)",
      "bare Fastify",
      "pipeline, 2 workers",
      againstBare((r) => r.pooled),
    );
    const observed = printTable(
      "The same diamond with observability on (metrics; a traceparent carried through every hop, no SDK or exporter) vs off",
      "off",
      "on",
      [
        { metric: "requests/s", baseline: off.rps, subject: on.rps, unit: "/s", target: "≥ 0.95×" },
        { metric: "p50 latency", baseline: off.p50, subject: on.p50, unit: "ms", target: "" },
        { metric: "p99 latency", baseline: off.p99, subject: on.p99, unit: "ms", target: "" },
        {
          metric: "main-thread CPU per request",
          baseline: off.mainUs,
          subject: on.mainUs,
          unit: "µs",
          target: "",
        },
      ],
    );
    return `${table}\n${main}\n${stages}\n${raw}\n${againstRaw}\n${pool}\n${observed}`;
  } finally {
    for (const close of closers.reverse()) await close().catch(() => undefined);
  }
}
