/**
 * The classic diamond: one input feeds two models — a linear model reading part of it and
 * a norm model reading all of it — and an ensemble combines their scores with part of the
 * original input (the request id).
 *
 *            ┌─> Linear.predict(input.features) ─┐
 *   input ───┤                                    ├─> Ensemble.combine(a, b, input.id)
 *            └─> Norm.predict(input) ────────────┘
 */
import { z } from "zod";
import { build, deployment, InputNode } from "tributary";

export const inputSchema = z.object({
  features: z.array(z.number()).min(1),
  scale: z.number().positive().default(1),
  id: z.string(),
});
export type DiamondInput = z.output<typeof inputSchema>;

/** A linear model: w · x + b (features beyond the weights are ignored). */
export class Linear {
  constructor(
    private readonly weights: number[],
    private readonly bias: number,
  ) {}

  predict(features: number[]): number {
    return this.weights.reduce((sum, w, i) => sum + w * (features[i] ?? 0), this.bias);
  }
}

/** Reads the whole input: the Euclidean norm of the features, times the scale. */
export class Norm {
  predict(input: DiamondInput): number {
    return Math.hypot(...input.features) * input.scale;
  }
}

/** Weighted average of two scores, labelled with the request id. */
export class Ensemble {
  constructor(private readonly weight: number) {}

  combine(
    a: number,
    b: number,
    id: string,
  ): { id: string; score: number; parts: [number, number] } {
    return { id, score: this.weight * a + (1 - this.weight) * b, parts: [a, b] };
  }
}

export const input = new InputNode(inputSchema);
const linear = deployment(Linear, { numReplicas: 2 }).bind([0.5, -1, 2], 0.25);
const norm = deployment(Norm).bind();
const ensemble = deployment(Ensemble).bind(0.75);

/** The graph's output node: `await pipeline.execute({ features: [1, 2, 3], id: "a" })`. */
export const pipeline = ensemble.combine.bind(
  linear.predict.bind(input.features),
  norm.predict.bind(input),
  input.id,
);

/** The served application: every class above runs in its own replicas. */
export const app = build(pipeline, { name: "diamond" });
