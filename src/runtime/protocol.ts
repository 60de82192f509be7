/**
 * @internal Messages between the runtime (the caller side) and a replica, as tagged unions.
 * Every request carries an id; a response names the id it answers. Both directions use the
 * same {@link Response} messages: the runtime answers the handle calls a replica makes
 * (`hcall`) with them, and a replica answers `call`, `health`, `reconfigure` and `stop`.
 */
import type { InitArg } from "../dag/compile.js";
import type { JsonValue } from "../app/options.js";

export interface SerializedError {
  readonly name: string;
  readonly message: string;
  readonly stack?: string | undefined;
  readonly code?: string | undefined;
  /** Other own data properties (`deployment`, `issues`, …). */
  readonly props?: Record<string, unknown> | undefined;
  readonly cause?: SerializedError | undefined;
}

/** What a replica needs to start: where the graph is and which deployment it runs. */
export interface InitMessage {
  readonly t: "init";
  readonly moduleUrl: string;
  readonly app: string;
  readonly deployment: string;
  readonly replica: string;
  readonly args: readonly InitArg[];
  readonly userConfig?: JsonValue | undefined;
  /** `resources.memory` in bytes: the replica ends itself past it (see memory-limit.ts). */
  readonly memoryLimit?: number | undefined;
}

export type Response =
  | { readonly t: "ok"; readonly id: number; readonly v: unknown }
  /** `user`: thrown by user code (the caller wraps it in a GraphExecutionError). */
  | { readonly t: "err"; readonly id: number; readonly e: SerializedError; readonly user: boolean }
  | { readonly t: "stream"; readonly id: number }
  | { readonly t: "item"; readonly id: number; readonly v: unknown }
  | { readonly t: "end"; readonly id: number };

/** Runtime → replica. */
export type ToReplica =
  | InitMessage
  /** Call `m` (a method, or the function when undefined) with `a`; `r` is the request id. */
  | {
      readonly t: "call";
      readonly id: number;
      readonly m: string | undefined;
      readonly a: unknown[];
      readonly r?: string | undefined;
    }
  | { readonly t: "cancel"; readonly id: number; readonly reason: "timeout" | "abort" }
  | { readonly t: "health"; readonly id: number }
  | { readonly t: "reconfigure"; readonly id: number; readonly config: JsonValue }
  | { readonly t: "stop"; readonly id: number }
  | Response;

/** Replica → runtime. */
export type FromReplica =
  | { readonly t: "ready" }
  | { readonly t: "init-failed"; readonly e: SerializedError }
  /** The replica is about to end itself, and why (it went past its memory limit). */
  | { readonly t: "fatal"; readonly message: string }
  /** A handle call from inside the replica to deployment `d`. */
  | {
      readonly t: "hcall";
      readonly id: number;
      readonly d: string;
      readonly m: string;
      readonly a: unknown[];
      readonly r?: string | undefined;
    }
  | { readonly t: "hcancel"; readonly id: number }
  | Response;
