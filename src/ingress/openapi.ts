/**
 * The OpenAPI 3.1 document served at `/openapi.json`: each application's `POST
 * {routePrefix}` with its input schema, its own routes with their zod schemas, the Open
 * Inference Protocol routes (a model per application), and the error body.
 */
import { z } from "zod";
import type { IngressTarget, IngressTargets } from "./target.js";
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

/** A route an application declared, as Fastify registered it (full URL, zod schemas). */
export interface DeclaredRoute {
  readonly method: string;
  readonly url: string;
  readonly schema: Readonly<Record<string, unknown>> | undefined;
}

const isZod = (value: unknown): value is z.ZodType => value instanceof z.ZodType;

const jsonSchema = (schema: z.ZodType, io: "input" | "output"): Record<string, unknown> =>
  z.toJSONSchema(schema, { unrepresentable: "any", io });

/** The parameters of one part (`path`, `query`, `header`) from an object schema. */
function parameters(schema: unknown, where: "path" | "query" | "header"): unknown[] {
  if (!isZod(schema)) return [];
  const json = jsonSchema(schema, "input");
  const properties = (json.properties ?? {}) as Record<string, unknown>;
  const required = new Set((json.required ?? []) as string[]);
  return Object.entries(properties).map(([name, property]) => ({
    name,
    in: where,
    required: where === "path" || required.has(name),
    schema: property,
  }));
}

/** The OpenAPI operation of a declared route. */
function operation(app: string, route: DeclaredRoute): Record<string, unknown> {
  const schema = route.schema ?? {};
  const responses: Record<string, unknown> = {};
  const declared = schema.response;
  if (declared && typeof declared === "object") {
    for (const [status, body] of Object.entries(declared as Record<string, unknown>)) {
      responses[status] = {
        description: `Status ${status}`,
        ...(isZod(body) && {
          content: { "application/json": { schema: jsonSchema(body, "output") } },
        }),
      };
    }
  }
  if (Object.keys(responses).length === 0) responses["200"] = { description: "The route's answer" };
  const body = schema.body;
  return {
    summary: `${route.method} ${route.url} (application ${app})`,
    tags: [app],
    parameters: [
      ...parameters(schema.params, "path"),
      ...parameters(schema.querystring ?? schema.query, "query"),
      ...parameters(schema.headers, "header"),
    ],
    ...(isZod(body) && {
      requestBody: {
        required: true,
        content: { "application/json": { schema: jsonSchema(body, "input") } },
      },
    }),
    responses: { ...responses, ...errors },
  };
}

/** Fastify's `/items/:id` as OpenAPI's `/items/{id}`. */
const openApiPath = (url: string): string => url.replace(/:([A-Za-z_$][\w$]*)/g, "{$1}");

/** The paths of one application: its default route (unless it took that over) and its own. */
function applicationPaths(
  target: IngressTarget,
  routes: readonly DeclaredRoute[],
  defaultRoute: boolean,
): Record<string, Record<string, unknown>> {
  const { app } = target;
  const paths: Record<string, Record<string, unknown>> = {};
  if (defaultRoute) paths[app.routePrefix] = { post: defaultOperation(target) };
  for (const route of routes) {
    if (route.method === "HEAD" || route.method === "OPTIONS") continue;
    const path = openApiPath(route.url);
    (paths[path] ??= {})[route.method.toLowerCase()] = operation(app.name, route);
  }
  return paths;
}

function defaultOperation(target: IngressTarget): Record<string, unknown> {
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
  return {
    summary: `Run the ${app.name} pipeline`,
    tags: [app.name],
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
  };
}

/** What the front door knows of an application's routes once it has mounted them. */
export interface MountedRoutes {
  readonly routes: readonly DeclaredRoute[];
  /** False when the application declared `POST /` itself. */
  readonly defaultRoute: boolean;
}

export function openApiDocument(
  targets: IngressTargets,
  mounted: (target: IngressTarget) => MountedRoutes | undefined,
): Record<string, unknown> {
  const list = targets.list();
  const paths: Record<string, Record<string, unknown>> = {};
  for (const target of list) {
    const routes = mounted(target) ?? { routes: [], defaultRoute: true };
    for (const [path, methods] of Object.entries(
      applicationPaths(target, routes.routes, routes.defaultRoute),
    ))
      paths[path] = { ...paths[path], ...methods };
  }
  const model = {
    name: "name",
    in: "path",
    required: true,
    schema: { type: "string", enum: list.map((t) => t.app.name) },
  };
  const title = list.length === 1 ? list[0]!.app.name : list.map((t) => t.app.name).join(", ");
  return {
    openapi: "3.1.0",
    info: { title: `${title} (${SERVER_NAME})`, version: SERVER_VERSION },
    tags: list.map((t) => ({ name: t.app.name, description: `Application ${t.app.name}` })),
    paths: {
      ...paths,
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
