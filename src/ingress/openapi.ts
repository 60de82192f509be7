/**
 * The OpenAPI 3.1 document served at `/openapi.json`: the application's route with its
 * input schema (from zod), the Open Inference Protocol routes, and the error body.
 */
import { z } from "zod";
import type { IngressTarget } from "./target.js";
import { SERVER_NAME, SERVER_VERSION } from "./version.js";

const errorBody = {
  type: "object",
  required: ["error"],
  properties: {
    error: {
      type: "object",
      required: ["code", "message", "requestId"],
      properties: {
        code: { type: "string" },
        message: { type: "string" },
        requestId: { type: "string" },
      },
    },
  },
};

const errors: Record<string, unknown> = Object.fromEntries(
  [
    ["400", "Malformed body"],
    ["413", "Body too large"],
    ["415", "Unsupported content type"],
    ["422", "Input failed the schema; `issues` lists every failing path"],
    ["500", "The pipeline failed"],
    ["503", "Overloaded (see Retry-After) or not ready"],
    ["504", "The pipeline did not answer in time"],
  ].map(([status, description]) => [
    status!,
    { description, content: { "application/json": { schema: errorBody } } },
  ]),
);

const tensor = {
  type: "object",
  required: ["name", "datatype", "shape", "data"],
  properties: {
    name: { type: "string" },
    datatype: { type: "string" },
    shape: { type: "array", items: { type: "integer" } },
    data: { type: "array" },
  },
};

export function openApiDocument(target: IngressTarget): Record<string, unknown> {
  const { app } = target;
  const schema = app.graph.input?.schema;
  const input = schema ? z.toJSONSchema(schema, { unrepresentable: "any", io: "input" }) : {};
  const json = { "application/json": { schema: input } };
  const content =
    target.bytesField === undefined && !schema
      ? json
      : {
          ...json,
          "application/octet-stream": { schema: { type: "string", format: "binary" } },
          "multipart/form-data": { schema: { type: "object" } },
        };
  const model = {
    name: "name",
    in: "path",
    required: true,
    schema: { type: "string", enum: [app.name] },
  };
  return {
    openapi: "3.1.0",
    info: { title: `${app.name} (${SERVER_NAME})`, version: SERVER_VERSION },
    paths: {
      [app.routePrefix]: {
        post: {
          summary: `Run the ${app.name} pipeline`,
          requestBody: { required: true, content },
          responses: {
            "200": {
              description:
                "The pipeline's result: JSON, bytes (application/octet-stream), or Server-Sent Events for a stream",
              content: {
                "application/json": { schema: {} },
                "application/octet-stream": { schema: { type: "string", format: "binary" } },
                "text/event-stream": { schema: { type: "string" } },
              },
            },
            ...errors,
          },
        },
      },
      "/v2/health/live": {
        get: {
          summary: "Liveness (Open Inference Protocol)",
          responses: { "200": { description: "Live" } },
        },
      },
      "/v2/health/ready": {
        get: {
          summary: "Readiness: every deployment has a running replica",
          responses: { "200": { description: "Ready" }, "400": { description: "Not ready" } },
        },
      },
      "/v2": {
        get: {
          summary: "Server metadata",
          responses: { "200": { description: "name, version, extensions" } },
        },
      },
      "/v2/models/{name}": {
        get: {
          summary: "Model metadata: inputs derived from the input schema",
          parameters: [model],
          responses: {
            "200": { description: "Metadata" },
            "404": { description: "No such model" },
          },
        },
      },
      "/v2/models/{name}/ready": {
        get: {
          summary: "Model readiness",
          parameters: [model],
          responses: { "200": { description: "Ready" }, "400": { description: "Not ready" } },
        },
      },
      "/v2/models/{name}/infer": {
        post: {
          summary: "Inference with named tensors",
          parameters: [model],
          requestBody: {
            required: true,
            content: {
              "application/json": {
                schema: {
                  type: "object",
                  required: ["inputs"],
                  properties: {
                    id: { type: "string" },
                    inputs: { type: "array", items: tensor },
                    outputs: {
                      type: "array",
                      items: { type: "object", properties: { name: { type: "string" } } },
                    },
                  },
                },
              },
            },
          },
          responses: {
            "200": {
              description: "Output tensors",
              content: {
                "application/json": {
                  schema: {
                    type: "object",
                    properties: {
                      model_name: { type: "string" },
                      id: { type: "string" },
                      outputs: { type: "array", items: tensor },
                    },
                  },
                },
              },
            },
            ...errors,
          },
        },
      },
    },
  };
}
