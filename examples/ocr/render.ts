/**
 * Renders known text into PNG images (with @napi-rs/canvas and the DejaVu fonts from npm),
 * so tests and the benchmark can check what the pipeline reads against what was drawn.
 */
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { createCanvas, GlobalFonts } from "@napi-rs/canvas";

const FONT = "DejaVu Sans (tributary)";
const fonts = join(
  dirname(createRequire(import.meta.url).resolve("dejavu-fonts-ttf/package.json")),
  "ttf",
);
GlobalFonts.registerFromPath(join(fonts, "DejaVuSans.ttf"), FONT);

export interface RenderOptions {
  /** Font size in pixels (default 32). */
  readonly size?: number;
  /** Whole-image rotation in degrees, clockwise (default 0). */
  readonly rotate?: number;
  /** Margin around the text block in pixels (default size). */
  readonly margin?: number;
  /** Line spacing as a multiple of the size (default 1.8). */
  readonly leading?: number;
}

/** Black text on white, one image line per entry, left-aligned; PNG bytes. */
export function renderText(lines: readonly string[], options: RenderOptions = {}): Uint8Array {
  const size = options.size ?? 32;
  const margin = options.margin ?? size;
  const leading = options.leading ?? 1.8;
  const measure = createCanvas(1, 1).getContext("2d");
  measure.font = `${size}px "${FONT}"`;
  const textWidth = Math.max(...lines.map((l) => measure.measureText(l).width));
  const blockW = Math.ceil(textWidth + 2 * margin);
  const blockH = Math.ceil(lines.length * size * leading + 2 * margin - (leading - 1) * size);
  const angle = ((options.rotate ?? 0) * Math.PI) / 180;
  const cos = Math.abs(Math.cos(angle));
  const sin = Math.abs(Math.sin(angle));
  const width = Math.ceil(blockW * cos + blockH * sin);
  const height = Math.ceil(blockW * sin + blockH * cos);
  const canvas = createCanvas(width, height);
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, width, height);
  ctx.translate(width / 2, height / 2);
  ctx.rotate(angle);
  ctx.translate(-blockW / 2, -blockH / 2);
  ctx.fillStyle = "#000";
  ctx.font = `${size}px "${FONT}"`;
  ctx.textBaseline = "top";
  lines.forEach((line, i) => ctx.fillText(line, margin, margin + i * size * leading));
  return new Uint8Array(canvas.toBuffer("image/png"));
}

/** Levenshtein distance ÷ the expected length: the character error rate. */
export function characterErrorRate(expected: string, actual: string): number {
  const a = [...expected];
  const b = [...actual];
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(
        previous[j]! + 1,
        row[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = row;
  }
  return previous[b.length]! / Math.max(1, a.length);
}
