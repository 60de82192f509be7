/**
 * A recommender whose embedding table is too large for one replica: the rows are split
 * across `numShards` shard deployments (row `r` on shard `r % numShards`, see table.ts),
 * a `Lookup` fans each request's ids out to the shards in parallel and gathers the rows
 * back in request order, and a `Scorer` mean-pools the user's history and ranks the
 * candidates by dot product.
 *
 *   input.history ────> Lookup.lookup ──┐
 *   input.candidates ─> Lookup.lookup ──┼─> Scorer.score(history, candidates, input.candidates, input.k)
 *   input.candidates ───────────────────┤
 *   input.k ────────────────────────────┘
 *   Lookup ─ handles ─> shard_0 … shard_{N-1}   (each holds only its rows)
 *
 * The shards are bound to `Lookup` as one array of class nodes, which arrives in its
 * constructor as an array of handles.
 */
import { z } from "zod";
import { build, deployment, InputNode, type DeploymentHandle } from "tributary";
import {
  fillRow,
  localRow,
  shardOf,
  shardRowCount,
  type Recommendation,
  type ScoredItem,
  type TableConfig,
} from "./table.js";

export { fullTable, referenceRecommend, shardOf } from "./table.js";
export type { Recommendation, RecommendRequest, ScoredItem, TableConfig } from "./table.js";

/** The served table: 200 000 rows × 32 floats (25.6 MB) over 4 shards. */
export const DEFAULT_CONFIG = {
  vocab: 200_000,
  dim: 32,
  numShards: 4,
  seed: 20_240_601,
} as const satisfies TableConfig;

/** What a shard reports about itself. */
export interface ShardStats {
  readonly shardIndex: number;
  readonly numShards: number;
  /** Rows held by this replica. */
  readonly rows: number;
  /** Bytes of its table. */
  readonly bytes: number;
  /** The smallest and largest id it holds. */
  readonly firstId: number;
  readonly lastId: number;
}

/** One slice of the table: the rows `r` with `r % numShards === shardIndex`, and no others. */
export class EmbeddingShard {
  readonly #shardIndex: number;
  readonly #numShards: number;
  readonly #vocab: number;
  readonly #dim: number;
  readonly #table: Float32Array;

