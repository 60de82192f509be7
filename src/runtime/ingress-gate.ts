/**
 * @internal The ingress's own limit: graph executions in flight and waiting, like any
 * deployment's router bounds its calls.
 */
import { INGRESS } from "../app/application.js";
import { BackPressureError } from "../errors.js";
import type { CancelScope } from "../data/cancel.js";

/** Bounds the graph executions in flight, like any deployment's router. */
export class IngressGate {
  #ongoing = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(
    private maxOngoing: number,
    private maxQueued: number,
  ) {}

  configure(maxOngoing: number, maxQueued: number): void {
    this.maxOngoing = maxOngoing;
    this.maxQueued = maxQueued;
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
   * cancelled while it waits leaves the queue and rejects with the scope's reason.
   */
  enter(scope: CancelScope | undefined): Promise<void> | undefined {
    if (this.#ongoing < this.maxOngoing) {
      this.#ongoing++;
      return undefined;
    }
    if (this.#waiting.length >= this.maxQueued) {
      throw new BackPressureError(INGRESS, this.#ongoing, this.#waiting.length);
    }
    return new Promise((resolve, reject) => {
      const take = (): void => {
        unsubscribe?.();
        resolve();
      };
      this.#waiting.push(take);
      const unsubscribe = scope?.subscribe((reason) => {
        const index = this.#waiting.indexOf(take);
        if (index < 0) return;
        this.#waiting.splice(index, 1);
        reject(reason);
      });
    });
  }

  leave(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#ongoing--;
  }
}
