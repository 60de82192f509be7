/**
 * The case of letters whose capital is their small letter drawn taller (c o s v w x z), read
 * from the glyph's height. The recognizer tells "O" from "o" by size alone, and in a
 * monospaced face, where a capital O is as narrow as the small one, it often picks the
 * wrong one ("olive Oil"). Here each such letter the recognizer was unsure of (the other
 * case took some of its probability) is measured in the line's crop, as the model saw it,
 * against the letters of the same line that have an unambiguous height: small letters
 * without ascenders (a e m n r u, and c o s v w x z read with confidence) and capitals and
 * digits.
 */
import { sampleInto, type RgbImage } from "./image-ops.js";

/** Letters whose two cases differ only in size. */
const SAME_SHAPE = new Set([..."cosvwxzCOSVWXZ"]);
const X_HEIGHT = /^[acemnorsuvwxz]$/;
const CAP_HEIGHT = /^[A-Z0-9]$/;
/** Below this probability for the other case, the recognizer's case is kept as read. */
export const CASE_DOUBT = 0.02;
/** The model's output steps: one per this many input columns. */
const STEP_WIDTH = 8;

/** One character read: where the model emitted it, and how sure it was of each case. */
export interface ReadChar {
  readonly char: string;
  /** The output step that emitted it (-1 for a space the decoder inserted). */
  readonly step: number;
  /** Its probability, and the probability of the same letter in the other case (0 if none). */
  readonly p: number;
  readonly pOther: number;
}

/** A binary ink mask of the crop resized to `width × height`, ink the minority against the background. */
function inkMask(crop: RgbImage, width: number, height: number): Uint8Array {
  const out = new Float32Array(3 * width * height);
  const raw = { mean: [0, 0, 0], std: [1 / 255, 1 / 255, 1 / 255] } as const; // 0–255 values out
  sampleInto(crop, width, height, raw, { out, offset: 0, planeWidth: width, planeHeight: height });
  const plane = width * height;
  const grey = new Uint8Array(plane);
  for (let i = 0; i < plane; i++) {
    grey[i] = Math.round((out[i]! + out[plane + i]! + out[2 * plane + i]!) / 3);
  }
  // Otsu's threshold, then ink is whichever side the median (the background) is not on.
  const histogram = new Float64Array(256);
  for (const v of grey) histogram[v]!++;
  let total = 0;
  for (let v = 0; v < 256; v++) total += v * histogram[v]!;
  let below = 0;
  let belowSum = 0;
  let best = 0;
  let threshold = 128;
  for (let v = 0; v < 256; v++) {
    below += histogram[v]!;
    if (below === 0 || below === plane) continue;
    belowSum += v * histogram[v]!;
    const m0 = belowSum / below;
    const m1 = (total - belowSum) / (plane - below);
    const between = below * (plane - below) * (m0 - m1) ** 2;
    if (between > best) {
      best = between;
      threshold = v;
    }
  }
  let darker = 0;
  for (const v of grey) if (v <= threshold) darker++;
  const inkIsDark = darker < plane / 2;
  const mask = new Uint8Array(plane);
  for (let i = 0; i < plane; i++) mask[i] = grey[i]! <= threshold === inkIsDark ? 1 : 0;
  return mask;
}

/** The connected ink regions (8-neighbours) of a mask: each pixel's region, and each region's rows. */
interface Regions {
  readonly label: Int32Array;
  readonly top: number[];
  readonly bottom: number[];
}

function regions(mask: Uint8Array, width: number, height: number): Regions {
  const label = new Int32Array(mask.length).fill(-1);
  const top: number[] = [];
  const bottom: number[] = [];
  const stack: number[] = [];
  for (let start = 0; start < mask.length; start++) {
    if (!mask[start] || label[start] !== -1) continue;
    const id = top.length;
    let first = height;
    let last = -1;
    label[start] = id;
    stack.push(start);
    while (stack.length > 0) {
      const i = stack.pop()!;
      const py = Math.floor(i / width);
      const px = i - py * width;
      first = Math.min(first, py);
      last = Math.max(last, py);
      for (let qy = Math.max(0, py - 1); qy <= Math.min(height - 1, py + 1); qy++) {
        for (let qx = Math.max(0, px - 1); qx <= Math.min(width - 1, px + 1); qx++) {
          const j = qy * width + qx;
          if (mask[j] && label[j] === -1) {
            label[j] = id;
            stack.push(j);
          }
        }
      }
    }
    top.push(first);
    bottom.push(last);
  }
  return { label, top, bottom };
}

/**
 * The height of the glyph at column `x`: the rows of the ink region with the most pixels in
 * columns `x ± band`; 0 when there is no ink there.
 */
function glyphHeight(r: Regions, width: number, height: number, x: number, band: number): number {
  const lo = Math.max(0, Math.round(x - band));
  const hi = Math.min(width - 1, Math.round(x + band));
  const counts = new Map<number, number>();
  for (let y = 0; y < height; y++) {
    for (let cx = lo; cx <= hi; cx++) {
      const id = r.label[y * width + cx]!;
      if (id >= 0) counts.set(id, (counts.get(id) ?? 0) + 1);
    }
  }
  let best = -1;
  let most = 0;
  for (const [id, count] of counts) {
    if (count > most) {
      best = id;
      most = count;
    }
  }
  return best < 0 ? 0 : r.bottom[best]! - r.top[best]! + 1;
}

const median = (xs: number[]): number | undefined => {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};

/**
 * The line's text with the case of doubtful same-shape letters set by their height. `crop`
 * is the line as cut out, `width × height` the size the model was given it at; `chars`
 * says, for each character of `text`, where it was read.
 */
export function caseByHeight(
  text: string,
  chars: readonly ReadChar[],
  crop: RgbImage,
  width: number,
  height: number,
): string {
  const letters = [...text];
  if (letters.length !== chars.length) return text;
  const doubtful = chars.flatMap((c, i) =>
    SAME_SHAPE.has(letters[i]!) && c.step >= 0 && c.pOther >= CASE_DOUBT ? [i] : [],
  );
  if (doubtful.length === 0) return text;
  const read = chars.filter((c) => c.step >= 0);
  if (read.length < 3) return text;
  // A glyph is looked for within a quarter of the mean advance on each side of its step.
  const advance = ((read.at(-1)!.step - read[0]!.step) * STEP_WIDTH) / (read.length - 1);
  const ink = regions(inkMask(crop, width, height), width, height);
  const heightAt = (c: ReadChar) =>
    glyphHeight(ink, width, height, (c.step + 0.5) * STEP_WIDTH, Math.max(1, advance / 4));
  const small: number[] = [];
  const tall: number[] = [];
  chars.forEach((c, i) => {
    if (c.step < 0 || doubtful.includes(i) || c.p < 0.9) return;
    if (X_HEIGHT.test(letters[i]!)) small.push(heightAt(c));
    else if (CAP_HEIGHT.test(letters[i]!)) tall.push(heightAt(c));
  });
  const x = median(small);
  const cap = median(tall);
  // Without both heights, or with no clear difference between them, the line says nothing.
  if (x === undefined || cap === undefined || cap <= x * 1.15) return text;
  for (const i of doubtful) {
    const h = heightAt(chars[i]!);
    if (h === 0) continue;
    const upper = Math.abs(h - cap) < Math.abs(h - x);
    letters[i] = upper ? letters[i]!.toUpperCase() : letters[i]!.toLowerCase();
  }
  return letters.join("");
}
