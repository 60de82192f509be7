/**
 * `npm run bench ocr`: the served OCR pipeline over HTTP (four deployments in worker
 * threads, recognition batched) vs a hand-written script that runs the same models with
 * onnxruntime directly, one image after another, on the same rendered images: throughput
 * at saturation and p50 latency at one request at a time.
 *
 * The script uses the example's own pre- and post-processing and model classes, called
 * directly (no framework), so the difference is the framework. onnxruntime-node's `run()`
 * holds the JavaScript thread, so a script gains nothing from concurrent calls: it is
 * measured with 1 onnxruntime thread per session and with one per core (the served
 * example's default), and the better of the two is the baseline.
 */
import { cpus } from "node:os";
import sharp from "sharp";
import { run } from "tributary";
import { app } from "../examples/ocr/app.js";
import { cropQuad, type RgbImage } from "../examples/ocr/image-ops.js";
import { AngleClassifier, TextDetector, TextRecognizer } from "../examples/ocr/models.js";
import { renderText } from "../examples/ocr/render.js";
import { machine, median, printTable } from "./stats.js";

const MS = Number(process.env.BENCH_MS ?? 9_000);
const IN_FLIGHT = 8;
const ROUNDS = 3;

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

/** The same pipeline written by hand: decode, detect, crop, classify, recognize. */
type Script = ((png: Uint8Array) => Promise<string>) & { close(): Promise<void> };

function handWritten(threads: number): Script {
  const detector = new TextDetector({ threads });
  const classifier = new AngleClassifier({ threads });
  const recognizer = new TextRecognizer({ threads });
  const script = async (png: Uint8Array): Promise<string> => {
    // Decoded as the image() adapter does: upright, alpha onto white, RGB.
    const { data, info } = await sharp(png)
      .rotate()
      .flatten({ background: "#ffffff" })
      .toColourspace("srgb")
      .raw()
      .toBuffer({ resolveWithObject: true });
    const image: RgbImage = { width: info.width, height: info.height, data };
    const boxes = await detector.detect(image);
    const { crops } = await classifier.straighten(boxes.map((b) => cropQuad(image, b.box)));
    const texts = await recognizer.recognize(crops);
    return texts
      .filter((t) => t.score >= 0.5 && t.text.trim() !== "")
      .map((t) => t.text)
      .join("\n");
  };
  script.close = async () => {
    await Promise.all([detector.close(), classifier.close(), recognizer.close()]);
  };
  return script;
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

export async function main(): Promise<string> {
  console.log(`OCR pipeline, served vs hand-written — ${machine()}\n`);
  const inputs = images();

  const baselines: { threads: number; rps: number; script: Script }[] = [];
  for (const threads of [...new Set([1, cpus().length])]) {
    const script = handWritten(threads);
    for (const png of inputs) await script(png); // warm up
    baselines.push({ threads, rps: await rate(script, inputs, 1, MS / ROUNDS), script });
  }
  const best = baselines.reduce((a, b) => (b.rps > a.rps ? b : a));

  // The app as shipped; OCR_THREADS and OCR_DETECTORS try other settings.
  const threads = process.env.OCR_THREADS ? Number(process.env.OCR_THREADS) : undefined;
  const served = app.withOptions({
    detector: {
      numReplicas: Number(process.env.OCR_DETECTORS ?? 1),
      ...(threads && { userConfig: { threads } }),
    },
    ...(threads && { recognizer: { userConfig: { threads } } }),
  });
  const server = await run(served, { port: 0, logLevel: "silent" });
  try {
    const url = `${server.url}${app.routePrefix}`;
    const post = async (png: Uint8Array): Promise<string> => {
      const response = await fetch(url, {
        method: "POST",
        headers: { "content-type": "image/png" },
        body: png,
      });
      if (response.status !== 200) throw new Error(`HTTP ${response.status}`);
      return ((await response.json()) as { text: string }).text;
    };
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
