/**
 * The flagship pipeline: OCR with PaddleOCR's PP-OCRv4 models on onnxruntime-node.
 *
 *            ┌─> TextDetector.detect(image) ──> boxes ─┐
 *   image ───┤                                         ├─> OcrPipeline.read(image, boxes)
 *            └─────────────────────────────────────────┘        │ crop and straighten each box
 *                                                                ├─> AngleClassifier.straighten(crops)
 *                                                                └─> TextRecognizer.read(crop) × lines (batched)
 *
 * Detection, classification and recognition are separate deployments (each its own
 * replicas, worker threads by default); the lines of one image fan out to recognition,
 * whose calls are gathered into batches. `POST /ocr` with an image answers the text, a
 * polygon and a score per line; `GET /ocr` serves a page to try it in a browser.
 */
import { z } from "zod";
import { build, deployment, image, InputNode, type DeploymentHandle, type Tensor } from "tributary";
import type { DetectedBox } from "./db-postprocess.js";
import { cropQuad, type Quad, type RgbImage } from "./image-ops.js";
import { AngleClassifier, TextDetector, TextRecognizer } from "./models.js";

/** One line of text found in the image. */
export interface OcrLine {
  readonly text: string;
  /** Mean probability of the recognized characters. */
  readonly score: number;
  /** Corners in image pixels, clockwise from the top left. */
  readonly box: Quad;
  /** The detector's confidence that the box holds text. */
  readonly boxScore: number;
  /** 180 when the line was upside down. */
  readonly angle: 0 | 180;
}

export interface OcrResult {
  readonly width: number;
  readonly height: number;
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

/** Crops the detected lines, has them turned upright and read, and assembles the result. */
export class OcrPipeline {
  #dropScore = 0.5;

  constructor(
    private readonly classifier: DeploymentHandle<AngleClassifier>,
    private readonly recognizer: DeploymentHandle<TextRecognizer>,
  ) {}

  /** `userConfig`: lines read with a lower mean score than `dropScore` are left out. */
  reconfigure(config: { dropScore?: number }): void {
    this.#dropScore = config.dropScore ?? 0.5;
  }

  async read(tensor: Tensor, boxes: DetectedBox[]): Promise<OcrResult> {
    const rgb = rgbOf(tensor);
    // A box that cannot be straightened (degenerate after clamping) is left out, not fatal.
    const usable: DetectedBox[] = [];
    const crops: RgbImage[] = [];
    for (const b of boxes) {
      try {
        crops.push(cropQuad(rgb, b.box));
        usable.push(b);
      } catch {
        continue;
      }
    }
    const { crops: upright, angles } = await this.classifier.straighten(crops);
    // Fan out: one call per line; the recognizer batches concurrent calls.
    const texts = await Promise.all(upright.map((crop) => this.recognizer.read(crop)));
    const lines: OcrLine[] = [];
    usable.forEach((b, i) => {
      const { text, score } = texts[i]!;
      if (score >= this.#dropScore && text.trim() !== "") {
        lines.push({ text, score, box: b.box, boxScore: b.score, angle: angles[i]! });
      }
    });
    return {
      width: rgb.width,
      height: rgb.height,
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
const pipeline = deployment(OcrPipeline, { maxOngoingRequests: 16 }).bind(classifier, recognizer);

/** The graph's output node: `await ocr.execute({ image: pngBytes })`. */
export const ocr = pipeline.read.bind(input.image, detector.locate.bind(input.image));

export const app = build(ocr, {
  name: "ocr",
  names: { detector, classifier, recognizer, pipeline },
  assets: { "/": new URL("./page.html", import.meta.url) },
});
