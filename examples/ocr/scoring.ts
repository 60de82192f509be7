/**
 * How well a text read from an image matches what was drawn: character error rate, word
 * accuracy, line count, and the spaces lost. Both texts are normalized the same way first,
 * so engines that put a tab or several spaces between columns are not told apart from
 * those that put one space: whitespace inside a line becomes one space, lines are trimmed
 * and empty lines dropped.
 */

export function normalize(text: string): string {
  return text
    .split("\n")
    .map((l) => l.replace(/\s+/g, " ").trim())
    .filter((l) => l !== "")
    .join("\n");
}

/** Levenshtein alignment of `a` to `b`: the distance, and which of `a`'s items were kept. */
function align<T>(a: readonly T[], b: readonly T[]): { distance: number; kept: boolean[] } {
  const cols = b.length + 1;
  const d = new Uint32Array((a.length + 1) * cols);
  for (let j = 0; j <= b.length; j++) d[j] = j;
  for (let i = 1; i <= a.length; i++) {
    d[i * cols] = i;
    for (let j = 1; j <= b.length; j++) {
      d[i * cols + j] = Math.min(
        d[(i - 1) * cols + j]! + 1,
        d[i * cols + j - 1]! + 1,
        d[(i - 1) * cols + j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
  }
  const kept = new Array<boolean>(a.length).fill(false);
  let i = a.length;
  let j = b.length;
  while (i > 0 && j > 0) {
    const here = d[i * cols + j]!;
    if (a[i - 1] === b[j - 1] && here === d[(i - 1) * cols + j - 1]) {
      kept[i - 1] = true;
      i--;
      j--;
    } else if (here === d[(i - 1) * cols + j - 1]! + 1) {
      i--;
      j--;
    } else if (here === d[(i - 1) * cols + j]! + 1) i--;
    else j--;
  }
  return { distance: d[a.length * cols + b.length]!, kept };
}

export interface Score {
  /** Character edits, and the expected characters. */
  readonly charErrors: number;
  readonly chars: number;
  /** Word edits, and the expected words. */
  readonly wordErrors: number;
  readonly words: number;
  /** Expected spaces not read as spaces (dropped, or read as a line break), and all of them. */
  readonly spaceErrors: number;
  readonly spaces: number;
  /** Whether as many lines were read as were drawn. */
  readonly linesRight: boolean;
}

export function score(expected: string, actual: string): Score {
  const e = normalize(expected);
  const a = normalize(actual);
  const chars = align([...e], [...a]);
  const ew = e.split(/\s+/).filter((w) => w !== "");
  const words = align(
    ew,
    a.split(/\s+/).filter((w) => w !== ""),
  );
  let spaces = 0;
  let spaceErrors = 0;
  [...e].forEach((ch, i) => {
    if (ch !== " ") return;
    spaces++;
    if (!chars.kept[i]) spaceErrors++;
  });
  return {
    charErrors: chars.distance,
    chars: e.length,
    wordErrors: words.distance,
    words: ew.length,
    spaceErrors,
    spaces,
    linesRight: e.split("\n").length === (a === "" ? 0 : a.split("\n").length),
  };
}

/** Totals of several scores, as rates. */
export function summarize(scores: readonly Score[]) {
  const sum = (f: (s: Score) => number) => scores.reduce((t, s) => t + f(s), 0);
  return {
    images: scores.length,
    cer:
      sum((s) => s.charErrors) /
      Math.max(
        1,
        sum((s) => s.chars),
      ),
    wordAccuracy: Math.max(
      0,
      1 -
        sum((s) => s.wordErrors) /
          Math.max(
            1,
            sum((s) => s.words),
          ),
    ),
    spaceErrorRate:
      sum((s) => s.spaceErrors) /
      Math.max(
        1,
        sum((s) => s.spaces),
      ),
    lineAccuracy: sum((s) => (s.linesRight ? 1 : 0)) / Math.max(1, scores.length),
  };
}
