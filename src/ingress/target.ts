/**
 * @internal What the front doors need of a served application.
 */
import type { Application } from "../app/application.js";
import type { CancelScope } from "../data/cancel.js";
import type { OipModel } from "./oip.js";

export interface IngressCallOptions {
  readonly requestId: string;
  /** Cancelled when the client goes away. */
  readonly cancel?: CancelScope;
  readonly timeout?: number;
}

export interface IngressTarget {
  readonly app: Application;
  readonly model: OipModel;
  /** The input field raw bytes go to (an object input with one bytes field), if any. */
  readonly bytesField: string | undefined;
  call(input: unknown, options: IngressCallOptions): Promise<unknown>;
  /** True when every deployment has a running replica. */
  ready(): boolean;
}
