/**
 * @internal What a replica has served, summed where it runs: calls by outcome, their
 * processing time and the sizes of its batches. Recording is a few additions per call; the
 * whole snapshot rides on the replica's `load` report (at most every 20 ms), so the
 * request path sends no message of its own. One per thread or process: a replica is one.
 */
import {
  BATCH_BUCKETS,
  PROCESSING_BUCKETS,
  type HistogramSnapshot,
  type ReplicaStats,
} from "../wire/protocol.js";

/** How a call ended. */
export type Outcome = "ok" | "error" | "cancelled";

class Histogram {
  readonly #bounds: readonly number[];
  readonly counts: number[];
  sum = 0;
  constructor(bounds: readonly number[]) {
    this.#bounds = bounds;
    this.counts = new Array<number>(bounds.length + 1).fill(0);
  }
  observe(value: number): void {
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
  }
  snapshot(): HistogramSnapshot {
    return { counts: [...this.counts], sum: this.sum };
  }
}

export class StatsRecorder {
  /** False: nothing is recorded (`run(app, { metrics: false })`). */
  enabled = true;
  /** Bumped on every change, so an unchanged replica sends no report. */
  version = 0;
  #ok = 0;
  #error = 0;
  #cancelled = 0;
  readonly #processing = new Histogram(PROCESSING_BUCKETS);
  readonly #batches = new Histogram(BATCH_BUCKETS);

  /** A call ended after `seconds` of processing. */
  call(outcome: Outcome, seconds: number): void {
    if (!this.enabled) return;
    if (outcome === "ok") this.#ok++;
    else if (outcome === "error") this.#error++;
    else this.#cancelled++;
    this.#processing.observe(seconds);
    this.version++;
  }

  /** A `batch()` function ran on `size` items. */
  batch(size: number): void {
    if (!this.enabled) return;
    this.#batches.observe(size);
    this.version++;
  }

  snapshot(): ReplicaStats {
    return {
      ok: this.#ok,
      error: this.#error,
      cancelled: this.#cancelled,
      processing: this.#processing.snapshot(),
      batches: this.#batches.snapshot(),
    };
  }
}

/** This thread's (or process's) recorder: the replica host and `batch()` write to it. */
export const replicaStats = new StatsRecorder();
