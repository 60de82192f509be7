/**
 * The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`, from the public
 * KServe v2 `.proto`), so Triton and KServe clients can call a pipeline.
 */
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import {
  CancelledError,
  ERROR_CODES,
  NotFoundError,
  TimeoutError,
  TributaryError,
  ValidationError,
} from "../errors.js";
import { CancelScope } from "../data/cancel.js";
import { MODEL_ID_HEADER, modelIdOf } from "./model-id.js";
import { OIP_ID, refuseStream, requestedTensors } from "./oip.js";
import {
  allReady,
  servedNames,
  targetNamed,
  type IngressTarget,
  type IngressTargets,
} from "./target.js";
import {
  elementCount,
  tensorFromJson,
  tensorFromRaw,
  tensorToRaw,
  isTypedArray,
  type Tensor,
} from "./tensors.js";
import { metadataReader, streamInfer } from "./grpc-stream.js";
import { startGrpcSpan } from "./server-spans.js";
import { validTraceparent } from "../tracing.js";
import { SERVER_NAME, SERVER_VERSION } from "./version.js";
import type { FrontDoorMetrics } from "../metrics/metrics.js";
import { listenFailed, PORT_SETTINGS } from "./listen.js";

const PROTO = fileURLToPath(new URL("./proto/grpc_predict_v2.proto", import.meta.url));

/**
 * The loaded service definition (also used by tests as a real client). The server reads
 * int64 fields as decimal strings (`longs: String`), so that INT64 and UINT64 contents past
 * 2^53 arrive exact; a client may read them as numbers.
 */
export function loadInferenceService(
  longs: typeof String | typeof Number = Number,
): grpc.ServiceClientConstructor {
  const definition = protoLoader.loadSync(PROTO, {
    keepCase: true,
    longs,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    inference: { GRPCInferenceService: grpc.ServiceClientConstructor };
  };
  return pkg.inference.GRPCInferenceService;
}

type Contents = Partial<
  Record<
    | "bool_contents"
    | "int_contents"
    | "int64_contents"
    | "uint_contents"
    | "uint64_contents"
    | "fp32_contents"
    | "fp64_contents"
    | "bytes_contents",
    unknown[]
  >
>;

interface InferInput {
  name: string;
  datatype: string;
  /** int64 dimensions, as decimal strings (see {@link loadInferenceService}). */
  shape: string[];
  contents?: Contents | null;
}

export interface InferRequest {
  model_name: string;
  model_version: string;
  id: string;
  parameters: Record<string, { bool_param?: boolean } | undefined>;
  inputs: InferInput[];
  outputs: { name: string }[];
  raw_input_contents: Buffer[];
}

/** A `ModelInferResponse` message. */
export interface InferResponse {
  model_name: string;
  id: string;
  parameters?: Record<string, { bool_param: boolean }>;
  outputs: { name: string; datatype: string; shape: readonly number[]; contents?: Contents }[];
  raw_output_contents: Buffer[];
}

/** A request's graph result, and how a response is made of it (or of one of its items). */
export interface Inferred {
  readonly model_name: string;
  readonly id: string;
  readonly result: unknown;
  readonly respond: (value: unknown) => InferResponse;
}

/** Which `*_contents` field carries each datatype. */
const CONTENTS_FIELD: Record<string, keyof Contents> = {
  BOOL: "bool_contents",
  INT8: "int_contents",
  INT16: "int_contents",
  INT32: "int_contents",
  INT64: "int64_contents",
  UINT8: "uint_contents",
  UINT16: "uint_contents",
  UINT32: "uint_contents",
  UINT64: "uint64_contents",
  FP32: "fp32_contents",
  FP64: "fp64_contents",
  BYTES: "bytes_contents",
};

function inputTensor(
  input: InferInput,
  i: number,
  raw: Buffer | undefined,
): Tensor & { name: string } {
  const where = `inputs[${i}] (${input.name})`;
  const dims = input.shape.map(BigInt);
  if (raw)
    return {
      name: input.name,
      ...tensorFromRaw(
        input.datatype,
        dims,
        new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength),
        where,
      ),
    };
  const field = CONTENTS_FIELD[input.datatype];
  if (!field)
    throw new ValidationError([
      { path: where, message: `unknown or unsupported datatype ${JSON.stringify(input.datatype)}` },
    ]);
  let data = input.contents?.[field] ?? [];
  if (input.datatype === "BYTES") {
    const bytes = data as Buffer[];
    // Non-negative integers only (-1 belongs in schemas, not in a request), as for JSON tensors.
    const count = elementCount(dims, where);
    const shape = dims.map(Number);
    if (bytes.length !== count) {
      throw new ValidationError([
        {
          path: where,
          message: `shape [${shape.join(", ")}] does not match ${bytes.length} elements`,
        },
      ]);
    }
    return {
      name: input.name,
      datatype: "BYTES",
      shape,
      data: bytes.map((b) => new Uint8Array(b)),
    };
  }
  // Decimal strings (see loadInferenceService): exact as bigints.
  if (input.datatype === "INT64" || input.datatype === "UINT64")
    data = data.map((v) => BigInt(v as string));
  return { name: input.name, ...tensorFromJson(input.datatype, dims, data, where) };
}

