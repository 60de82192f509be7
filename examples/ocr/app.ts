/**
 * The flagship pipeline: OCR with PaddleOCR's PP-OCRv4 models on onnxruntime-node.
 *
 *            ┌─> TextDetector.detect(image) ──> boxes ─┐
 *   image ───┤                                         ├─> OcrPipeline.read(image, boxes)
 *            └─────────────────────────────────────────┘        │ crop and straighten each box
 *                                                                ├─> AngleClassifier.straighten(crops)
 *                                  a page on its side or upside down: turned upright,
 *                                  Detector.locate(upright) and straighten again
 *                                                                └─> TextRecognizer.read(crop) × lines (batched)
 *                                                                    then the boxes of a row joined
 *
 * Detection, classification and recognition are separate deployments (each its own
 * replicas, worker threads by default); the lines of one image fan out to recognition,
 * whose calls are gathered into batches. `POST /ocr` with an image answers the text, and
 * per line (a row of the page) a polygon, scores and the boxes it joins; `GET /ocr` serves
 * a page to try it in a browser.
 */
import { z } from "zod";
import { build, deployment, image, InputNode, type DeploymentHandle, type Tensor } from "tributary";
import type { DetectedBox } from "./db-postprocess.js";
import {
  cropQuad,
  isTallQuad,
  padQuad,
  turnImage,
  unturnPoint,
  type Quad,
  type RgbImage,
} from "./image-ops.js";
import { groupRows, hullBox, uprightTurns } from "./layout.js";
import { AngleClassifier, TextDetector, TextRecognizer } from "./models.js";

/** One box of text the detector found, and what was read in it. */
export interface OcrPart {
  readonly text: string;
  /** Mean probability of the recognized characters. */
  readonly score: number;
  /** Corners in image pixels, clockwise from the top left of the text. */
  readonly box: Quad;
  /** The detector's confidence that the box holds text. */
  readonly boxScore: number;
  /** 180 when the box's text was upside down on the (upright) page. */
  readonly angle: 0 | 180;
}

/** One line of text: the boxes on one row of the page, left to right. */
export interface OcrLine extends OcrPart {
  /** The row's boxes, in reading order; `text` joins theirs with a space, or a tab across a wide gap. */
  readonly parts: OcrPart[];
}

export interface OcrResult {
  readonly width: number;
  readonly height: number;
  /** Clockwise degrees the image was turned to read it upright (a page scanned sideways). */
  readonly rotation: 0 | 90 | 180 | 270;
  readonly lines: OcrLine[];
  /** The lines' text, one per line, top to bottom. */
  readonly text: string;
}

/** The decoded image as the `image()` adapter gives it: UINT8, shape `[height, width, 3]`. */
export function rgbOf(tensor: Tensor): RgbImage {
  const [height, width, channels] = tensor.shape;
  if (tensor.datatype !== "UINT8" || channels !== 3 || !(tensor.data instanceof Uint8Array)) {
    throw new TypeError(
      `Expected an RGB image tensor (UINT8, [height, width, 3]), got ${tensor.datatype} [${tensor.shape.join(", ")}].`,
    );
  }
  return { width: width!, height: height!, data: tensor.data };
}

/** Detection as a deployment step: the image tensor in, boxes out. */
export class Detector extends TextDetector {
  locate(tensor: Tensor): Promise<DetectedBox[]> {
    return this.detect(rgbOf(tensor));
  }
}

/**
 * The recognizer reads better with more margin above and below the text than the detector's
 * box leaves (its box hugs the glyphs): the crop is grown by this fraction of its height on
 * each of its long sides. Measured on 84 rendered lines (4 texts, 3 faces, 14–48 px):
 * exact lines 48 with no padding, 71 at 0.1, 76 at 0.15, 77 at 0.2, 76 at 0.25, 75 at
 * 0.3; the lines it fixes are those whose spaces were dropped ("INVOICE2048").
 */
export const CROP_PADDING = 0.2;

/** A box with its crop, straightened and classified. */
interface Straightened {
  readonly boxes: DetectedBox[];
  readonly crops: RgbImage[];
  readonly angles: (0 | 180)[];
}

/**
 * Crops the detected lines, turns the page upright when it lies on its side or upside down,
 * has the lines read, and joins the boxes of each row into a line.
 */
export class OcrPipeline {
  #dropScore = 0.5;

