/**
 * @internal The ingress of one application: validates the input, then walks the compiled
 * plan, sending each call through a router of this caller's own. The front door of this
 * thread and each front-door worker process have one each.
 */
import { INGRESS, type Application } from "../app/application.js";
import { toMilliseconds } from "../options.js";
import { validateInput } from "../dag/executor.js";
import { checkModelId } from "../dag/handle.js";
import { runPlan, type CallStep, type PlanCallbacks } from "../dag/run-plan.js";
import { transferPlan } from "../dag/transfer-plan.js";
import { pickArm } from "../dag/weights.js";
import { requestScope, type CancelScope } from "../data/cancel.js";
import { HANDLE_REF } from "../data/handle-ref.js";
import { StreamReader } from "../data/responses.js";
import type { CallOptions } from "../data/router.js";
import { transferablesOf } from "../data/transport/transfer.js";
import type { IngressCallOptions } from "../ingress/target.js";
import { IngressGate } from "./ingress-gate.js";
import { activeTraceparent } from "../tracing.js";
import type { RequestOptions } from "./server.js";

/** Sends one call of the plan: through the router of the step's deployment. */
export type SendCall = (step: CallStep, args: unknown[], options: CallOptions) => Promise<unknown>;

interface Context {
  readonly requestId: string | undefined;
  readonly cancel: CancelScope | undefined;
  readonly traceparent: string | undefined;
  readonly multiplexedModelId: string | undefined;
  /** A request header's value (a sticky split's key). */
  readonly header: ((name: string) => string | undefined) | undefined;
  /** No user code holds the input (see `IngressCallOptions.owned`). */
  readonly owned: boolean;
}

/** Each split's weights in the order of its arms. */
export type ArmWeights = Readonly<Record<string, readonly number[]>>;

/** The weights an application's configuration gives its splits, in arm order. */
export function armWeights(app: Application): ArmWeights {
  return Object.fromEntries(
    [...app.graph.splits].map(([name, step]) => [
      name,
      step.keys.map((key) => app.splits[name]?.[key] ?? 0),
    ]),
  );
}

export class GraphIngress {
  readonly #gate: IngressGate;
  readonly #plan: PlanCallbacks<Context>;
  #app: Application;
  #weights: ArmWeights;

  /**
   * `onArm`: told the arm each split request takes (`tributary_split_requests_total`, each
   * arm's share).
   */
  constructor(
    app: Application,
    send: SendCall,
    onArm?: (application: string, split: string, arm: string) => void,
  ) {
    this.#app = app;
    this.#weights = armWeights(app);
    const ingress = app.deployments[INGRESS]!;
    this.#gate = new IngressGate(
      ingress.maxOngoingRequests,
      ingress.maxQueuedRequests,
      ingress.maxQueueWaitMs,
    );
    const transfers = transferPlan(app.graph);
    const moves = transfers.map((flags) => flags.some(Boolean));
    this.#plan = {
      call: (step, args, context) =>
        send(step, args, {
          requestId: context.requestId,
          cancel: context.cancel,
          multiplexedModelId: context.multiplexedModelId,
          traceparent: context.traceparent,
          owned: context.owned,
          transfer: moves[step.index]
            ? transferablesOf(args.filter((_, i) => transfers[step.index]![i]))
            : undefined,
        }),
      handle: (deployment) => ({ [HANDLE_REF]: deployment }),
      choose: (step, context) => {
        const arm = pickArm(
          this.#weights[step.name] ?? step.weights,
          step.stickyHeader === undefined ? undefined : context.header?.(step.stickyHeader),
        );
        onArm?.(this.#app.name, step.name, step.keys[arm]!);
        return arm;
      },
    };
  }

  /** Executions running or waiting (the drain before a shutdown waits for none). */
  get pending(): number {
    return this.#gate.pending;
  }

  /** New limits for graph executions in flight and waiting, and the splits' weights. */
  limit(
    maxOngoing: number,
    maxQueued: number,
    maxQueueWaitMs?: number,
    weights?: ArmWeights,
  ): void {
    this.#gate.configure(maxOngoing, maxQueued, maxQueueWaitMs);
    if (weights) this.#weights = weights;
  }

  /** The ingress limits and split weights of another configuration of the same application. */
  configure(app: Application): void {
    this.#app = app;
    this.#weights = armWeights(app);
    const ingress = app.deployments[INGRESS]!;
    this.#gate.configure(
      ingress.maxOngoingRequests,
      ingress.maxQueuedRequests,
      ingress.maxQueueWaitMs,
    );
  }

  async call(input: unknown, options: RequestOptions | IngressCallOptions = {}): Promise<unknown> {
    checkModelId(options.multiplexedModelId, "handle.call()");
    const timeout = options.timeout === undefined ? undefined : toMilliseconds(options.timeout);
    const { scope, dispose } = requestScope(
      `Application "${this.#app.name}"`,
      "signal" in options ? options.signal : undefined,
      timeout,
      "cancel" in options ? options.cancel : undefined,
    );
    let entered = false;
    let streaming = false;
    try {
      const waiting = this.#gate.enter(scope, options.requestId);
      if (waiting) await waiting;
      entered = true;
      const graph = this.#app.graph;
      const checked = validateInput(graph, input);
      const value: unknown =
        checked instanceof Promise ? await (checked as Promise<unknown>) : checked;
      const requestId = options.requestId;
      // The front door's span, else the one active in the caller's code (a user SDK's).
      const traceparent =
        ("traceparent" in options ? options.traceparent : undefined) ?? activeTraceparent();
      const result = await runPlan(graph, value, this.#plan, {
        requestId,
        cancel: scope,
        header: headerOf(options),
        multiplexedModelId: options.multiplexedModelId,
        traceparent,
        owned: "owned" in options && options.owned === true,
      });
      if (result instanceof StreamReader) {
        // A streamed result keeps its timeout, signal and ingress slot until it ends.
        streaming = true;
        result.onEnd(() => {
          dispose();
          this.#gate.leave();
        });
      }
      return result;
    } finally {
      if (!streaming) {
        dispose();
        if (entered) this.#gate.leave();
      }
    }
  }
}

/** How a request's headers are read: a front door's lookup, or the caller's `headers`. */
function headerOf(
  options: RequestOptions | IngressCallOptions,
): ((name: string) => string | undefined) | undefined {
  if ("header" in options && options.header) return options.header;
  const headers = "headers" in options ? options.headers : undefined;
  if (!headers) return undefined;
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  return (name) => lower[name];
}