function outputContents(t: Tensor): Contents {
  const field = CONTENTS_FIELD[t.datatype]!;
  if (t.datatype === "BYTES") {
    return {
      bytes_contents: (t.data as readonly (string | Uint8Array)[]).map((v) =>
        typeof v === "string" ? Buffer.from(v) : Buffer.from(v),
      ),
    };
  }
  // A bigint as its decimal string, which protobufjs encodes exactly as an int64.
  const values = isTypedArray(t.data)
    ? Array.from(t.data as ArrayLike<number | bigint>, (v) =>
        typeof v === "bigint" ? v.toString() : v,
      )
    : [...t.data];
  return { [field]: values };
}

/**
 * The gRPC status of an error; with `requestId` (a valid one), its trailing metadata
 * carries it as `x-request-id`, as HTTP's error body does.
 */
function grpcError(error: unknown, requestId?: string): Partial<grpc.StatusObject> {
  const status =
    error instanceof TributaryError
      ? { code: ERROR_CODES[error.code].grpcStatus, details: error.message }
      : { code: grpc.status.INTERNAL, details: "Internal server error." };
  if (!requestId || !OIP_ID.test(requestId)) return status;
  const metadata = new grpc.Metadata();
  metadata.set("x-request-id", requestId);
  return { ...status, metadata };
}

const SERVICE = "inference.GRPCInferenceService";

/** The span of a gRPC call, under the client's `traceparent` metadata when it sent one. */
function callSpan(call: grpc.ServerUnaryCall<unknown, unknown>, method: string) {
  const traceparent = call.metadata.get("traceparent")[0];
  return startGrpcSpan(SERVICE, method, typeof traceparent === "string" ? traceparent : undefined);
}

/** Runs a unary handler, answering a thrown error with its gRPC status. */
function unary<Req, Res>(
  method: string,
  handler: (request: Req) => Promise<Res> | Res,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const span = callSpan(call, method);
    Promise.resolve()
      .then(() => handler(call.request))
      .then(
        (response) => {
          span.end(grpc.status.OK);
          callback(null, response);
        },
        (error: unknown) => {
          const status = grpcError(error);
          span.end(status.code ?? grpc.status.UNKNOWN, error);
          callback(status, null);
        },
      );
  };
}

/** The longest request id accepted, as for HTTP's `x-request-id`. */
const MAX_REQUEST_ID_LENGTH = 128;

/** How near its deadline a call the client drops counts as one that ran out of time. */
const DEADLINE_SLACK_MS = 250;

/**
 * Milliseconds left until the call's deadline (undefined: none), so the pipeline stops when
 * the client has stopped waiting: the slot is freed and the replica's signal fires.
 */
function msUntilDeadline(call: grpc.ServerUnaryCall<unknown, unknown>): number | undefined {
  const deadline = call.getDeadline();
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : undefined;
}

export interface GrpcOptions {
  readonly host: string;
  readonly port: number;
  readonly maxMessageBytes: number;
  /** Read per call, so an update applies without a restart. */
  readonly requestTimeoutMs: () => number | undefined;
  /** Counts every ModelInfer call by model and status. */
  readonly metrics?: FrontDoorMetrics | undefined;
}

