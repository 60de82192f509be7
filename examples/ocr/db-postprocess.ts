/**
 * Differentiable Binarization post-processing (PaddleOCR's `DBPostProcess`): threshold the
 * detector's probability map, take each connected region, fit its minimum-area rectangle,
 * score it by the mean probability inside, grow it by the DB "unclip" offset, and scale
 * it back to the original image.
 */
import type { Point, Quad } from "./image-ops.js";

export interface DbOptions {
  /** A pixel is text when its probability exceeds this. */
  readonly threshold: number;
  /** A box is kept when the mean probability inside it exceeds this. */
  readonly boxThreshold: number;
  /**
   * How far a box grows: area × ratio ÷ perimeter. PaddleOCR's default is 1.5; at 1.5 the
   * crops of printed Latin text were tight enough that the recognizer dropped the spaces
   * between words (measured on rendered lines), at 2 it reads them. With the crops padded
   * as well (app.ts `CROP_PADDING`), on the benchmark's corpus (3 pages a category): CER
   * 1.85% and 3.7% of spaces lost at 1.5, 0.92% and 1.0% at 2 (noisy pages lose most).
   */
  readonly unclipRatio: number;
  /** Most boxes returned. */
  readonly maxCandidates: number;
}

export const DB_DEFAULTS: DbOptions = {
  threshold: 0.3,
  boxThreshold: 0.6,
  unclipRatio: 2,
  maxCandidates: 1000,
};

const MIN_SIZE = 3;

export interface DetectedBox {
  readonly box: Quad;
  readonly score: number;
}

/** The probability map of one image, `height × width`. */
export interface ProbabilityMap {
  readonly width: number;
  readonly height: number;
  readonly data: Float32Array;
}

interface Rect {
  readonly cx: number;
  readonly cy: number;
  /** Unit vector along the first side. */
  readonly ux: number;
  readonly uy: number;
  readonly w: number;
  readonly h: number;
}

const cross = (o: Point, a: Point, b: Point): number =>
  (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);

/** Convex hull (Andrew's monotone chain), counter-clockwise in image coordinates. */
export function convexHull(points: Point[]): Point[] {
  const sorted = [...points].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  if (sorted.length < 3) return sorted;
  const lower: Point[] = [];
  for (const p of sorted) {
    while (lower.length >= 2 && cross(lower.at(-2)!, lower.at(-1)!, p) <= 0) lower.pop();
    lower.push(p);
  }
  const upper: Point[] = [];
  for (let i = sorted.length - 1; i >= 0; i--) {
    const p = sorted[i]!;
    while (upper.length >= 2 && cross(upper.at(-2)!, upper.at(-1)!, p) <= 0) upper.pop();
    upper.push(p);
  }
  return [...lower.slice(0, -1), ...upper.slice(0, -1)];
}

/** The minimum-area rectangle around a convex hull (rotating calipers over its edges). */
export function minAreaRect(hull: Point[]): Rect {
  let best: Rect | undefined;
  let bestArea = Infinity;
  const n = hull.length;
  for (let i = 0; i < Math.max(n, 1); i++) {
    const p = hull[i]!;
    const q = hull[(i + 1) % n]!;
    let ux = q[0] - p[0];
    let uy = q[1] - p[1];
    const len = Math.hypot(ux, uy);
    if (len === 0) {
      ux = 1;
      uy = 0;
    } else {
      ux /= len;
      uy /= len;
    }
    let minU = Infinity;
    let maxU = -Infinity;
    let minV = Infinity;
    let maxV = -Infinity;
    for (const [x, y] of hull) {
      const u = x * ux + y * uy;
      const v = -x * uy + y * ux;
      minU = Math.min(minU, u);
      maxU = Math.max(maxU, u);
      minV = Math.min(minV, v);
      maxV = Math.max(maxV, v);
    }
    const area = (maxU - minU) * (maxV - minV);
    if (area < bestArea) {
      bestArea = area;
      const cu = (minU + maxU) / 2;
      const cv = (minV + maxV) / 2;
      best = {
        cx: cu * ux - cv * uy,
        cy: cu * uy + cv * ux,
        ux,
        uy,
        w: maxU - minU,
        h: maxV - minV,
      };
    }
  }
  return best!;
}

