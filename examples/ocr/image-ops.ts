/**
 * Pixel work for OCR, on plain RGB buffers (rows top to bottom, 3 bytes a pixel): sampling
 * an image into a normalized CHW tensor, cutting a rotated quadrilateral out of an image,
 * and quarter turns. Written out rather than pulled from OpenCV: the pipeline needs only
 * these, and they run unchanged in any replica.
 */

/** An RGB image: `data[(y * width + x) * 3 + c]`. */
export interface RgbImage {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;
}

export type Point = readonly [x: number, y: number];
/** Corners clockwise from the top left: top-left, top-right, bottom-right, bottom-left. */
export type Quad = readonly [Point, Point, Point, Point];

/** Per-channel normalization `(v / 255 - mean) / std`, channels in tensor order. */
export interface Normalization {
  readonly mean: readonly [number, number, number];
  readonly std: readonly [number, number, number];
}

/** Where a resized image goes inside a (padded, batched) NCHW float tensor. */
export interface TensorSlot {
  readonly out: Float32Array;
  /** Index of this item's first element (`n * 3 * planeHeight * planeWidth`). */
  readonly offset: number;
  readonly planeWidth: number;
  readonly planeHeight: number;
}

/**
 * Resizes `image` to `width × height` (bilinear, pixel centres aligned as OpenCV's
 * INTER_LINEAR does) and writes it normalized into `slot`, channels in BGR order: the
 * PaddleOCR models were trained on OpenCV's BGR images. Pixels of the plane outside
 * `width × height` are left as they are (zero padding).
 */
export function sampleInto(
  image: RgbImage,
  width: number,
  height: number,
  norm: Normalization,
  slot: TensorSlot,
): void {
  const { data, width: sw, height: sh } = image;
  const plane = slot.planeWidth * slot.planeHeight;
  const scale = [0, 1, 2].map((c) => 1 / (255 * norm.std[c]!));
  const shift = [0, 1, 2].map((c) => norm.mean[c]! / norm.std[c]!);
  const fx = sw / width;
  const fy = sh / height;
  const x0s = new Int32Array(width);
  const x1s = new Int32Array(width);
  const wxs = new Float32Array(width);
  for (let x = 0; x < width; x++) {
    const sx = Math.min(Math.max((x + 0.5) * fx - 0.5, 0), sw - 1);
    const x0 = Math.floor(sx);
    x0s[x] = x0 * 3;
    x1s[x] = Math.min(x0 + 1, sw - 1) * 3;
    wxs[x] = sx - x0;
  }
  for (let y = 0; y < height; y++) {
    const sy = Math.min(Math.max((y + 0.5) * fy - 0.5, 0), sh - 1);
    const y0 = Math.floor(sy);
    const wy = sy - y0;
    const row0 = y0 * sw * 3;
    const row1 = Math.min(y0 + 1, sh - 1) * sw * 3;
    const base = slot.offset + y * slot.planeWidth;
    for (let x = 0; x < width; x++) {
      const a = row0 + x0s[x]!;
      const b = row0 + x1s[x]!;
      const c = row1 + x0s[x]!;
      const d = row1 + x1s[x]!;
      const wx = wxs[x]!;
      for (let ch = 0; ch < 3; ch++) {
        const src = 2 - ch; // BGR
        const top = data[a + src]! + (data[b + src]! - data[a + src]!) * wx;
        const bottom = data[c + src]! + (data[d + src]! - data[c + src]!) * wx;
        const v = top + (bottom - top) * wy;
        slot.out[base + ch * plane + x] = v * scale[ch]! - shift[ch]!;
      }
    }
  }
}

