/**
 * @internal How a split chooses an arm: by weights that sum to 100 (as KServe's Splitter),
 * at random or, for a sticky split, by a hash of the caller's header value.
 */
import { OptionsError } from "../errors.js";

/** The 32-bit FNV-1a hash of a string's UTF-16 code units. */
export function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/**
 * The arm (an index into `weights`) for one request. `sticky` (a header's value) maps to a
 * fixed point in [0, 100), so one caller stays on one arm while the weights stay; changing
 * the weights moves only the callers whose point lies between the old and new boundaries.
 */
export function pickArm(weights: readonly number[], sticky?: string): number {
  const point = sticky === undefined ? Math.random() * 100 : fnv1a(sticky) % 100;
  let edge = 0;
  for (let i = 0; i < weights.length; i++) {
    edge += weights[i]!;
    if (point < edge) return i;
  }
  // Unreachable with weights that sum to 100; the last non-zero arm otherwise.
  for (let i = weights.length - 1; i >= 0; i--) if (weights[i]! > 0) return i;
  return weights.length - 1;
}

/**
 * Checks the weights of split `name` over its arms `keys`: an integer 0..100 for every arm,
 * no other key, summing to 100. Returns them in the order of `keys`; throws OptionsError.
 */
export function checkWeights(
  name: string,
  keys: readonly string[],
  weights: Readonly<Record<string, unknown>>,
): number[] {
  const problems: string[] = [];
  for (const key of Object.keys(weights)) {
    if (!keys.includes(key)) problems.push(`"${key}" is not one of its arms`);
  }
  const out = keys.map((key) => {
    const w = weights[key];
    if (w === undefined) problems.push(`arm "${key}" has no weight`);
    else if (typeof w !== "number" || !Number.isInteger(w) || w < 0 || w > 100)
      problems.push(`the weight of "${key}" is ${JSON.stringify(w)}, not an integer from 0 to 100`);
    return typeof w === "number" ? w : 0;
  });
  const sum = out.reduce((a, b) => a + b, 0);
  if (problems.length === 0 && sum !== 100) problems.push(`the weights sum to ${sum}, not 100`);
  if (problems.length > 0) {
    throw new OptionsError(
      `Split "${name}" (arms ${keys.map((k) => `"${k}"`).join(", ")}): ${problems.join("; ")}. ` +
        `Give every arm an integer weight so that they sum to 100, such as { ${keys
          .map((k, i) => `${k}: ${i === 0 ? 100 : 0}`)
          .join(", ")} }.`,
    );
  }
  return out;
}
