/**
 * The types of an application's own HTTP routes (`build(node, { routes })`). Routes are
 * written against a real Fastify instance, scoped to the application's route prefix, whose
 * schemas are zod schemas: `params`, `querystring`, `headers` and `body` are validated and
 * typed, and every route appears in `/openapi.json`.
 */
import type {
  FastifyBaseLogger,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  FastifyTypeProvider,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
} from "fastify";
import type { ZodType, output } from "zod";
import type { DeploymentHandle } from "../dag/types.js";

/** Makes Fastify read zod schemas: `request.params` is the schema's output type. */
export interface ZodTypeProvider extends FastifyTypeProvider {
  readonly validator: this["schema"] extends ZodType ? output<this["schema"]> : unknown;
  readonly serializer: this["schema"] extends ZodType ? output<this["schema"]> : unknown;
}

/** The Fastify instance an application's `routes` receive: its paths are under the route prefix. */
export type RouteServer = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  ZodTypeProvider
>;

/** The graph's input type as a route passes it: nothing for a graph without an `InputNode`. */
export type RouteGraphInput<In> = [In] extends [never] ? undefined : In;

/** What a route can call: the application's graph and each of its deployments. */
export interface RouteContext<In = unknown, Out = unknown> {
  /** The application's name (as served: a config may rename it). */
  readonly name: string;
  /**
   * Runs the whole graph, validating `input` against the `InputNode`'s schema as
   * `POST {routePrefix}` does. Given the request, the call carries its request id, stops
   * when the client goes away, and is bounded by the server's `requestTimeout`.
   */
  call(input: RouteGraphInput<In>, request?: FastifyRequest): Promise<Out>;
  /** A handle to one deployment of the application, by the name the application gives it. */
  getHandle<T>(deployment: string): DeploymentHandle<T>;
  /**
   * Answers with a result as `POST {routePrefix}` does: bytes as
   * `application/octet-stream`, a stream (an `AsyncIterable`) as Server-Sent Events,
   * anything else as JSON (typed arrays as arrays).
   */
  respond(reply: FastifyReply, result: unknown): FastifyReply;
}

/**
 * An application's own routes, as a Fastify plugin would declare them. They run in the
 * serving process, in front of the replicas (like the generated ingress), so keep heavy
 * work in deployments and reach it through `app.call` or `app.getHandle`.
 *
 * @example
 * routes: (http, app) => {
 *   http.get("/items/:id", { schema: { params: z.object({ id: z.coerce.number() }) } },
 *     async (request, reply) => reply.code(200).send(await app.call({ id: request.params.id }, request)));
 * }
 */
export type Routes<In = unknown, Out = unknown> = (
  http: RouteServer,
  app: RouteContext<In, Out>,
) => void | Promise<void>;