/** Solves `a · x = b` (n ≤ 8) by Gaussian elimination with partial pivoting. */
function solve(a: number[][], b: number[]): number[] {
  const n = b.length;
  for (let col = 0; col < n; col++) {
    let pivot = col;
    for (let r = col + 1; r < n; r++) {
      if (Math.abs(a[r]![col]!) > Math.abs(a[pivot]![col]!)) pivot = r;
    }
    [a[col], a[pivot]] = [a[pivot]!, a[col]!];
    [b[col], b[pivot]] = [b[pivot]!, b[col]!];
    const p = a[col]![col]!;
    if (Math.abs(p) < 1e-12) throw new Error("degenerate quadrilateral");
    for (let r = col + 1; r < n; r++) {
      const f = a[r]![col]! / p;
      for (let c = col; c < n; c++) a[r]![c]! -= f * a[col]![c]!;
      b[r]! -= f * b[col]!;
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = b[r]!;
    for (let c = r + 1; c < n; c++) s -= a[r]![c]! * x[c]!;
    x[r] = s / a[r]![r]!;
  }
  return x;
}

/** The homography taking `from[i]` to `to[i]`, as 9 coefficients (last one 1). */
function homography(from: Quad, to: Quad): number[] {
  const a: number[][] = [];
  const b: number[] = [];
  for (let i = 0; i < 4; i++) {
    const [x, y] = from[i]!;
    const [u, v] = to[i]!;
    a.push([x, y, 1, 0, 0, 0, -u * x, -u * y]);
    b.push(u);
    a.push([0, 0, 0, x, y, 1, -v * x, -v * y]);
    b.push(v);
  }
  return [...solve(a, b), 1];
}

const distance = (p: Point, q: Point): number => Math.hypot(p[0] - q[0], p[1] - q[1]);

/**
 * Cuts the quadrilateral `quad` out of `image` and straightens it into an upright
 * rectangle as wide as its longer horizontal edge and as tall as its longer vertical one
 * (a perspective warp, bilinear, edges clamped). A crop at least 1.5 times taller than
 * wide is turned a quarter counter-clockwise, as PaddleOCR does for vertical text.
 */
export function cropQuad(image: RgbImage, quad: Quad): RgbImage {
  const { width, height } = quadSize(quad);
  const h = homography(
    [
      [0, 0],
      [width, 0],
      [width, height],
      [0, height],
    ],
    quad,
  );
  const out = new Uint8Array(width * height * 3);
  const { data, width: sw, height: sh } = image;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const w = h[6]! * x + h[7]! * y + h[8]!;
      const sx = Math.min(Math.max((h[0]! * x + h[1]! * y + h[2]!) / w, 0), sw - 1);
      const sy = Math.min(Math.max((h[3]! * x + h[4]! * y + h[5]!) / w, 0), sh - 1);
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      const x1 = Math.min(x0 + 1, sw - 1);
      const y1 = Math.min(y0 + 1, sh - 1);
      const wx = sx - x0;
      const wy = sy - y0;
      const a = (y0 * sw + x0) * 3;
      const b = (y0 * sw + x1) * 3;
      const c = (y1 * sw + x0) * 3;
      const d = (y1 * sw + x1) * 3;
      const o = (y * width + x) * 3;
      for (let ch = 0; ch < 3; ch++) {
        const top = data[a + ch]! + (data[b + ch]! - data[a + ch]!) * wx;
        const bottom = data[c + ch]! + (data[d + ch]! - data[c + ch]!) * wx;
        out[o + ch] = Math.round(top + (bottom - top) * wy);
      }
    }
  }
  const crop = { width, height, data: out };
  return isTall(width, height) ? rotate90(crop) : crop;
}

/** The size of the crop `cropQuad` cuts: the longer of each pair of opposite sides. */
function quadSize([tl, tr, br, bl]: Quad): { width: number; height: number } {
  return {
    width: Math.max(1, Math.round(Math.max(distance(tl, tr), distance(bl, br)))),
    height: Math.max(1, Math.round(Math.max(distance(tl, bl), distance(tr, br)))),
  };
}

const isTall = (width: number, height: number): boolean => height >= 1.5 * width;

