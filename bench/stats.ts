/** Small helpers shared by the benchmarks: timing, medians, and a side-by-side table. */
import { cpus } from "node:os";

export function median(samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

export function percentile(samples: number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? NaN;
}

/** Median latency in microseconds of `n` sequential calls (after `warmup` calls). */
export async function latencyUs(
  call: () => Promise<unknown>,
  n: number,
  warmup = 2_000,
): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await call();
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const start = process.hrtime.bigint();
    await call();
    samples.push(Number(process.hrtime.bigint() - start) / 1000);
  }
  return samples;
}

/** Calls per second with `inFlight` concurrent callers, for about `ms` milliseconds. */
export async function throughput(
  call: () => Promise<unknown>,
  inFlight: number,
  ms: number,
): Promise<number> {
  let done = 0;
  const deadline = performance.now() + ms;
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline) {
      await call();
      done++;
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: inFlight }, worker));
  return done / ((performance.now() - start) / 1000);
}

export interface Row {
  readonly metric: string;
  readonly baseline: number;
  readonly subject: number;
  readonly unit: string;
  /** Target for subject ÷ baseline, as text (`≤ 1.5×`). */
  readonly target: string;
  /** The ratio shown, when it is not subject ÷ baseline (the median of paired rounds' ratios). */
  readonly ratio?: number;
}

/** Prints a side-by-side table with the ratio of each row. */
export function printTable(
  title: string,
  baselineName: string,
  subjectName: string,
  rows: readonly Row[],
): string {
  const fmt = (v: number): string =>
    v >= 100 ? Math.round(v).toLocaleString("en-US") : v.toFixed(1);
  const lines = [
    `### ${title}`,
    "",
    `| metric | ${baselineName} | ${subjectName} | ratio | target |`,
    "| --- | ---: | ---: | ---: | --- |",
    ...rows.map(
      (r) =>
        `| ${r.metric} | ${fmt(r.baseline)} ${r.unit} | ${fmt(r.subject)} ${r.unit} | ${(r.ratio ?? r.subject / r.baseline).toFixed(2)}× | ${r.target} |`,
    ),
    "",
  ];
  const text = lines.join("\n");
  console.log(text);
  return text;
}

export function machine(): string {
  const cpu = cpus()[0]?.model ?? "unknown CPU";
  return `${cpus().length} × ${cpu}, Node.js ${process.version}, ${new Date().toISOString().slice(0, 10)}`;
}

/**
 * RESULTS.md with a full run's sections on top, under one heading (theirs a level below).
 * The file is a log, newest first, with notes written by hand beside the tables: what is
 * already there stays as it is.
 */
export function withRunOnTop(results: string, where: string, sections: string[]): string {
  const run = [
    `### All benchmarks (\`npm run bench -- --report\`), ${where}`,
    "",
    ...sections.map((section) => section.replace(/^(#{3,}) /gm, "#$1 ")),
  ].join("\n");
  const first = results.search(/^#{2,} /m);
  return first < 0
    ? `${results.trimEnd()}\n\n${run.trimEnd()}\n`
    : `${results.slice(0, first)}${run.trimEnd()}\n\n${results.slice(first)}`;
}
