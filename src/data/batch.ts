/**
 * Dynamic batching: `batch(fn, options)` turns a function of a list into a function of one
 * item. Concurrent calls are gathered into a batch of at most `maxBatchSize`, dispatched
 * as soon as it is full or `batchWaitTimeout` after its first item arrived (Triton's
 * dynamic batcher). On a class it is a field, so handles and `.bind()` see the per-item
 * type. A batch holds the items of one multiplexed model, and the list function runs in
 * the request context of its first item.
 */
import { toMilliseconds, type Duration } from "../options.js";
import { OptionsError, TributaryError } from "../errors.js";
import { ActiveRequest, currentRequest, runForRequest, uncarry } from "./context.js";
import { replicaStats } from "./replica-stats.js";
import { replicaMaxOngoing } from "../replica-context.js";

export interface BatchOptions {
  /**
   * Most items in one call of the list function. A replica runs at most its deployment's
   * `maxOngoingRequests` calls at once (default 5), so a larger batch never fills: keep it
   * at most that (the replica logs a warning when it is not).
   */
  readonly maxBatchSize: number;
  /**
   * How long the first item of a batch may wait for others (`"5ms"`, or milliseconds). With
   * 0, a batch takes what arrived in the same event-loop turn (and, while the model is busy,
   * what queued meanwhile), and adds no wait.
   */
  readonly batchWaitTimeout: Duration;
}

/** Batch sizes achieved so far. */
export interface BatchStats {
  readonly batches: number;
  readonly items: number;
  /** `sizes[n]`: how many batches had `n` items. */
  readonly sizes: Readonly<Record<number, number>>;
  readonly meanSize: number;
}

/** A function of one item that runs its list function on batches. */
export interface BatchedFunction<Item, Result> {
  (item: Item): Promise<Result>;
  /** Changes the batch size and wait (for example from `reconfigure`); applies to the next batch. */
  configure(options: Partial<BatchOptions>): void;
  stats(): BatchStats;
}

interface Waiting<Item, Result> {
  readonly item: Item;
  /** The request the item came with (inside a replica): a batch holds one model's items. */
  readonly request: ActiveRequest | undefined;
  readonly resolve: (result: Result) => void;
  readonly reject: (error: unknown) => void;
}

function checked(
  options: Partial<BatchOptions>,
  current?: { size: number; waitMs: number },
): { size: number; waitMs: number } {
  const size = options.maxBatchSize ?? current?.size;
  if (size === undefined || !Number.isInteger(size) || size < 1) {
    throw new OptionsError(
      `batch(): maxBatchSize must be a positive integer, got ${String(size)}.`,
    );
  }
  const waitMs =
    options.batchWaitTimeout === undefined
      ? current?.waitMs
      : toMilliseconds(options.batchWaitTimeout);
  if (waitMs === undefined || !(waitMs >= 0)) {
    throw new OptionsError(
      `batch(): batchWaitTimeout must be a duration such as "5ms", got ${String(options.batchWaitTimeout)}.`,
    );
  }
  return { size, waitMs };
}

/**
 * @example
 * class Recognizer {
 *   recognize = batch(async (crops: Float32Array[]) => this.model.run(crops), {
 *     maxBatchSize: 16,
 *     batchWaitTimeout: "5ms",
 *   });
 * }
 */
