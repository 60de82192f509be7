/**
 * Triton's `ModelStreamInfer`: a bidirectional stream on which each request runs the graph.
 * A result is answered by one `ModelStreamInferResponse`; a streamed result (an
 * `AsyncIterable`) by one per item, in order. A failing request is answered with its
 * `error_message` and the stream goes on. Requests of one stream run concurrently, each
 * response carrying its request's `id`. The client cancelling the stream cancels every
 * graph call in flight (the replicas' `requestContext().signal` fires, a stream's producer
 * is stopped).
 *
 * As Triton's decoupled models: every response carries the parameter
 * `triton_final_response` (true on a request's last response); after a streamed result, a
 * request whose parameter `triton_enable_empty_final_response` is true gets an empty final
 * response, so the client knows that request is complete.
 */
import type * as grpc from "@grpc/grpc-js";
import { CancelledError, TributaryError } from "../errors.js";
import { CancelScope } from "../data/cancel.js";
import { isAsyncIterable } from "../values.js";
import type { InferRequest, InferResponse, Inferred } from "./grpc.js";
import { OIP_ID } from "./oip.js";
import { isTypedArray } from "./tensors.js";

/** A call's metadata value by its (lower-case) key, as a sticky split reads a header. */
export function metadataReader(metadata: grpc.Metadata): (name: string) => string | undefined {
  return (name) => {
    const value = metadata.get(name)[0];
    return typeof value === "string" ? value : undefined;
  };
}

interface StreamResponse {
  error_message: string;
  infer_response: InferResponse | null;
}

type Infer = (
  request: InferRequest,
  cancel: CancelScope,
  header: (name: string) => string | undefined,
) => Promise<Inferred>;

const final = (response: InferResponse, last: boolean): InferResponse => ({
  ...response,
  parameters: { ...response.parameters, triton_final_response: { bool_param: last } },
});

function errorMessage(error: unknown): string {
  return error instanceof TributaryError
    ? `${error.code}: ${error.message}`
    : "Internal server error.";
}

/** The `ModelStreamInfer` handler over `infer` (what `ModelInfer` runs per request). */
export function streamInfer(
  infer: Infer,
): grpc.handleBidiStreamingCall<InferRequest, StreamResponse> {
  return (call) => {
    const stream = new CancelScope();
    const header = metadataReader(call.metadata);
    let inFlight = 0;
    let ended = false;
    call.on("cancelled", () => stream.cancel(new CancelledError("The gRPC stream")));
    call.on("error", () => stream.cancel(new CancelledError("The gRPC stream")));

    /** Writes one message, waiting while the client is slow to read (not past a cancel). */
    const write = (message: StreamResponse): Promise<void> => {
      if (stream.reason) return Promise.resolve();
      if (call.write(message)) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const unsubscribe = stream.subscribe(() => resolve());
        call.once("drain", () => {
          unsubscribe();
          resolve();
        });
      });
    };
    const finish = (): void => {
      if (ended && inFlight === 0 && !stream.reason) call.end();
    };

    async function answer(request: InferRequest): Promise<void> {
      // One scope per request (its timeout is its own), cancelled with the stream.
      const cancel = new CancelScope();
      const unsubscribe = stream.subscribe((reason) => cancel.cancel(reason));
      try {
        const { result, respond, model_name, id } = await infer(request, cancel, header);
        if (!isAsyncIterable(result) || isTypedArray(result)) {
          await write({ error_message: "", infer_response: final(respond(result), true) });
          return;
        }
        for await (const item of result) {
          if (stream.reason) break; // stops the producer (the iterator's return())
          await write({ error_message: "", infer_response: final(respond(item), false) });
        }
        if (!stream.reason && request.parameters?.triton_enable_empty_final_response?.bool_param) {
          const empty = { model_name, id, outputs: [], raw_output_contents: [] };
          await write({ error_message: "", infer_response: final(empty, true) });
        }
      } catch (error) {
        // Requests on a stream run at once: the error names the request it answers (its
        // id as the client sent it, when that is one gRPC's checks accept).
        const id = OIP_ID.test(request.id ?? "") ? request.id : "";
        await write({
          error_message: errorMessage(error),
          infer_response: final(
            { model_name: request.model_name, id, outputs: [], raw_output_contents: [] },
            true,
          ),
        });
      } finally {
        unsubscribe();
      }
    }

    call.on("data", (request: InferRequest) => {
      inFlight++;
      void answer(request).finally(() => {
        inFlight--;
        finish();
      });
    });
    call.on("end", () => {
      ended = true;
      finish();
    });
  };
}
