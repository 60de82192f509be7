/**
 * @internal Handle calls made from inside a replica: sent to the runtime, which routes them
 * to the target deployment's replicas and answers with {@link Response} messages.
 */
import { CancelledError, GraphExecutionError } from "../errors.js";
import { transferablesOf } from "../transport/transfer.js";
import { unsendableArguments } from "./call-args.js";
import { requestStorage } from "./context.js";
import { deserializeError } from "./error-codec.js";
import { handleProxy } from "./handle.js";
import type { FromReplica, Response } from "./protocol.js";
import { Responses } from "./responses.js";

export class HandleCalls {
  readonly #post: (message: FromReplica, transfer?: readonly ArrayBuffer[]) => void;
  readonly #responses = new Responses();
  #nextId = 1;

  constructor(post: (message: FromReplica, transfer?: readonly ArrayBuffer[]) => void) {
    this.#post = post;
  }

  call(deployment: string, method: string, args: unknown[]): Promise<unknown> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#responses.add(id, {
        resolve,
        reject,
        toError: (error, user) =>
          user
            ? new GraphExecutionError(deployment, `${method}()`, deserializeError(error))
            : deserializeError(error),
        cancelStream: () => this.#post({ t: "hcancel", id }),
      });
      const outer = requestStorage.getStore();
      this.#post(
        { t: "hcall", id, d: deployment, m: method, a: args, r: outer?.requestId },
        transferablesOf(args),
      );
      // Cancelling the request this call is made for cancels the call too.
      outer?.onCancel(() => {
        if (this.#responses.forget(id)) {
          this.#post({ t: "hcancel", id });
          reject(new CancelledError(`${deployment}.${method}()`));
        }
      });
    });
  }

  onResponse(message: Response): void {
    this.#responses.onResponse(message);
  }

  /** A call that could not be sent (an argument structured clone rejects) fails at once. */
  undeliverable(message: Extract<FromReplica, { t: "hcall" }>, error: Error): void {
    this.#responses
      .forget(message.id)
      ?.reject(unsendableArguments(message.d, message.m, message.a, error));
  }
}

export function createRemoteHandle(deployment: string, calls: HandleCalls): unknown {
  return handleProxy(deployment, (method, args) => calls.call(deployment, method, args));
}
