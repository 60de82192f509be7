/**
 * @internal The ingress's own limit: graph executions in flight and waiting, like any
 * deployment's router bounds its calls.
 */
import { INGRESS } from "../app/application.js";
import { BackPressureError, QueueTimeoutError } from "../errors.js";
import type { CancelScope } from "../data/cancel.js";

/** Bounds the graph executions in flight, like any deployment's router. */
export class IngressGate {
  #ongoing = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(
    private maxOngoing: number,
    private maxQueued: number,
    /** How long an execution may wait for a slot (the ingress's `maxQueueWait`). */
    private maxQueueWaitMs?: number,
  ) {}

  configure(maxOngoing: number, maxQueued: number, maxQueueWaitMs?: number): void {
    this.maxOngoing = maxOngoing;
    this.maxQueued = maxQueued;
    this.maxQueueWaitMs = maxQueueWaitMs;
  }

  get ongoing(): number {
    return this.#ongoing;
  }

  /** Executions running or waiting for a slot. */
  get pending(): number {
    return this.#ongoing + this.#waiting.length;
  }

  /**
   * Resolves when a slot is taken (`undefined` when one was free at once); a request
   * cancelled while it waits, or waiting past `maxQueueWaitMs`, leaves the queue and
   * rejects with the scope's reason or a `QueueTimeoutError`.
   */
  enter(scope: CancelScope | undefined, requestId?: string): Promise<void> | undefined {
    if (this.#ongoing < this.maxOngoing) {
      this.#ongoing++;
      return undefined;
    }
    if (this.#waiting.length >= this.maxQueued) {
      throw new BackPressureError(INGRESS, this.#ongoing, this.#waiting.length);
    }
    const waitMs = this.maxQueueWaitMs;
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const take = (): void => {
        unsubscribe?.();
        clearTimeout(timer);
        resolve();
      };
      this.#waiting.push(take);
      const leave = (reason: unknown): void => {
        const index = this.#waiting.indexOf(take);
        if (index < 0) return;
        this.#waiting.splice(index, 1);
        unsubscribe?.();
        clearTimeout(timer);
        reject(reason);
      };
      const unsubscribe = scope?.subscribe(leave);
      if (waitMs !== undefined)
        timer = setTimeout(() => leave(new QueueTimeoutError(INGRESS, waitMs, requestId)), waitMs);
    });
  }

  leave(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#ongoing--;
  }
}
