/**
 * The requests both tests send (in process, on one machine, and across the nodes of a
 * cluster), and how an answer is compared with the unsharded {@link referenceRecommend}.
 */
import assert from "node:assert/strict";
import { DEFAULT_CONFIG, type Recommendation, type RecommendRequest } from "./app.js";

const V = DEFAULT_CONFIG.vocab;

/** Requests with duplicate ids, ids from every shard, the first and last id, k omitted and too large. */
export const requests: { history: number[]; candidates: number[]; k?: number }[] = [
  { history: [0, 1, 2, 3], candidates: [4, 5, 6, 7, 8, 9, 10, 11], k: 3 },
  { history: [V - 1, V - 1, 17, 17, 17], candidates: [V - 1, 0, 0, 123_456, 99_999, 50_001, 2] },
  {
    history: [42],
    candidates: Array.from({ length: 40 }, (_, i) => (i * 4_999 + 13) % V),
    k: 1_000,
  },
  {
    history: Array.from({ length: 64 }, (_, i) => (i * 7_919) % V),
    candidates: [8, 8, 8, 12, 16, 20, 21],
    k: 2,
  },
];

/** The request as the schema fills it (`k` defaults to 10). */
export function withK(request: (typeof requests)[number]): RecommendRequest {
  return { ...request, k: request.k ?? 10 };
}

/** Same ids in the same order, and the same scores up to float rounding. */
export function assertSameRecommendation(actual: Recommendation, expected: Recommendation): void {
  assert.deepEqual(
    actual.items.map((item) => item.id),
    expected.items.map((item) => item.id),
  );
  actual.items.forEach((item, i) =>
    assert.ok(
      Math.abs(item.score - expected.items[i]!.score) <= 1e-9,
      `score of ${item.id}: ${item.score} vs ${expected.items[i]!.score}`,
    ),
  );
}
