/**
 * `npm run bench ocr`, in two parts.
 *
 * 1. Reading, against what a Node user would install instead, in the same run: the served
 *    pipeline over HTTP, `@gutenye/ocr-node` (the same PP-OCR models, its own pre- and
 *    post-processing, no serving framework) and `tesseract.js` with `@tesseract.js-data/eng`
 *    (read from the package's files, never downloaded; one worker per core, in a scheduler,
 *    as its users run it). On a seeded corpus of rendered receipts and invoices
 *    (examples/ocr/corpus.ts), per category and overall: character error rate, word
 *    accuracy, line-count accuracy, spaces lost; p50 latency one image at a time; throughput
 *    with 4 and 8 clients, as the time to read the same pages (3 of each category, short,
 *    medium and long). OCR_PER_CATEGORY sets the corpus size (default 6 a category),
 *    OCR_ENGINES picks engines (tributary,gutenye,tesseract); OCR_OVERHEAD=0 skips part 2,
 *    whose slices BENCH_MS sets.
 * 2. The framework's cost: the served pipeline vs the same classes called directly by a
 *    script, one image after another (onnxruntime-node's `run()` holds the JavaScript
 *    thread, so a script gains nothing from concurrent calls), with 1 onnxruntime thread
 *    per session and with one per core, the better of the two the baseline.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { cpus, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import sharp from "sharp";
import { run, type DeploymentHandle, type Server, type Tensor } from "tributary";
import { app, Detector, OcrPipeline } from "../examples/ocr/app.js";
import { CATEGORIES, corpus, type Sample } from "../examples/ocr/corpus.js";
import { AngleClassifier, TextRecognizer } from "../examples/ocr/models.js";
import { renderText } from "../examples/ocr/render.js";
import { score, summarize, type Score } from "../examples/ocr/scoring.js";
import { machine, median, printTable } from "./stats.js";

const MS = Number(process.env.BENCH_MS ?? 9_000);
const IN_FLIGHT = 8;
const ROUNDS = 3;
const PER_CATEGORY = Number(process.env.OCR_PER_CATEGORY ?? 6);
/** Throughput is measured on this many pages of each category (1–4, 5–12, 13–30 lines). */
const THROUGHPUT_PER_CATEGORY = Number(process.env.OCR_THROUGHPUT_PER_CATEGORY ?? 3);
const ENGINES = (process.env.OCR_ENGINES ?? "tributary,gutenye,tesseract").split(",");

/** Eight pages of 3–5 printed lines, sizes 22–32 px, some tilted. */
function images(): Uint8Array[] {
  const words = "serve models with typed graphs of deployments batching replicas and handles".split(
    " ",
  );
  return Array.from({ length: 8 }, (_, i) =>
    renderText(
      Array.from({ length: 3 + (i % 3) }, (_, l) =>
        Array.from({ length: 4 }, (_, w) => words[(i * 7 + l * 3 + w) % words.length]).join(" "),
      ),
      { size: 22 + (i % 6) * 2, rotate: [0, 2, -3, 0][i % 4]! },
    ),
  );
}

/** An OCR engine: image bytes in, the text read (lines separated by newlines) out. */
type Engine = ((bytes: Uint8Array) => Promise<string>) & { close(): Promise<void> };

/**
 * The pipeline without the framework: the example's own classes, called directly (the
 * pipeline's handles are the instances themselves), so the difference is the framework.
 */
function handWritten(threads: number): Engine {
  const detector = new Detector({ threads });
  const classifier = new AngleClassifier({ threads });
  const recognizer = new TextRecognizer({ threads });
  const handle = <T>(instance: T) => instance as unknown as DeploymentHandle<T>;
  const pipeline = new OcrPipeline(handle(detector), handle(classifier), handle(recognizer));
  const script = async (bytes: Uint8Array): Promise<string> => {
    // Decoded as the image() adapter does: upright, alpha onto white, RGB.
    const { data, info } = await sharp(bytes)
      .rotate()
      .flatten({ background: "#ffffff" })
      .toColourspace("srgb")
      .raw()
      .toBuffer({ resolveWithObject: true });
    const image: Tensor = {
      datatype: "UINT8",
      shape: [info.height, info.width, 3],
      data: new Uint8Array(data.buffer, data.byteOffset, data.length),
    };
    return (await pipeline.read(image, await detector.locate(image))).text;
  };
  script.close = async () => {
    await Promise.all([detector.close(), classifier.close(), recognizer.close()]);
  };
  return script;
}