/** The rectangle's corners ordered as PaddleOCR's `get_mini_boxes`: tl, tr, br, bl. */
export function corners(rect: Rect): Quad {
  const { cx, cy, ux, uy } = rect;
  const hw = rect.w / 2;
  const hh = rect.h / 2;
  const pts: Point[] = [
    [cx - ux * hw + uy * hh, cy - uy * hw - ux * hh],
    [cx + ux * hw + uy * hh, cy + uy * hw - ux * hh],
    [cx + ux * hw - uy * hh, cy + uy * hw + ux * hh],
    [cx - ux * hw - uy * hh, cy - uy * hw + ux * hh],
  ];
  pts.sort((a, b) => a[0] - b[0]);
  const [l1, l2, r1, r2] = pts as [Point, Point, Point, Point];
  const [tl, bl] = l1[1] <= l2[1] ? [l1, l2] : [l2, l1];
  const [tr, br] = r1[1] <= r2[1] ? [r1, r2] : [r2, r1];
  return [tl, tr, br, bl];
}

/**
 * Mean probability of the pixels whose centres lie inside the convex quad (within half a
 * pixel of it). Each row's run of inside pixels is found from the four edges first, so the
 * sum runs over the pixels inside only.
 */
function meanInside(map: ProbabilityMap, quad: Quad): number {
  const ys = quad.map((p) => p[1]);
  const y0 = Math.max(0, Math.floor(Math.min(...ys)));
  const y1 = Math.min(map.height - 1, Math.ceil(Math.max(...ys)));
  // quad is clockwise on screen (y down): inside is to the right of each edge, that is
  // a·x + b·y + c >= -0.5 with (a, b) the edge's unit normal pointing inside.
  const edges = quad.map((a, i) => {
    const b = quad[(i + 1) % 4]!;
    const length = Math.hypot(b[0] - a[0], b[1] - a[1]) || 1;
    const nx = -(b[1] - a[1]) / length;
    const ny = (b[0] - a[0]) / length;
    return { nx, ny, c: -(nx * a[0] + ny * a[1]) + 0.5 };
  });
  let sum = 0;
  let count = 0;
  for (let y = y0; y <= y1; y++) {
    let from = 0;
    let to = map.width - 1;
    for (const { nx, ny, c } of edges) {
      // nx·x + ny·y + c >= 0
      const rest = ny * y + c;
      if (Math.abs(nx) < 1e-9) {
        if (rest < 0) to = -1;
      } else if (nx > 0) from = Math.max(from, Math.ceil(-rest / nx));
      else to = Math.min(to, Math.floor(-rest / nx));
    }
    const row = y * map.width;
    for (let x = from; x <= to; x++) sum += map.data[row + x]!;
    if (to >= from) count += to - from + 1;
  }
  return count === 0 ? 0 : sum / count;
}

/**
 * Boxes of text in a probability map, in the coordinates of an image `width × height`,
 * read top to bottom and left to right.
 */
