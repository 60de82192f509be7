/**
 * The embedding table, defined without ever being stored whole: the value at (row, dim) is a
 * hash of (seed, row, dim), so a shard can generate exactly its own rows, and a test can
 * build the full table in-process to check the sharded pipeline against.
 *
 * Sharding is by residue: row `r` lives on shard `r % numShards`, at local row
 * `floor(r / numShards)`. Ids in recommenders are usually assigned by popularity or time,
 * so contiguous ranges would put the hot ids on one shard; a residue split spreads them out.
 */

/** What defines a table and its split. */
export interface TableConfig {
  /** Rows (ids are `0 … vocab - 1`). */
  readonly vocab: number;
  /** Values per row. */
  readonly dim: number;
  /** How many shard deployments hold the rows. */
  readonly numShards: number;
  /** Seeds the values; the same seed always gives the same table. */
  readonly seed: number;
}

/** One candidate and its score. */
export interface ScoredItem {
  readonly id: number;
  readonly score: number;
}

/** What the pipeline answers: the best `k` distinct candidates, best first. */
export interface Recommendation {
  readonly items: ScoredItem[];
}

/** A request as the deployments see it (after validation, with `k` filled in). */
export interface RecommendRequest {
  readonly history: readonly number[];
  readonly candidates: readonly number[];
  readonly k: number;
}

/** lowbias32 (Chris Wellons): a cheap 32-bit integer hash with full avalanche. */
function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/**
 * Writes row `row` of the table into `out` at `offset`. Each value is 24 hash bits scaled
 * into [-1, 1), so it is exact in a Float32Array.
 */
export function fillRow(
  out: Float32Array,
  offset: number,
  row: number,
  dim: number,
  seed: number,
): void {
  const rowHash = mix32(mix32(seed) ^ row);
  for (let d = 0; d < dim; d++) {
    out[offset + d] = (mix32((rowHash + d) >>> 0) >>> 8) * 2 ** -23 - 1;
  }
}

/** The shard that holds id `id`. */
export function shardOf(id: number, numShards: number): number {
  return id % numShards;
}

/** Where id `id` sits inside its shard. */
export function localRow(id: number, numShards: number): number {
  return Math.floor(id / numShards);
}

/** How many rows shard `shardIndex` holds (the first `vocab % numShards` shards hold one more). */
export function shardRowCount(shardIndex: number, numShards: number, vocab: number): number {
  return Math.max(0, Math.ceil((vocab - shardIndex) / numShards));
}

const fullTables = new Map<string, Float32Array>();

/** The whole table in one array (`vocab × dim`), built once per config. Reference only. */
export function fullTable(config: TableConfig): Float32Array {
  const key = `${config.vocab}:${config.dim}:${config.seed}`;
  let table = fullTables.get(key);
  if (!table) {
    table = new Float32Array(config.vocab * config.dim);
    for (let r = 0; r < config.vocab; r++)
      fillRow(table, r * config.dim, r, config.dim, config.seed);
    fullTables.set(key, table);
  }
  return table;
}

/**
 * The unsharded reference: the same recommendation computed from the full table in this
 * process. The user vector is the mean of the history rows (accumulated in float64, in
 * history order); each distinct candidate scores its dot product with it; ties go to the
 * smaller id.
 */
export function referenceRecommend(request: RecommendRequest, config: TableConfig): Recommendation {
  const { dim } = config;
  const table = fullTable(config);
  const row = (id: number) => table.subarray(id * dim, (id + 1) * dim);
  const user = new Float64Array(dim);
  for (const id of request.history) row(id).forEach((v, d) => (user[d]! += v));
  for (let d = 0; d < dim; d++) user[d]! /= request.history.length;
  const items = [...new Set(request.candidates)].map((id) => ({
    id,
    score: row(id).reduce((sum, v, d) => sum + v * user[d]!, 0),
  }));
  items.sort((a, b) => b.score - a.score || a.id - b.id);
  return { items: items.slice(0, request.k) };
}