/** A running gRPC front door. */
export interface GrpcFrontDoor {
  readonly port: number;
  /** The largest message from now on, on the same listener (calls that started keep theirs). */
  setMaxMessageBytes(bytes: number): void;
  close(force?: Promise<void>): Promise<void>;
}

export async function startGrpc(
  targets: IngressTargets,
  options: GrpcOptions,
): Promise<GrpcFrontDoor> {
  // grpc-js reads the message limits from this object, which it keeps, as each call starts
  // (Server#options, passed to every call it makes): changing them here applies to the
  // calls that follow. Making a new server for a new limit would need a second bind of the
  // port, which in a front-door worker process is a new cluster key: EADDRINUSE.
  const limits = {
    "grpc.max_receive_message_length": options.maxMessageBytes,
    "grpc.max_send_message_length": options.maxMessageBytes,
  };
  const server = new grpc.Server(limits);
  // Each application is a model, by its name.
  const modelNamed = (name: string): IngressTarget => {
    const target = targetNamed(targets, name);
    if (!target)
      throw new NotFoundError(`No model "${name}"; this server serves ${servedNames(targets)}.`);
    return target;
  };
  server.addService(loadInferenceService(String).service, {
    ServerLive: unary("ServerLive", () => ({ live: true })),
    ServerReady: unary("ServerReady", () => ({ ready: allReady(targets) })),
    ModelReady: unary("ModelReady", (request: { name: string }) => ({
      ready: targetNamed(targets, request.name)?.ready() ?? false,
    })),
    ServerMetadata: unary("ServerMetadata", () => ({
      name: SERVER_NAME,
      version: SERVER_VERSION,
      extensions: [],
    })),
    ModelMetadata: unary("ModelMetadata", (request: { name: string }) => {
      return modelNamed(request.name).model.metadata();
    }),
    // Triton's bidirectional stream: each request runs the graph; a streamed result answers
    // one response per item.
    ModelStreamInfer: streamInfer((request, cancel, header) =>
      Promise.resolve().then(() =>
        infer(
          request,
          cancel,
          options.requestTimeoutMs(),
          header,
          modelIdOf(request.model_version, header(MODEL_ID_HEADER)),
          // The stream's trace context is carried on (no span of its own); a malformed one
          // is dropped, as HTTP and ModelInfer drop it.
          validTraceparent(header("traceparent")),
        ),
      ),
    ),
    ModelInfer: (
      call: grpc.ServerUnaryCall<InferRequest, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) => {
      // The client's deadline and cancellation reach the pipeline as HTTP's do.
      const cancel = new CancelScope();
      // grpc-js says "cancelled" when the client's deadline passes too: that one is a timeout
      // (DEADLINE_EXCEEDED in the metrics and the span, as the client sees it). This side's
      // deadline is later than the client's by the time the call took to arrive.
      call.on("cancelled", () =>
        cancel.cancel(
          (msUntilDeadline(call) ?? Infinity) <= DEADLINE_SLACK_MS
            ? new TimeoutError("The gRPC call (its deadline)")
            : new CancelledError("The gRPC call"),
        ),
      );
      const limits = [options.requestTimeoutMs(), msUntilDeadline(call)].filter(
        (ms): ms is number => ms !== undefined,
      );
      const timeout = limits.length > 0 ? Math.min(...limits) : undefined;
      const start = performance.now();
      const span = callSpan(call, "ModelInfer");
      const done = (code: number, error?: unknown): void => {
        span.end(code, error);
        const model = call.request.model_name;
        const application = targetNamed(targets, model) ? model : "";
        const name: string = grpc.status[code] ?? String(code);
        options.metrics?.grpc(application, name, (performance.now() - start) / 1000);
      };
      // The request's id from the start, so that an error can name it too (x-request-id).
      const requestId = call.request.id || randomUUID();
      const request = call.request.id ? call.request : { ...call.request, id: requestId };
      Promise.resolve()
        .then(() =>
          infer(
            request,
            cancel,
            timeout,
            metadataReader(call.metadata),
            modelIdOf(call.request.model_version, call.metadata.get(MODEL_ID_HEADER)),
            span.traceparent,
          ),
        )
        .then(
          ({ result, respond }) => {
            let response: unknown;
            try {
              refuseStream(
                result,
                call.request.model_name,
                "with ModelStreamInfer (one response per item)",
              );
              response = respond(result);
            } catch (error) {
              const status = grpcError(error, requestId);
              done(status.code ?? grpc.status.INTERNAL, error);
              callback(status, null);
              return;
            }
            done(grpc.status.OK);
            callback(null, response);
          },
          (error: unknown) => {
            const status = grpcError(error, requestId);
            done(status.code ?? grpc.status.INTERNAL, error);
            callback(status, null);
          },
        );
    },
  });
  /** Runs the graph for one request; `respond` makes a response of its result (or of an item). */
  async function infer(
    request: InferRequest,
    cancel: CancelScope,
    timeout: number | undefined,
    header: (name: string) => string | undefined,
    multiplexedModelId: string | undefined,
    traceparent: string | undefined,
  ): Promise<Inferred> {
    {
      const target = modelNamed(request.model_name);
      if (!OIP_ID.test(request.id)) {
        throw new ValidationError([
          {
            path: "id",
            message: `expected at most ${MAX_REQUEST_ID_LENGTH} printable ASCII characters (found ${request.id.length} characters)`,
          },
        ]);
      }
      const raw = request.raw_input_contents.length > 0;
      if (raw && request.raw_input_contents.length !== request.inputs.length) {
        throw new ValidationError([
          {
            path: "raw_input_contents",
            message: `${request.raw_input_contents.length} raw contents for ${request.inputs.length} inputs`,
          },
        ]);
      }
      const tensors = request.inputs.map((input, i) =>
        inputTensor(input, i, raw ? request.raw_input_contents[i] : undefined),
      );
      const requestId = request.id || randomUUID();
      const result = await target.call(target.model.toGraphInput(tensors), {
        requestId,
        owned: true,
        cancel,
        header,
        multiplexedModelId,
        traceparent,
        ...(timeout !== undefined && { timeout }),
      });
      const wanted =
        request.outputs.length > 0 ? new Set(request.outputs.map((o) => o.name)) : undefined;
      const respond = (value: unknown): InferResponse => {
        const outputs = requestedTensors(value, wanted, target.app.name);
        // No `*_contents` field carries FP16: with one, every output goes raw (as in Triton).
        const rawOut = raw || outputs.some((t) => t.datatype === "FP16");
        return {
          model_name: target.app.name,
          id: requestId,
          outputs: outputs.map((t) => ({
            name: t.name,
            datatype: t.datatype,
            shape: t.shape,
            ...(rawOut ? {} : { contents: outputContents(t) }),
          })),
          raw_output_contents: rawOut ? outputs.map((t) => Buffer.from(tensorToRaw(t))) : [],
        };
      };
      return { model_name: target.app.name, id: requestId, result, respond };
    }
  }
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      `${options.host}:${options.port}`,
      grpc.ServerCredentials.createInsecure(),
      (error, bound) => {
        if (!error) return resolve(bound);
        // grpc-js says "No address added out of total 1 resolved" with the cause in its text.
        const code = /EADDRINUSE|address already in use/i.test(error.message)
          ? "EADDRINUSE"
          : undefined;
        try {
          listenFailed(
            Object.assign(error, { code }),
            "gRPC",
            options.host,
            options.port,
            PORT_SETTINGS.gRPC,
          );
        } catch (failed) {
          reject(failed);
        }
      },
    ),
  );
  return {
    port,
    setMaxMessageBytes(bytes) {
      limits["grpc.max_receive_message_length"] = bytes;
      limits["grpc.max_send_message_length"] = bytes;
    },
    // Calls in flight may finish until `force` resolves (by default 5 s); then they are cut.
    close: (force = new Promise<void>((resolve) => setTimeout(resolve, 5_000).unref())) =>
      new Promise<void>((resolve) => {
        let done = false;
        void force.then(() => {
          if (done) return;
          done = true;
          server.forceShutdown();
          resolve();
        });
        server.tryShutdown(() => {
          done = true;
          resolve();
        });
      }),
  };
}