export function boxesFromMap(
  map: ProbabilityMap,
  width: number,
  height: number,
  options: DbOptions = DB_DEFAULTS,
): DetectedBox[] {
  const { width: mw, height: mh, data } = map;
  const labels = new Int32Array(mw * mh);
  const stack = new Int32Array(mw * mh);
  // Each row's leftmost and rightmost pixel of the region being filled (-1: none yet).
  const rowMin = new Int32Array(mh).fill(-1);
  const rowMax = new Int32Array(mh);
  const { threshold } = options;
  const boxes: DetectedBox[] = [];
  let label = 0;
  for (let start = 0; start < data.length && boxes.length < options.maxCandidates; start++) {
    if (labels[start] !== 0 || !(data[start]! > threshold)) continue;
    label++;
    // Flood fill (8-connected); keep each row's leftmost and rightmost pixel for the hull.
    let top = 0;
    stack[top++] = start;
    labels[start] = label;
    let size = 0;
    let yMin = mh;
    let yMax = -1;
    while (top > 0) {
      const i = stack[--top]!;
      const x = i % mw;
      const y = (i - x) / mw;
      size++;
      if (rowMin[y] === -1) {
        rowMin[y] = x;
        rowMax[y] = x;
        if (y < yMin) yMin = y;
        if (y > yMax) yMax = y;
      } else if (x < rowMin[y]!) rowMin[y] = x;
      else if (x > rowMax[y]!) rowMax[y] = x;
      const x0 = x > 0 ? x - 1 : x;
      const x1 = x < mw - 1 ? x + 1 : x;
      for (let ny = y > 0 ? y - 1 : y; ny <= y + 1 && ny < mh; ny++) {
        for (let j = ny * mw + x0, end = ny * mw + x1; j <= end; j++) {
          if (labels[j] === 0 && data[j]! > threshold) {
            labels[j] = label;
            stack[top++] = j;
          }
        }
      }
    }
    const points: Point[] = [];
    for (let y = yMin; y <= yMax; y++) {
      if (rowMin[y] === -1) continue;
      points.push([rowMin[y]!, y], [rowMax[y]!, y]);
      rowMin[y] = -1;
    }
    if (size < 4) continue;
    const rect = minAreaRect(convexHull(points));
    if (Math.min(rect.w, rect.h) < MIN_SIZE) continue;
    const score = meanInside(map, corners(rect));
    if (score < options.boxThreshold) continue;
    // Unclip: offset the polygon outwards by area × ratio / perimeter (a rectangle's
    // rounded offset has this rectangle, grown by the offset on each side, as its hull).
    const offset = (rect.w * rect.h * options.unclipRatio) / (2 * (rect.w + rect.h));
    const grown = { ...rect, w: rect.w + 2 * offset, h: rect.h + 2 * offset };
    if (Math.min(grown.w, grown.h) < MIN_SIZE + 2) continue;
    const sx = width / mw;
    const sy = height / mh;
    const box = corners(grown).map(([x, y]): Point => [
      Math.min(Math.max(Math.round(x * sx), 0), width),
      Math.min(Math.max(Math.round(y * sy), 0), height),
    ]) as unknown as Quad;
    // Clamping to the image can collapse corners (a box on a 1-pixel-high image): keep only
    // boxes whose four sides are longer than 3 pixels and that enclose some area.
    if (!isProperQuad(box)) continue;
    boxes.push({ box, score });
  }
  return sortBoxes(boxes);
}

/**
 * A quadrilateral a crop can be cut from: every side longer than 3 pixels, convex, and no
 * corner flattened (each corner's angle between about 12° and 168°).
 */
export function isProperQuad(box: Quad): boolean {
  let sign = 0;
  for (let i = 0; i < 4; i++) {
    const a = box[(i + 3) % 4]!;
    const b = box[i]!;
    const c = box[(i + 1) % 4]!;
    const u = [a[0] - b[0], a[1] - b[1]] as const;
    const v = [c[0] - b[0], c[1] - b[1]] as const;
    const lu = Math.hypot(u[0], u[1]);
    const lv = Math.hypot(v[0], v[1]);
    if (lv <= 3) return false;
    const sine = (u[0] * v[1] - u[1] * v[0]) / (lu * lv);
    if (Math.abs(sine) < 0.2 || (sign !== 0 && Math.sign(sine) !== sign)) return false;
    sign = Math.sign(sine);
  }
  return true;
}

/** Top to bottom; boxes on one line (tops within 10 px) left to right. */
export function sortBoxes(boxes: DetectedBox[]): DetectedBox[] {
  const sorted = [...boxes].sort((a, b) => a.box[0][1] - b.box[0][1] || a.box[0][0] - b.box[0][0]);
  for (let i = 0; i < sorted.length - 1; i++) {
    for (let j = i; j >= 0; j--) {
      const a = sorted[j]!;
      const b = sorted[j + 1]!;
      if (Math.abs(b.box[0][1] - a.box[0][1]) < 10 && b.box[0][0] < a.box[0][0]) {
        sorted[j] = b;
        sorted[j + 1] = a;
      } else break;
    }
  }
  return sorted;
}