/** The example served over HTTP, as shipped. */
async function served(): Promise<{ engine: Engine; server: Server }> {
  // OCR_THREADS and OCR_DETECTORS try other settings.
  const threads = process.env.OCR_THREADS ? Number(process.env.OCR_THREADS) : undefined;
  const options = app.withOptions({
    detector: {
      numReplicas: Number(process.env.OCR_DETECTORS ?? 1),
      ...(threads && { userConfig: { threads } }),
    },
    ...(threads && { recognizer: { userConfig: { threads } } }),
  });
  const server = await run(options, { port: 0, logLevel: "silent" });
  const url = `${server.url}${app.routePrefix}`;
  const engine = async (bytes: Uint8Array): Promise<string> => {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": bytes[0] === 0xff ? "image/jpeg" : "image/png" },
      body: bytes,
    });
    if (response.status !== 200) throw new Error(`HTTP ${response.status}`);
    return ((await response.json()) as { text: string }).text;
  };
  engine.close = () => server.close();
  return { engine, server };
}

/** `@gutenye/ocr-node` with its defaults: one instance, called concurrently. */
async function gutenye(): Promise<Engine> {
  // Its types declare `create()` as resolving to `any`: the part used here, typed.
  interface GutenyeOcr {
    detect(image: string): Promise<{ text: string; mean: number }[]>;
  }
  const { default: Ocr } = (await import("@gutenye/ocr-node")) as {
    default: { create(): Promise<GutenyeOcr> };
  };
  const ocr = await Ocr.create();
  // It opens images with sharp, which takes a path or the bytes (its type says path).
  const engine = async (bytes: Uint8Array): Promise<string> => {
    const lines = await ocr.detect(Buffer.from(bytes) as unknown as string);
    return lines.map((l) => l.text).join("\n");
  };
  engine.close = async () => {};
  return engine;
}

/**
 * `tesseract.js` (LSTM, its default) with one worker per core behind a scheduler. The
 * English data comes from `@tesseract.js-data/eng`: its `4.0.0_best_int` folder holds the
 * LSTM-only `eng.traineddata.gz` tesseract.js would otherwise fetch from a CDN for this
 * mode; `cacheMethod: "none"` keeps it from writing a cached copy.
 */
async function tesseract(): Promise<Engine> {
  const { createScheduler, createWorker, OEM } = await import("tesseract.js");
  const require = createRequire(import.meta.url);
  const langPath = join(
    dirname(require.resolve("@tesseract.js-data/eng/package.json")),
    "4.0.0_best_int",
  );
  const cachePath = await mkdtemp(join(tmpdir(), "tesseract-"));
  const scheduler = createScheduler();
  const workers = await Promise.all(
    cpus().map(() =>
      createWorker("eng", OEM.LSTM_ONLY, { langPath, cachePath, cacheMethod: "none", gzip: true }),
    ),
  );
  for (const worker of workers) scheduler.addWorker(worker);
  const engine = async (bytes: Uint8Array): Promise<string> => {
    const result = await scheduler.addJob("recognize", Buffer.from(bytes));
    return result.data.text;
  };
  engine.close = async () => {
    await scheduler.terminate();
    await rm(cachePath, { recursive: true, force: true });
  };
  return engine;
}

/** Requests per second with `inFlight` callers, for about `ms`, cycling through `inputs`. */
async function rate(
  call: (png: Uint8Array) => Promise<unknown>,
  inputs: Uint8Array[],
  inFlight: number,
  ms: number,
): Promise<number> {
  let done = 0;
  let next = 0;
  const deadline = performance.now() + ms;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < deadline) {
        await call(inputs[next++ % inputs.length]!);
        done++;
      }
    }),
  );
  return done / ((performance.now() - start) / 1000);
}

async function timed(call: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await call();
  return performance.now() - start;
}

interface EngineResult {
  readonly name: string;
  readonly scores: Score[];
  readonly p50: number;
  /** Images per second with 4 and 8 clients. */
  readonly rps: Record<number, number>;
}

/** Images per second for `clients` callers sharing `inputs`, each read once. */
async function drain(engine: Engine, inputs: Uint8Array[], clients: number): Promise<number> {
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < inputs.length) await engine(inputs[next++]!.slice());
    }),
  );
  return inputs.length / ((performance.now() - start) / 1000);
}