  constructor(
    private readonly detector: DeploymentHandle<Detector>,
    private readonly classifier: DeploymentHandle<AngleClassifier>,
    private readonly recognizer: DeploymentHandle<TextRecognizer>,
  ) {}

  /** `userConfig`: lines read with a lower mean score than `dropScore` are left out. */
  reconfigure(config: { dropScore?: number }): void {
    this.#dropScore = config.dropScore ?? 0.5;
  }

  /** Crops `boxes` out of `image` and has the classifier turn the upside-down ones. */
  async #straighten(image: RgbImage, boxes: DetectedBox[]): Promise<Straightened> {
    // A box that cannot be straightened (degenerate after clamping) is left out, not fatal.
    const usable: DetectedBox[] = [];
    const crops: RgbImage[] = [];
    for (const b of boxes) {
      try {
        crops.push(cropQuad(image, padQuad(b.box, CROP_PADDING)));
        usable.push(b);
      } catch {
        continue;
      }
    }
    const straightened = await this.classifier.straighten(crops);
    return { boxes: usable, ...straightened };
  }

  async read(tensor: Tensor, boxes: DetectedBox[]): Promise<OcrResult> {
    const rgb = rgbOf(tensor);
    let page = await this.#straighten(rgb, boxes);
    // A page turned a quarter or a half: turned upright and detected again, so that its
    // lines are found, ordered and grouped as on an upright page.
    const turns = uprightTurns(
      page.boxes.map((b) => b.box),
      page.angles.map((a) => a === 180),
      isTallQuad,
    );
    if (turns !== 0) {
      const upright = turnImage(rgb, turns);
      // A copy: the call moves the buffer it is given, and the crops are cut from this one.
      const located = await this.detector.locate({
        datatype: "UINT8",
        shape: [upright.height, upright.width, 3],
        data: upright.data.slice(),
      });
      page = await this.#straighten(upright, located);
    }
    // Fan out: one call per line; the recognizer batches concurrent calls.
    const texts = await Promise.all(page.crops.map((crop) => this.recognizer.read(crop)));
    const parts: OcrPart[] = [];
    page.boxes.forEach((b, i) => {
      const { text, score } = texts[i]!;
      if (score >= this.#dropScore && text.trim() !== "") {
        parts.push({
          text: text.trim(),
          score,
          box: b.box,
          boxScore: b.score,
          angle: page.angles[i]!,
        });
      }
    });
    // Rows are found on the upright page; the boxes answered are in the image as sent.
    const unturn = (box: Quad): Quad =>
      box.map((p) => unturnPoint(p, turns, rgb.width, rgb.height)) as unknown as Quad;
    const lines = groupRows(parts).map(({ parts: row, text }): OcrLine => {
      const chars = row.reduce((n, p) => n + p.text.length, 0);
      return {
        text,
        score: row.reduce((s, p) => s + p.score * p.text.length, 0) / Math.max(1, chars),
        box: unturn(hullBox(row.map((p) => p.box))),
        boxScore: Math.min(...row.map((p) => p.boxScore)),
        angle: row.every((p) => p.angle === 180) ? 180 : 0,
        parts: row.map((p) => ({ ...p, box: unturn(p.box) })),
      };
    });
    return {
      width: rgb.width,
      height: rgb.height,
      rotation: ((turns * 90) % 360) as OcrResult["rotation"],
      lines,
      text: lines.map((l) => l.text).join("\n"),
    };
  }
}

export const input = new InputNode(
  z.object({ image: image().describe("A PNG, JPEG or WebP image with printed text.") }),
);
const detector = deployment(Detector, { maxOngoingRequests: 4 }).bind();
const classifier = deployment(AngleClassifier, { maxOngoingRequests: 8 }).bind();
// A page can hold hundreds of lines, all sent at once: room for them in flight and queued.
const recognizer = deployment(TextRecognizer, {
  maxOngoingRequests: 128,
  maxQueuedRequests: 2000,
}).bind();
const pipeline = deployment(OcrPipeline, { maxOngoingRequests: 16 }).bind(
  detector,
  classifier,
  recognizer,
);

/** The graph's output node: `await ocr.execute({ image: pngBytes })`. */
export const ocr = pipeline.read.bind(input.image, detector.locate.bind(input.image));

export const app = build(ocr, {
  name: "ocr",
  names: { detector, classifier, recognizer, pipeline },
  assets: { "/": new URL("./page.html", import.meta.url) },
});