  constructor(shardIndex: number, numShards: number, vocab: number, dim: number, seed: number) {
    if (!(Number.isInteger(shardIndex) && shardIndex >= 0 && shardIndex < numShards)) {
      throw new RangeError(`shard index ${shardIndex} is not in [0, ${numShards})`);
    }
    this.#shardIndex = shardIndex;
    this.#numShards = numShards;
    this.#vocab = vocab;
    this.#dim = dim;
    const rows = shardRowCount(shardIndex, numShards, vocab);
    this.#table = new Float32Array(rows * dim);
    for (let local = 0; local < rows; local++) {
      fillRow(this.#table, local * dim, local * numShards + shardIndex, dim, seed);
    }
  }

  /** The rows of `ids` (global ids, all on this shard), concatenated in the order given. */
  lookup(ids: readonly number[]): Float32Array {
    const dim = this.#dim;
    const out = new Float32Array(ids.length * dim);
    ids.forEach((id, i) => {
      if (!Number.isInteger(id) || id < 0 || id >= this.#vocab) {
        throw new RangeError(`id ${id} is not in [0, ${this.#vocab})`);
      }
      if (shardOf(id, this.#numShards) !== this.#shardIndex) {
        throw new RangeError(
          `id ${id} lives on shard ${shardOf(id, this.#numShards)}, not on shard ${this.#shardIndex} of ${this.#numShards}`,
        );
      }
      const at = localRow(id, this.#numShards) * dim;
      out.set(this.#table.subarray(at, at + dim), i * dim);
    });
    return out;
  }

  stats(): ShardStats {
    const rows = this.#table.length / this.#dim;
    return {
      shardIndex: this.#shardIndex,
      numShards: this.#numShards,
      rows,
      bytes: this.#table.byteLength,
      firstId: this.#shardIndex,
      lastId: (rows - 1) * this.#numShards + this.#shardIndex,
    };
  }
}

/** Splits ids by shard, asks the shards in parallel, and gathers the rows in request order. */
export class Lookup {
  readonly #dim: number;
  readonly #shards: readonly DeploymentHandle<EmbeddingShard>[];

  constructor(dim: number, shards: DeploymentHandle<EmbeddingShard>[]) {
    if (shards.length === 0) throw new RangeError("Lookup needs at least one shard handle");
    this.#dim = dim;
    this.#shards = shards;
  }

  /** An `ids.length × dim` matrix: row `i` is the embedding of `ids[i]`. */
  async lookup(ids: readonly number[]): Promise<Float32Array> {
    const dim = this.#dim;
    const numShards = this.#shards.length;
    // Each distinct id is fetched once: `slot` is its row in its shard's answer.
    const wanted = Array.from({ length: numShards }, (): number[] => []);
    const slot = new Map<number, number>();
    for (const id of ids) {
      if (!slot.has(id)) slot.set(id, wanted[shardOf(id, numShards)]!.push(id) - 1);
    }
    const answers = await Promise.all(
      wanted.map((shardIds, s) =>
        shardIds.length === 0
          ? Promise.resolve(new Float32Array(0))
          : this.#shards[s]!.lookup(shardIds),
      ),
    );
    answers.forEach((rows, s) => {
      if (rows.length !== wanted[s]!.length * dim) {
        throw new Error(
          `shard ${s} answered ${rows.length} values for ${wanted[s]!.length} ids of ${dim} dims`,
        );
      }
    });
    const out = new Float32Array(ids.length * dim);
    ids.forEach((id, i) => {
      const at = slot.get(id)! * dim;
      out.set(answers[shardOf(id, numShards)]!.subarray(at, at + dim), i * dim);
    });
    return out;
  }
}

/** Mean-pools the history rows into a user vector and ranks the distinct candidates by dot product. */
export class Scorer {
  readonly #dim: number;

  constructor(dim: number) {
    this.#dim = dim;
  }

  score(
    historyRows: Float32Array,
    candidateRows: Float32Array,
    candidates: readonly number[],
    k: number,
  ): Recommendation {
    const dim = this.#dim;
    const count = historyRows.length / dim;
    const user = new Float64Array(dim);
    for (let i = 0; i < count; i++) {
      for (let d = 0; d < dim; d++) user[d]! += historyRows[i * dim + d]!;
    }
    for (let d = 0; d < dim; d++) user[d]! /= count;
    const seen = new Set<number>();
    const items: ScoredItem[] = [];
    candidates.forEach((id, j) => {
      if (seen.has(id)) return;
      seen.add(id);
      let score = 0;
      for (let d = 0; d < dim; d++) score += candidateRows[j * dim + d]! * user[d]!;
      items.push({ id, score });
    });
    items.sort((a, b) => b.score - a.score || a.id - b.id);
    return { items: items.slice(0, k) };
  }
}

/** The request schema: every id an integer in [0, vocab), `k` defaulting to 10. */
export function requestSchema(vocab: number) {
  const id = z
    .number()
    .int({ error: `ids are integers in [0, ${vocab})` })
    .min(0, { error: `ids are integers in [0, ${vocab})` })
    .lt(vocab, { error: `ids are integers in [0, ${vocab})` });
  return z.object({
    history: z.array(id).min(1).max(10_000),
    candidates: z.array(id).min(1).max(10_000),
    k: z.number().int().min(1).max(1_000).default(10),
  });
}

/** Builds the graph for a table config; the served app uses {@link DEFAULT_CONFIG}. */
export function recommender(config: TableConfig) {
  const { vocab, dim, numShards, seed } = config;
  const input = new InputNode(requestSchema(vocab));
  const shards = Array.from({ length: numShards }, (_, i) =>
    deployment(EmbeddingShard)
      .options({ name: `shard_${i}` })
      .bind(i, numShards, vocab, dim, seed),
  );
  const lookup = deployment(Lookup).bind(dim, shards);
  const scorer = deployment(Scorer).bind(dim);
  const pipeline = scorer.score.bind(
    lookup.lookup.bind(input.history),
    lookup.lookup.bind(input.candidates),
    input.candidates,
    input.k,
  );
  return { input, pipeline };
}

/** The default graph: `await pipeline.execute({ history: [1, 2], candidates: [3, 4, 5] })`. */
export const { input, pipeline } = recommender(DEFAULT_CONFIG);

/** The served application (built at module top level: replicas re-import this module). */
export const app = build(pipeline, { name: "recommend" });
