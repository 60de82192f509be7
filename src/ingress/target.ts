/**
 * @internal What the front doors need of the served applications: each one's target, and
 * the set of them that one front door serves (one for `run(app)`, several for an instance).
 */
import type { Application } from "../app/application.js";
import type { DeploymentHandle } from "../dag/types.js";
import type { CancelScope } from "../data/cancel.js";
import type { OipModel } from "./oip.js";

export interface IngressCallOptions {
  readonly requestId: string;
  /** Cancelled when the client goes away. */
  readonly cancel?: CancelScope;
  readonly timeout?: number;
  /** A request header's value by its lower-case name (what a sticky split hashes). */
  readonly header?: (name: string) => string | undefined;
  /** The model the request names (the `x-tributary-model-id` header, an OIP model version). */
  readonly multiplexedModelId?: string | undefined;
  /** The front door's span (W3C trace context): the graph's calls are its children. */
  readonly traceparent?: string | undefined;
  /**
   * The input is the front door's own (parsed from the request): no user code changes it
   * after the call, so the graph's calls need not take their arguments at once (see
   * `CallOptions.owned`). Not set for an application's own routes (user code).
   */
  readonly owned?: boolean;
}

export interface IngressTarget {
  readonly app: Application;
  readonly model: OipModel;
  /** The input field raw bytes go to (an object input with one bytes field), if any. */
  readonly bytesField: string | undefined;
  call(input: unknown, options: IngressCallOptions): Promise<unknown>;
  /** A handle to one of the application's deployments (for its own routes). */
  getHandle?(deployment: string): DeploymentHandle<unknown>;
  /** True when every deployment has a running replica. */
  ready(): boolean;
}

/** The applications one front door serves; the list may change while it runs. */
export interface IngressTargets {
  /** The applications served now, by name. */
  list(): readonly IngressTarget[];
  /**
   * True while the applications the server starts with are still starting (an instance's
   * first configuration): it is not ready though the ones listed so far may be.
   */
  starting?(): boolean;
}

/** The targets of a single application. */
export function singleTarget(target: IngressTarget): IngressTargets {
  const list = [target];
  return { list: () => list };
}

/** The target serving `name`, if any. */
export function targetNamed(targets: IngressTargets, name: string): IngressTarget | undefined {
  return targets.list().find((t) => t.app.name === name);
}

/** Whether every application is ready (and there is one at least, and none is to come). */
export function allReady(targets: IngressTargets): boolean {
  if (targets.starting?.()) return false;
  const list = targets.list();
  return list.length > 0 && list.every((t) => t.ready());
}

/** The names of the served applications, for messages: `"a", "b"`. */
export function servedNames(targets: IngressTargets): string {
  const names = targets.list().map((t) => `"${t.app.name}"`);
  return names.length > 0 ? names.join(", ") : "no application";
}
