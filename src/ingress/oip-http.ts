/**
 * The Open Inference Protocol (KServe v2) over REST: health, server and model metadata,
 * and inference with named JSON tensors. Each application is a model, by its name.
 */
import type { FastifyInstance, FastifyReply } from "fastify";
import { NotFoundError, TributaryError, ValidationError } from "../errors.js";
import { cancelOnClose } from "./app-door.js";
import { headerReader } from "./body.js";
import { MODEL_ID_HEADER, modelIdOf } from "./model-id.js";
import { OIP_ID, refuseStream, requestedTensors } from "./oip.js";
import type { HttpSettings } from "./http.js";
import {
  allReady,
  servedNames,
  targetNamed,
  type IngressTarget,
  type IngressTargets,
} from "./target.js";
import { oipJson, tensorFromJson, tensorToJson } from "./tensors.js";
import { requestTraceparent } from "./server-spans.js";
import { SERVER_NAME, SERVER_VERSION } from "./version.js";

interface InferBody {
  id?: unknown;
  inputs?: unknown;
  outputs?: unknown;
}

function modelNamed(targets: IngressTargets, name: string): IngressTarget {
  const target = targetNamed(targets, name);
  if (!target)
    throw new NotFoundError(`No model "${name}"; this server serves ${servedNames(targets)}.`);
  return target;
}

function parseInputs(
  body: InferBody,
): ReturnType<typeof tensorFromJson> extends infer T ? (T & { name: string })[] : never {
  if (typeof body !== "object" || body === null || !Array.isArray(body.inputs)) {
    throw new ValidationError([
      { path: "inputs", message: "an inference request needs an inputs array" },
    ]);
  }
  return body.inputs.map((raw: unknown, i) => {
    const input = (raw ?? {}) as {
      name?: unknown;
      datatype?: unknown;
      shape?: unknown;
      data?: unknown;
    };
    if (typeof input.name !== "string")
      throw new ValidationError([{ path: `inputs[${i}].name`, message: "expected a string" }]);
    return {
      name: input.name,
      ...tensorFromJson(input.datatype, input.shape, input.data, `inputs[${i}]`),
    };
  });
}

/** The outputs a request names; none (absent or empty, as the protocol says) is all. */
function requestedOutputs(body: InferBody): Set<string> | undefined {
  if (!Array.isArray(body.outputs) || body.outputs.length === 0) return undefined;
  return new Set(body.outputs.map((o: unknown) => String((o as { name?: unknown })?.name)));
}

export function registerOipRoutes(
  fastify: FastifyInstance,
  targets: IngressTargets,
  settings: Readonly<HttpSettings>,
): void {
  const ready = (reply: FastifyReply, body: Record<string, unknown>, ok: boolean) =>
    reply.code(ok ? 200 : 400).send(body);
  fastify.get("/v2/health/live", async () => ({ live: true }));
  fastify.get("/v2/health/ready", async (_request, reply) =>
    ready(reply, { ready: allReady(targets) }, allReady(targets)),
  );
  fastify.get("/v2", async () => ({ name: SERVER_NAME, version: SERVER_VERSION, extensions: [] }));

  for (const prefix of ["/v2/models/:name", "/v2/models/:name/versions/:version"]) {
    fastify.get<{ Params: { name: string } }>(prefix, async (request) => {
      return modelNamed(targets, request.params.name).model.metadata();
    });
    fastify.get<{ Params: { name: string } }>(`${prefix}/ready`, async (request, reply) => {
      const ok = modelNamed(targets, request.params.name).ready();
      return ready(reply, { name: request.params.name, ready: ok }, ok);
    });
    fastify.post<{ Params: { name: string; version?: string }; Body: InferBody }>(
      `${prefix}/infer`,
      {
        // tritonclient.http sends its requests with no Content-Type: a JSON one is read as
        // JSON, as Triton does (other routes answer an untyped body 415), and one of the
        // binary extension as bytes, for the handler to refuse saying what to do. A request
        // with no body is left as it is (the handler says what it lacks).
        onRequest: async (request) => {
          const { headers } = request;
          if (
            headers["content-type"] === undefined &&
            (Number(headers["content-length"]) > 0 || headers["transfer-encoding"] !== undefined)
          )
            headers["content-type"] =
              headers["inference-header-content-length"] === undefined
                ? "application/json"
                : "application/octet-stream";
        },
      },
      async (request, reply) => {
        const target = modelNamed(targets, request.params.name);
        if (request.headers["inference-header-content-length"] !== undefined) {
          // Triton's clients send binary tensors this way by default (binary_data=True).
          throw new TributaryError(
            "BAD_REQUEST",
            "Triton's binary data extension (Inference-Header-Content-Length) is not supported: send the tensors as JSON data (binary_data=False in tritonclient), or use gRPC, where raw_input_contents carries them as bytes.",
          );
        }
        const body = request.body ?? {};
        const id = typeof body.id === "string" ? body.id : undefined;
        // Echoed in the answer: bounded as gRPC's is (the request's own id is x-request-id).
        if (id !== undefined && !OIP_ID.test(id))
          throw new ValidationError([
            {
              path: "id",
              message:
                id.length > 128
                  ? `expected at most 128 printable ASCII characters (found ${id.length})`
                  : "expected printable ASCII characters only (as gRPC's request id)",
            },
          ]);
        const input = target.model.toGraphInput(parseInputs(body));
        const result = await target.call(input, {
          requestId: request.id,
          owned: true,
          // A client that goes away cancels the request, as on the application's own route.
          cancel: cancelOnClose(request, reply),
          header: headerReader(request),
          // The model version names the multiplexed model, as the header does.
          multiplexedModelId: modelIdOf(request.params.version, request.headers[MODEL_ID_HEADER]),
          traceparent: requestTraceparent(request),
          ...(settings.requestTimeoutMs !== undefined && { timeout: settings.requestTimeoutMs }),
        });
        refuseStream(
          result,
          target.app.name,
          "from the application's own route (Server-Sent Events) or with gRPC ModelStreamInfer (one response per item)",
        );
        const outputs = requestedTensors(result, requestedOutputs(body), target.app.name).map(
          (t) => ({
            name: t.name,
            datatype: t.datatype,
            shape: t.shape,
            data: tensorToJson(t),
          }),
        );
        const answer = { model_name: target.app.name, id: id ?? request.id, outputs };
        // INT64 and UINT64 past 2^53 as exact JSON integers, which JSON.stringify cannot write.
        const exact = outputs.some(
          (o) =>
            (o.datatype === "INT64" || o.datatype === "UINT64") &&
            o.data.some((v) => typeof v === "bigint"),
        );
        return exact ? reply.type("application/json; charset=utf-8").send(oipJson(answer)) : answer;
      },
    );
  }
}
