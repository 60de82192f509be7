/**
 * Type tests for `build({ routes })` and `appBuilder`. Never run: `npm run check` (tsc)
 * checks it. Each `@ts-expect-error` line must be a compile error.
 */
import { expectTypeOf } from "expect-type";
import { z } from "zod";
import { appBuilder, build, deployment, InputNode, type Application } from "../index.js";

class Model {
  predict(x: number[]): { label: string } {
    return { label: String(x.length) };
  }
}
const model = deployment(Model).bind();
const graph = model.predict.bind(new InputNode(z.object({ x: z.array(z.number()) })).x);

build(graph, {
  routes: (http, app) => {
    http.get(
      "/items/:id",
      {
        schema: {
          params: z.object({ id: z.coerce.number() }),
          querystring: z.object({ q: z.string().optional() }),
          headers: z.object({ "x-user": z.string() }),
        },
      },
      async (request) => {
        // The schemas' output types are the request's.
        expectTypeOf(request.params).toEqualTypeOf<{ id: number }>();
        expectTypeOf(request.query).toEqualTypeOf<{ q?: string | undefined }>();
        expectTypeOf(request.headers["x-user"]).toEqualTypeOf<string>();
        // The graph's input and output types flow into app.call.
        const result = await app.call({ x: [request.params.id] }, request);
        expectTypeOf(result).toEqualTypeOf<{ label: string }>();
        // @ts-expect-error the graph's input is { x: number[] }
        await app.call({ y: 1 });
        const handle = app.getHandle<Model>("Model");
        expectTypeOf(handle.predict).returns.toEqualTypeOf<Promise<{ label: string }>>();
        return result;
      },
    );
    http.post(
      "/items",
      {
        schema: {
          body: z.object({ name: z.string() }),
          response: { 201: z.object({ created: z.string() }) },
        },
      },
      async (request, reply) => {
        expectTypeOf(request.body).toEqualTypeOf<{ name: string }>();
        // @ts-expect-error the 201 answer's schema has no field "made"
        void reply.code(201).send({ made: request.body.name });
        return reply.code(201).send({ created: request.body.name });
      },
    );
  },
});

// A builder's argument types come from its schema (input side: defaults are optional).
const builder = appBuilder(
  z.object({ size: z.number(), label: z.string().default("x") }),
  (args) => {
    expectTypeOf(args).toEqualTypeOf<{ size: number; label: string }>();
    return build(graph, { name: args.label });
  },
);
expectTypeOf(builder).parameter(0).toEqualTypeOf<{ size: number; label?: string | undefined }>();
expectTypeOf(builder({ size: 1 })).toEqualTypeOf<Application<{ x: number[] }, { label: string }>>();
// @ts-expect-error size is a number
builder({ size: "1" });