export function batch<Item, Result>(
  fn: (items: Item[]) => Promise<readonly (Result | Error)[]> | readonly (Result | Error)[],
  options: BatchOptions,
): BatchedFunction<Item, Result> {
  let limits = checked(options);
  let queue: Waiting<Item, Result>[] = [];
  let timer: { cancel(): void } | undefined;
  let firstArrival = 0;
  let running = false;
  const sizes: Record<number, number> = {};
  let batches = 0;
  let items = 0;

  const schedule = (): void => {
    if (running || queue.length === 0) return;
    if (queue.length >= limits.size) {
      dispatch();
      return;
    }
    if (timer) return;
    if (limits.waitMs === 0) {
      // After the I/O of this turn: items that came in the same message batch join.
      const immediate = setImmediate(dispatch);
      timer = { cancel: () => clearImmediate(immediate) };
    } else {
      const wait = limits.waitMs - (performance.now() - firstArrival);
      const timeout = setTimeout(dispatch, Math.max(0, wait));
      timer = { cancel: () => clearTimeout(timeout) };
    }
  };

  function dispatch(): void {
    timer?.cancel();
    timer = undefined;
    if (running || queue.length === 0) return;
    // One model per batch (as Ray Serve splits them): the model of the oldest item whose
    // caller still waits.
    const model = (queue.find((w) => !w.request?.cancelled) ?? queue[0]!).request
      ?.multiplexedModelId;
    const taken: Waiting<Item, Result>[] = [];
    const rest: Waiting<Item, Result>[] = [];
    for (const w of queue) {
      // An item whose caller gave up while it waited (a timeout, a hang-up) is not run.
      if (w.request?.cancelled) w.reject(w.request.signal.reason);
      else if (taken.length < limits.size && w.request?.multiplexedModelId === model) taken.push(w);
      else rest.push(w);
    }
    queue = rest;
    if (queue.length > 0) firstArrival = performance.now();
    if (taken.length === 0) {
      schedule();
      return;
    }
    running = true;
    batches++;
    items += taken.length;
    sizes[taken.length] = (sizes[taken.length] ?? 0) + 1;
    // The list function sees the first item's request (its model is the batch's), cancelled
    // only when every item's is.
    const { request, done } = ActiveRequest.ofBatch(taken.map((w) => w.request));
    const run = () => fn(taken.map((w) => w.item));
    replicaStats.batch(taken.length);
    Promise.resolve()
      .then(() =>
        request ? Promise.resolve(runForRequest(request, true, run)).finally(uncarry) : run(),
      )
      .then(
        (results) => {
          if (!Array.isArray(results) || results.length !== taken.length) {
            const got = Array.isArray(results)
              ? `${results.length} results`
              : `a ${typeof results}`;
            const error = new TributaryError(
              "EXECUTION_FAILED",
              `The batch function returned ${got} for ${taken.length} items; it must return one result (or Error) per item, in order.`,
            );
            for (const w of taken) w.reject(error);
            return;
          }
          taken.forEach((w, i) => {
            const result = results[i] as Result | Error;
            if (result instanceof Error) w.reject(result);
            else w.resolve(result);
          });
        },
        (error: unknown) => {
          for (const w of taken) w.reject(error);
        },
      )
      .finally(() => {
        done();
        running = false;
        schedule();
      });
  }

  /** The batch size and replica cap last warned about (see {@link warnIfCapped}). */
  let warned = "";
  /**
   * A replica runs at most maxOngoingRequests calls at once: a larger maxBatchSize never
   * fills, and every batch waits the whole batchWaitTimeout (Ray Serve warns of it too).
   */
  const warnIfCapped = (): void => {
    const cap = replicaMaxOngoing();
    if (cap === undefined || limits.size <= cap || warned === `${limits.size}/${cap}`) return;
    warned = `${limits.size}/${cap}`;
    console.warn(
      `batch(): maxBatchSize ${limits.size} is larger than this deployment's maxOngoingRequests ` +
        `(${cap}): a replica runs at most ${cap} calls at once, so no batch gets more than ` +
        `${cap} items and each waits the whole batchWaitTimeout for more. Set ` +
        `maxOngoingRequests to at least ${limits.size}.`,
    );
  };

  const batched = ((item: Item): Promise<Result> =>
    new Promise<Result>((resolve, reject) => {
      warnIfCapped();
      if (queue.length === 0) firstArrival = performance.now();
      queue.push({ item, request: currentRequest(), resolve, reject });
      schedule();
    })) as BatchedFunction<Item, Result>;
  batched.configure = (next) => {
    limits = checked(next, limits);
    // The pending wait is recomputed with the new timeout (and a batch now full goes at once).
    timer?.cancel();
    timer = undefined;
    schedule();
  };
  batched.stats = () => ({
    batches,
    items,
    sizes: { ...sizes },
    meanSize: batches === 0 ? 0 : items / batches,
  });
  return batched;
}