/** Reads the corpus one image at a time: what each image reads, and how long it takes. */
async function accuracy(name: string, engine: Engine, samples: Sample[]): Promise<EngineResult> {
  for (const sample of samples.slice(0, 3)) await engine(sample.bytes.slice()); // warm up
  const scores: Score[] = [];
  const latencies: number[] = [];
  for (const sample of samples) {
    const start = performance.now();
    const text = await engine(sample.bytes.slice());
    latencies.push(performance.now() - start);
    scores.push(score(sample.text, text));
  }
  const all = summarize(scores);
  const p50 = median(latencies);
  console.log(
    `${name}: CER ${pct(all.cer)}, words ${pct(all.wordAccuracy)}, p50 ${p50.toFixed(0)} ms`,
  );
  return { name, scores, p50, rps: {} };
}

const pct = (v: number): string => `${(v * 100).toFixed(1)}%`;

function engineTables(results: EngineResult[], samples: Sample[]): string {
  const names = results.map((r) => r.name);
  const head = (first: string) => [
    `| ${first} | ${names.join(" | ")} |`,
    `| --- |${names.map(() => " ---: |").join("")}`,
  ];
  const pick = (r: EngineResult, category?: string) =>
    summarize(
      r.scores.filter((_, i) => category === undefined || samples[i]!.category === category),
    );
  const perCategory = (
    title: string,
    metric: (m: ReturnType<typeof summarize>) => number,
  ): string[] => [
    `#### ${title}`,
    "",
    ...head("category (images)"),
    ...[...CATEGORIES, undefined].map((c) => {
      const count = samples.filter((s) => c === undefined || s.category === c).length;
      const label = c === undefined ? `**overall** (${count})` : `${c} (${count})`;
      return `| ${label} | ${results.map((r) => pct(metric(pick(r, c)))).join(" | ")} |`;
    }),
    "",
  ];
  const lines = [
    `### OCR engines on ${samples.length} rendered receipts and invoices (seeded corpus, ${PER_CATEGORY} per category) — ${machine()}`,
    "",
    ...perCategory("Character error rate (lower is better)", (m) => m.cer),
    ...perCategory("Word accuracy", (m) => m.wordAccuracy),
    ...perCategory(
      "Line-count accuracy (images with as many lines read as drawn)",
      (m) => m.lineAccuracy,
    ),
    "#### Overall",
    "",
    ...head("metric"),
    `| spaces dropped or broken | ${results.map((r) => pct(pick(r).spaceErrorRate)).join(" | ")} |`,
    `| p50 latency, one image at a time | ${results.map((r) => `${r.p50.toFixed(0)} ms`).join(" | ")} |`,
    `| images/s, 4 clients | ${results.map((r) => r.rps[4]!.toFixed(2)).join(" | ")} |`,
    `| images/s, 8 clients | ${results.map((r) => r.rps[8]!.toFixed(2)).join(" | ")} |`,
    "",
    "Targets: Tributary's overall character error rate ≤ 3% and below both libraries in every category; word accuracy ≥ 95%; spaces dropped or broken ≤ 1%; images/s at 4 clients ≥ both libraries.",
    "",
  ];
  const text = lines.join("\n");
  console.log(text);
  return text;
}

/**
 * Reading against the libraries: each engine reads the corpus alone, one after another;
 * then their throughput is taken on the same pages, the engines in turn at each client
 * count, so that a slow spell of this shared machine falls on neighbours alike.
 */
async function engines(): Promise<string> {
  const samples = corpus(PER_CATEGORY);
  const started: { name: string; engine: Engine }[] = [];
  try {
    for (const name of ENGINES) {
      if (name === "tributary") {
        started.push({ name: "Tributary (served)", engine: (await served()).engine });
      } else if (name === "gutenye") {
        started.push({ name: "@gutenye/ocr-node", engine: await gutenye() });
      } else if (name === "tesseract") {
        started.push({
          name: `tesseract.js (${cpus().length} workers)`,
          engine: await tesseract(),
        });
      } else throw new Error(`unknown OCR engine "${name}" (tributary, gutenye or tesseract)`);
    }
    const results: EngineResult[] = [];
    for (const { name, engine } of started) results.push(await accuracy(name, engine, samples));
    // The same pages for every engine: the first THROUGHPUT_PER_CATEGORY of each category.
    const load = samples
      .filter((s) => Number(s.name.slice(s.name.lastIndexOf("-") + 1)) < THROUGHPUT_PER_CATEGORY)
      .map((s) => s.bytes);
    for (const clients of [4, 8]) {
      for (const [i, { name, engine }] of started.entries()) {
        const rps = await drain(engine, load, clients);
        results[i]!.rps[clients] = rps;
        console.log(
          `${name}: ${rps.toFixed(2)} images/s at ${clients} clients (${load.length} pages)`,
        );
      }
    }
    return engineTables(results, samples);
  } finally {
    await Promise.all(started.map(({ engine }) => engine.close()));
  }
}

