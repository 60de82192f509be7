/**
 * Layout after recognition: the boxes read on one row of the page joined into one line in
 * reading order (a space between words, a tab across a wide gap between columns), and the
 * quarter turn that puts a turned page upright, from the shape of its boxes and the angle
 * classifier's verdict on their crops.
 */
import type { Point, Quad, QuarterTurns } from "./image-ops.js";

/** A box and what was read in it. */
export interface Part {
  readonly text: string;
  readonly score: number;
  readonly box: Quad;
}

/** A gap between two boxes of a row wider than this many times the row's height is a tab. */
export const TAB_GAP = 1.5;

const mid = (a: Point, b: Point): Point => [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];

/** The direction of text on the page: the median slope of the boxes' long sides, radians. */
export function textAngle(boxes: readonly Quad[]): number {
  const angles = boxes
    .map(([tl, tr, br, bl]) => {
      const [lx, ly] = mid(tl, bl);
      const [rx, ry] = mid(tr, br);
      return { angle: Math.atan2(ry - ly, rx - lx), weight: Math.hypot(rx - lx, ry - ly) };
    })
    .sort((a, b) => a.angle - b.angle);
  const total = angles.reduce((s, a) => s + a.weight, 0);
  let seen = 0;
  for (const a of angles) {
    seen += a.weight;
    if (seen >= total / 2) return a.angle;
  }
  return 0;
}

interface Placed<T> {
  readonly part: T;
  /** Extent along the text direction and across it, in the page turned level. */
  readonly left: number;
  readonly right: number;
  readonly top: number;
  readonly bottom: number;
}

/**
 * The parts grouped into rows, top to bottom, each row's parts left to right, with the
 * text that joins them. A part belongs to a row when their vertical extents (measured
 * across the page's text direction, so a tilted page groups as a level one) overlap by
 * more than half of the smaller height.
 */
export function groupRows<T extends Part>(parts: readonly T[]): { parts: T[]; text: string }[] {
  const angle = textAngle(parts.map((p) => p.box));
  const cos = Math.cos(-angle);
  const sin = Math.sin(-angle);
  const placed: Placed<T>[] = parts.map((part) => {
    const us = part.box.map(([x, y]) => x * cos - y * sin);
    const vs = part.box.map(([x, y]) => x * sin + y * cos);
    return {
      part,
      left: Math.min(...us),
      right: Math.max(...us),
      top: Math.min(...vs),
      bottom: Math.max(...vs),
    };
  });
  placed.sort((a, b) => a.top + a.bottom - (b.top + b.bottom));
  const rows: { members: Placed<T>[]; top: number; bottom: number }[] = [];
  for (const p of placed) {
    // The row this part overlaps most, among those it overlaps by over half its height.
    let best: (typeof rows)[number] | undefined;
    let bestOverlap = 0;
    for (const row of rows.slice(-3)) {
      const overlap = Math.min(row.bottom, p.bottom) - Math.max(row.top, p.top);
      const smaller = Math.min(row.bottom - row.top, p.bottom - p.top);
      if (overlap > smaller / 2 && overlap > bestOverlap) {
        best = row;
        bestOverlap = overlap;
      }
    }
    if (best) {
      best.members.push(p);
      best.top = Math.min(best.top, p.top);
      best.bottom = Math.max(best.bottom, p.bottom);
    } else {
      rows.push({ members: [p], top: p.top, bottom: p.bottom });
    }
  }
  return rows.map(({ members }) => {
    members.sort((a, b) => a.left - b.left);
    let text = "";
    members.forEach((m, i) => {
      const previous = members[i - 1];
      if (previous) {
        const height = Math.min(previous.bottom - previous.top, m.bottom - m.top);
        text += m.left - previous.right > TAB_GAP * height ? "\t" : " ";
      }
      text += m.part.text.trim();
    });
    return { parts: members.map((m) => m.part), text };
  });
}

/**
 * The clockwise quarter turns that put a page upright, from its boxes (a page turned a
 * quarter has boxes taller than wide) and the angle classifier's verdict on their crops
 * (which were turned a quarter counter-clockwise when taller than wide): each box votes
 * with its area. Upright (0) when nothing points elsewhere.
 */
export function uprightTurns(
  boxes: readonly Quad[],
  upsideDown: readonly boolean[],
  isTall: (box: Quad) => boolean,
): QuarterTurns {
  const votes = [0, 0, 0, 0];
  boxes.forEach((box, i) => {
    const [tl, tr, , bl] = box;
    const area =
      Math.hypot(tr[0] - tl[0], tr[1] - tl[1]) * Math.hypot(bl[0] - tl[0], bl[1] - tl[1]);
    const flipped = upsideDown[i] ?? false;
    // A tall box's crop was turned counter-clockwise: upright after that means the page was
    // turned clockwise (90°), and is put right with 3 more clockwise quarters.
    const turns = isTall(box) ? (flipped ? 1 : 3) : flipped ? 2 : 0;
    votes[turns]! += area;
  });
  let best = 0;
  for (let t = 1; t < 4; t++) if (votes[t]! > votes[best]!) best = t;
  return best as QuarterTurns;
}

/**
 * The rectangle around `boxes`, its sides along and across their text direction; corners
 * clockwise from the top left of the text.
 */
export function hullBox(boxes: readonly Quad[]): Quad {
  if (boxes.length === 1) return boxes[0]!;
  const angle = textAngle(boxes);
  const cos = Math.cos(angle);
  const sin = Math.sin(angle);
  const points = boxes.flat();
  // u along the text, v across it (down the page).
  const us = points.map(([x, y]) => x * cos + y * sin);
  const vs = points.map(([x, y]) => -x * sin + y * cos);
  const [u0, u1, v0, v1] = [Math.min(...us), Math.max(...us), Math.min(...vs), Math.max(...vs)];
  const at = (u: number, v: number): Point => [
    Math.round(u * cos - v * sin),
    Math.round(u * sin + v * cos),
  ];
  return [at(u0, v0), at(u1, v0), at(u1, v1), at(u0, v1)];
}
