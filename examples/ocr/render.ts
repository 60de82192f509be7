/**
 * Renders known text into PNG images (with @napi-rs/canvas and the DejaVu fonts from npm),
 * so tests and the benchmark can check what the pipeline reads against what was drawn.
 */
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { createCanvas, GlobalFonts } from "@napi-rs/canvas";

const fonts = join(
  dirname(createRequire(import.meta.url).resolve("dejavu-fonts-ttf/package.json")),
  "ttf",
);
/** The DejaVu faces text can be drawn in, each registered under its own family name. */
export const FONTS = {
  sans: "DejaVu Sans (tributary)",
  serif: "DejaVu Serif (tributary)",
  mono: "DejaVu Sans Mono (tributary)",
} as const;
export type FontName = keyof typeof FONTS;
GlobalFonts.registerFromPath(join(fonts, "DejaVuSans.ttf"), FONTS.sans);
GlobalFonts.registerFromPath(join(fonts, "DejaVuSerif.ttf"), FONTS.serif);
GlobalFonts.registerFromPath(join(fonts, "DejaVuSansMono.ttf"), FONTS.mono);

/**
 * One line of a page: its text, or a row of two columns, the first left-aligned and the
 * second right-aligned at the page's right margin (an item and its price).
 */
export type PageLine = string | readonly [left: string, right: string];

export interface RenderOptions {
  /** Font size in pixels (default 32). */
  readonly size?: number;
  /** Whole-image rotation in degrees, clockwise (default 0). */
  readonly rotate?: number;
  /** Margin around the text block in pixels (default size). */
  readonly margin?: number;
  /** Line spacing as a multiple of the size (default 1.8). */
  readonly leading?: number;
  /** The face (default sans). */
  readonly font?: FontName;
  /** Text and background colours, CSS (default black on white). */
  readonly ink?: string;
  readonly paper?: string;
  /** Standard deviation of Gaussian noise added to each pixel, 0–255 (default none). */
  readonly noise?: number;
  /** Encode as JPEG at this quality (1–100) instead of PNG. */
  readonly jpegQuality?: number;
  /** The noise's seed (default 1). */
  readonly seed?: number;
}

/** A small seeded generator (mulberry32): the same seed gives the same numbers in [0, 1). */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The text a page's lines hold: one per line, a tab between the columns of a row. */
export function pageText(lines: readonly PageLine[]): string {
  return lines.map((l) => (typeof l === "string" ? l : l.join("\t"))).join("\n");
}

/**
 * Text on a plain background, one image line per entry, left-aligned (a row's second
 * column right-aligned); PNG bytes, or JPEG with `jpegQuality`.
 */
export function renderText(lines: readonly PageLine[], options: RenderOptions = {}): Uint8Array {
  const size = options.size ?? 32;
  const margin = options.margin ?? size;
  const leading = options.leading ?? 1.8;
  const font = `${size}px "${FONTS[options.font ?? "sans"]}"`;
  const measure = createCanvas(1, 1).getContext("2d");
  measure.font = font;
  const gap = 3 * size; // at least this much between a row's columns
  const textWidth = Math.max(
    ...lines.map((l) =>
      typeof l === "string"
        ? measure.measureText(l).width
        : measure.measureText(l[0]).width + gap + measure.measureText(l[1]).width,
    ),
  );
  const blockW = Math.ceil(textWidth + 2 * margin);
  const blockH = Math.ceil(lines.length * size * leading + 2 * margin - (leading - 1) * size);
  const angle = ((options.rotate ?? 0) * Math.PI) / 180;
  const cos = Math.abs(Math.cos(angle));
  const sin = Math.abs(Math.sin(angle));
  const width = Math.ceil(blockW * cos + blockH * sin);
  const height = Math.ceil(blockW * sin + blockH * cos);
  const canvas = createCanvas(width, height);
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = options.paper ?? "#fff";
  ctx.fillRect(0, 0, width, height);
  ctx.translate(width / 2, height / 2);
  ctx.rotate(angle);
  ctx.translate(-blockW / 2, -blockH / 2);
  ctx.fillStyle = options.ink ?? "#000";
  ctx.font = font;
  ctx.textBaseline = "top";
  lines.forEach((line, i) => {
    const y = margin + i * size * leading;
    if (typeof line === "string") {
      ctx.fillText(line, margin, y);
    } else {
      ctx.fillText(line[0], margin, y);
      ctx.textAlign = "right";
      ctx.fillText(line[1], blockW - margin, y);
      ctx.textAlign = "left";
    }
  });
  if (options.noise) {
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    const pixels = ctx.getImageData(0, 0, width, height);
    const random = seeded(options.seed ?? 1);
    const { data } = pixels;
    for (let i = 0; i < data.length; i += 4) {
      // Box–Muller: one normal sample per pixel, the same on its three channels.
      const n =
        Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random()) * options.noise;
      for (let c = 0; c < 3; c++) data[i + c] = Math.min(255, Math.max(0, data[i + c]! + n));
    }
    ctx.putImageData(pixels, 0, 0);
  }
  return new Uint8Array(
    options.jpegQuality === undefined
      ? canvas.toBuffer("image/png")
      : canvas.toBuffer("image/jpeg", options.jpegQuality),
  );
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