/** Whether `cropQuad` turns this quad's crop a quarter (it is at least 1.5 times taller than wide). */
export function isTallQuad(quad: Quad): boolean {
  const { width, height } = quadSize(quad);
  return isTall(width, height);
}

/** A quarter turn counter-clockwise (numpy's `rot90`). */
export function rotate90(image: RgbImage): RgbImage {
  const { width, height, data } = image;
  const out = new Uint8Array(data.length);
  // out is `height` wide and `width` tall: out(y, x) = in(x, width - 1 - y).
  for (let y = 0; y < width; y++) {
    for (let x = 0; x < height; x++) {
      const s = (x * width + (width - 1 - y)) * 3;
      const o = (y * height + x) * 3;
      out[o] = data[s]!;
      out[o + 1] = data[s + 1]!;
      out[o + 2] = data[s + 2]!;
    }
  }
  return { width: height, height: width, data: out };
}

/** A half turn. */
export function rotate180(image: RgbImage): RgbImage {
  const { data } = image;
  const out = new Uint8Array(data.length);
  const n = data.length / 3;
  for (let i = 0; i < n; i++) {
    const s = (n - 1 - i) * 3;
    out[i * 3] = data[s]!;
    out[i * 3 + 1] = data[s + 1]!;
    out[i * 3 + 2] = data[s + 2]!;
  }
  return { width: image.width, height: image.height, data: out };
}

/**
 * The quad grown along its own axes: each long side moved out by `vertical` × the quad's
 * height, each short side by `horizontal` × its height. Used for the crops the recognizer
 * reads, which want more margin above and below the text than the detector's box has.
 */
export function padQuad(quad: Quad, vertical: number, horizontal = 0): Quad {
  const [tl, tr, br, bl] = quad;
  const height = (distance(tl, bl) + distance(tr, br)) / 2;
  const width = (distance(tl, tr) + distance(bl, br)) / 2;
  if (height === 0 || width === 0) return quad;
  // Unit vectors along the top edge and down the left edge (averaged over opposite sides).
  const ux = (tr[0] - tl[0] + br[0] - bl[0]) / (2 * width);
  const uy = (tr[1] - tl[1] + br[1] - bl[1]) / (2 * width);
  const vx = (bl[0] - tl[0] + br[0] - tr[0]) / (2 * height);
  const vy = (bl[1] - tl[1] + br[1] - tr[1]) / (2 * height);
  const dv = vertical * height;
  const du = horizontal * height;
  const move = (p: Point, su: number, sv: number): Point => [
    p[0] + su * du * ux + sv * dv * vx,
    p[1] + su * du * uy + sv * dv * vy,
  ];
  return [move(tl, -1, -1), move(tr, 1, -1), move(br, 1, 1), move(bl, -1, 1)];
}

/** Clockwise quarter turns: 0, 1 (90°), 2 (180°) or 3 (270°). */
export type QuarterTurns = 0 | 1 | 2 | 3;

/** The image turned `turns` quarter turns clockwise. */
export function turnImage(image: RgbImage, turns: QuarterTurns): RgbImage {
  switch (turns) {
    case 0:
      return image;
    case 1:
      return rotate90(rotate180(image));
    case 2:
      return rotate180(image);
    case 3:
      return rotate90(image);
  }
}

/**
 * Where a point of an image turned `turns` quarter turns clockwise lies in the image before
 * the turn (`width × height` is the size before it).
 */
export function unturnPoint(p: Point, turns: QuarterTurns, width: number, height: number): Point {
  const [x, y] = p;
  switch (turns) {
    case 0:
      return p;
    case 1: // turned clockwise: (x, y) came from (y, height - x)
      return [y, height - x];
    case 2:
      return [width - x, height - y];
    case 3: // turned counter-clockwise: (x, y) came from (width - y, x)
      return [width - y, x];
  }
}
