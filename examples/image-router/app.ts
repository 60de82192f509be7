/**
 * An image router: a small classifier looks at an image's colour statistics and sends it to
 * one of two models, a grey-level model or a colour model; the colour model is rolled out
 * as a canary, 90/10 between its stable and its new version, sticky by `x-user-id` so one
 * user sees one version. Operators move the canary's share in serve.yaml (`splits:`) and
 * apply it live with `tributary deploy`.
 *
 * Images are raw RGB bytes (3 per pixel): `POST /classify` with an octet-stream body.
 */
import { z } from "zod";
import { branch, build, deployment, InputNode, split } from "tributary";

/** Mean of each channel and the mean spread between a pixel's channels (0 for grey). */
export function colourStats(rgb: Uint8Array): { mean: [number, number, number]; spread: number } {
  const pixels = Math.floor(rgb.length / 3);
  const sum = [0, 0, 0];
  let spread = 0;
  for (let p = 0; p < pixels; p++) {
    const r = rgb[3 * p]!;
    const g = rgb[3 * p + 1]!;
    const b = rgb[3 * p + 2]!;
    sum[0]! += r;
    sum[1]! += g;
    sum[2]! += b;
    spread += Math.max(r, g, b) - Math.min(r, g, b);
  }
  const n = Math.max(pixels, 1);
  return { mean: [sum[0]! / n, sum[1]! / n, sum[2]! / n], spread: spread / n };
}

/** The classifier: grey images (channels within 12 levels of each other on average) or colour. */
export const triage = deployment(function triage(rgb: Uint8Array): "grey" | "colour" {
  return colourStats(rgb).spread < 12 ? "grey" : "colour";
});

export interface ToneResult {
  readonly kind: "grey";
  readonly tone: "dark" | "mid" | "light";
  readonly model: "tone";
}

/** The grey-level model: how light the image is. */
export class Tone {
  calls = 0;
  describe(rgb: Uint8Array): ToneResult {
    this.calls++;
    const level = colourStats(rgb).mean[0];
    return {
      kind: "grey",
      tone: level < 85 ? "dark" : level < 170 ? "mid" : "light",
      model: "tone",
    };
  }
  count(): number {
    return this.calls;
  }
}

export interface PaletteResult {
  readonly kind: "colour";
  readonly colour: string;
  readonly model: "palette-v1" | "palette-v2";
}

const HUES = ["red", "yellow", "green", "cyan", "blue", "magenta"] as const;

/**
 * The colour model. Version 1 names the strongest channel; version 2 (the canary) names
 * the hue of the mean colour on a six-colour wheel.
 */
export class Palette {
  calls = 0;
  constructor(private readonly version: 1 | 2) {}
  describe(rgb: Uint8Array): PaletteResult {
    this.calls++;
    const [r, g, b] = colourStats(rgb).mean;
    if (this.version === 1) {
      const colour = r >= g && r >= b ? "red" : g >= b ? "green" : "blue";
      return { kind: "colour", colour, model: "palette-v1" };
    }
    const max = Math.max(r, g, b);
    const delta = max - Math.min(r, g, b) || 1;
    const hue =
      max === r ? ((g - b) / delta + 6) % 6 : max === g ? (b - r) / delta + 2 : (r - g) / delta + 4;
    return { kind: "colour", colour: HUES[Math.round(hue) % 6]!, model: "palette-v2" };
  }
  count(): number {
    return this.calls;
  }
}

const input = new InputNode(z.object({ rgb: z.instanceof(Uint8Array) }));
export const tone = deployment(Tone).bind();
export const stable = deployment(Palette).bind(1);
export const canary = deployment(Palette).bind(2);

/** The colour model's rollout: `palette` is the split's name in serve.yaml. */
const palette = split(
  { stable: stable.describe.bind(input.rgb), canary: canary.describe.bind(input.rgb) },
  { name: "palette", weights: { stable: 90, canary: 10 }, sticky: { header: "x-user-id" } },
);

/** Only the chosen side runs: a grey image never reaches a Palette replica. */
export const pipeline = branch(triage.bind(input.rgb), {
  grey: tone.describe.bind(input.rgb),
  colour: palette,
});

export const app = build(pipeline, {
  name: "image-router",
  routePrefix: "/classify",
  names: { tone, stable, canary },
});

/** A `width` × `height` image of one colour, as raw RGB bytes. */
export function solid(
  rgb: readonly [number, number, number],
  width = 8,
  height = 8,
): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) out.set(rgb, 3 * p);
  return out;
}
