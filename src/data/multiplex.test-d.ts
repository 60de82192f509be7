/**
 * Type tests for model multiplexing. This file is never run: `npm run check` (tsc) checks it.
 * Each `@ts-expect-error` line must be a compile error; each `expectTypeOf` must hold exactly.
 */
import { expectTypeOf } from "expect-type";
import {
  deployment,
  multiplexed,
  requestContext,
  withHandleOptions,
  type DeploymentHandle,
  type MultiplexedModels,
  type RequestContext,
  type Server,
} from "../index.js";

class Model {
  constructor(readonly id: string) {}
  run(x: number): number[] {
    return [x];
  }
}

class Multiplexed {
  // The loader's return type (awaited) is what the methods receive.
  models = multiplexed(async (id: string) => new Model(id), { maxModelsPerReplica: 2 });
  sync = multiplexed((id: string) => id.length);
  async predict(x: number): Promise<number[]> {
    const model = await this.models();
    expectTypeOf(model).toEqualTypeOf<Model>();
    expectTypeOf(await this.models("explicit")).toEqualTypeOf<Model>();
    expectTypeOf(await this.sync()).toEqualTypeOf<number>();
    // @ts-expect-error a model id is a string
    void this.models(42);
    return model.run(x);
  }
}
expectTypeOf<Multiplexed["models"]>().toEqualTypeOf<MultiplexedModels<Model>>();
// @ts-expect-error the loader takes the model id, a string
multiplexed(async (id: number) => id);
// @ts-expect-error maxModelsPerReplica is a number
multiplexed(async (id: string) => id, { maxModelsPerReplica: "2" });

// The request context names the model.
expectTypeOf<RequestContext["multiplexedModelId"]>().toEqualTypeOf<string | undefined>();
expectTypeOf(requestContext()?.multiplexedModelId).toEqualTypeOf<string | undefined>();

// A handle with options is the same typed handle.
declare const handle: DeploymentHandle<Multiplexed>;
const withModel = withHandleOptions(handle, { multiplexedModelId: "m1" });
expectTypeOf(withModel).toEqualTypeOf<DeploymentHandle<Multiplexed>>();
expectTypeOf(withModel.predict).returns.toEqualTypeOf<Promise<number[]>>();
// @ts-expect-error the model id is a string
withHandleOptions(handle, { multiplexedModelId: 1 });
// @ts-expect-error only a handle takes options
withHandleOptions({ predict: () => 1 }, { multiplexedModelId: "m1" });

declare const server: Server<unknown, unknown>;
expectTypeOf(server.getHandle<Multiplexed>("mux", { multiplexedModelId: "m1" })).toEqualTypeOf<
  DeploymentHandle<Multiplexed>
>();

// maxQueueWait is a duration, or "off".
deployment(Multiplexed, { maxQueueWait: "250ms" });
deployment(Multiplexed, { maxQueueWait: 250 });
deployment(Multiplexed, { maxQueueWait: "off" });
// @ts-expect-error not a duration
deployment(Multiplexed, { maxQueueWait: "soon" });