export async function main(): Promise<string> {
  console.log(
    `OCR: the served pipeline against two libraries, and against itself without the framework — ${machine()}\n`,
  );
  const reading = await engines();
  if (process.env.OCR_OVERHEAD === "0") return reading;
  return `${reading}\n${await overhead()}`;
}

/** The served pipeline vs the same classes called by a script. */
async function overhead(): Promise<string> {
  const inputs = images();

  const baselines: { threads: number; rps: number; script: Engine }[] = [];
  for (const threads of [...new Set([1, cpus().length])]) {
    const script = handWritten(threads);
    for (const png of inputs) await script(png); // warm up
    baselines.push({ threads, rps: await rate(script, inputs, 1, MS / ROUNDS), script });
  }
  const best = baselines.reduce((a, b) => (b.rps > a.rps ? b : a));

  const { engine: post, server } = await served();
  try {
    for (const png of inputs) await post(png); // warm up every replica's first run
    await rate(post, inputs, IN_FLIGHT, 1_000);
    const [servedText, scriptText] = [await post(inputs[0]!), await best.script(inputs[0]!)];
    if (servedText !== scriptText)
      console.log(`note: texts differ:\n  served: ${servedText}\n  script: ${scriptText}`);
    // Throughput in alternating slices (script, served batched, served unbatched), so a
    // slow spell of this shared machine falls on all three alike.
    let scriptRps = 0;
    let servedRps = 0;
    let unbatchedRps = 0;
    for (let round = 0; round < ROUNDS; round++) {
      scriptRps += (await rate(best.script, inputs, 1, MS / ROUNDS)) / ROUNDS;
      servedRps += (await rate(post, inputs, IN_FLIGHT, MS / ROUNDS)) / ROUNDS;
      // The same served pipeline with recognition batching off (one model call per line).
      await server.reconfigure("recognizer", { maxBatchSize: 1 });
      unbatchedRps += (await rate(post, inputs, IN_FLIGHT, MS / ROUNDS)) / ROUNDS;
      await server.reconfigure("recognizer", { maxBatchSize: 8 });
    }
    // Latency one request at a time, the script's and the server's requests interleaved so
    // that both see the same moments of this (shared, noisy) machine.
    const scriptMs: number[] = [];
    const servedMs: number[] = [];
    for (let round = 0; round < 4; round++) {
      for (const png of inputs) {
        scriptMs.push(await timed(() => best.script(png)));
        servedMs.push(await timed(() => post(png)));
      }
    }
    const [scriptP50, servedP50] = [median(scriptMs), median(servedMs)];
    const { recognizer } = (await server.status()).applications.ocr!.deployments;
    console.log(`recognizer replicas: ${recognizer?.replicas.length}`);
    for (const b of baselines)
      console.log(
        `script with ${b.threads} onnxruntime thread(s) per session: ${b.rps.toFixed(2)} images/s`,
      );
    const batching = printTable(
      "OCR recognition batching (served, same images, 8 in flight)",
      "maxBatchSize 1",
      "maxBatchSize 8",
      [
        {
          metric: "images/s at saturation",
          baseline: unbatchedRps,
          subject: servedRps,
          unit: "/s",
          target: "—",
        },
      ],
    );
    const main = printTable(
      `OCR (PP-OCRv4 det + cls + rec, 8 rendered pages of 3–5 lines): served over HTTP (${IN_FLIGHT} in flight) vs a hand-written script (${best.threads} onnxruntime thread(s) per session, its best)`,
      "hand-written",
      "served",
      [
        {
          metric: "images/s at saturation",
          baseline: scriptRps,
          subject: servedRps,
          unit: "/s",
          target: "≥ 0.9×",
        },
        {
          metric: "p50 latency, 1 in flight",
          baseline: scriptP50,
          subject: servedP50,
          unit: "ms",
          target: `≤ ${(scriptP50 * 1.1 + 2).toFixed(1)} ms (+10% + 2 ms)`,
        },
      ],
    );
    return `${main}\n${batching}`;
  } finally {
    await server.close();
    await Promise.all(baselines.map((b) => b.script.close()));
  }
}
