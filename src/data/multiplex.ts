/**
 * Model multiplexing (Ray Serve's `@serve.multiplexed`): `multiplexed(load, options)` turns a
 * loader of one model by id into a cache of at most `maxModelsPerReplica` models per replica.
 * A call with a model id that is not loaded runs the loader (concurrent calls for one id share
 * it); past the cap the least recently used model is evicted and its `close()` runs. On a
 * class it is a field, so the loader's return type is what the methods receive.
 *
 * The replica reports the ids it has loaded, and every router prefers replicas that have a
 * request's model (see router.ts).
 */
import { OptionsError, TributaryError } from "../errors.js";
import { currentRequest } from "./context.js";

export interface MultiplexOptions {
  /** Most models loaded at once in one replica (Ray's `max_num_models_per_replica`); 3 by default. */
  readonly maxModelsPerReplica?: number;
}

/** What a replica's multiplexed cache has done so far. */
export interface MultiplexStats {
  /** Loader calls (each id that was not loaded when asked for). */
  readonly loads: number;
  /** Models evicted to stay within `maxModelsPerReplica`. */
  readonly evictions: number;
  /** The ids loaded (or loading) now, least recently used first. */
  readonly loaded: readonly string[];
}

/**
 * The model for an id: the current request's (`requestContext().multiplexedModelId`) when
 * none is given.
 */
export interface MultiplexedModels<Model> {
  (modelId?: string): Promise<Model>;
  /** A new cap (for example from `reconfigure`); models past it are evicted now. */
  configure(options: MultiplexOptions): void;
  stats(): MultiplexStats;
}

/** Ray Serve's default `max_num_models_per_replica`. */
export const DEFAULT_MAX_MODELS_PER_REPLICA = 3;

/** Where a replica hears of changes to the models it has loaded. */
let report: ((models: readonly string[]) => void) | undefined;
/**
 * The caches of this thread, each as its list of ids (weakly: an instance that is gone, as
 * after `node.execute()` and `dispose()`, takes its cache with it).
 */
const caches = new Set<WeakRef<() => readonly string[]>>();

/**
 * @internal Called by the replica host before it constructs the deployment: a cache made at
 * module level (for a function deployment) reports now, one made by a constructor when made.
 */
export function reportModelsTo(listener: (models: readonly string[]) => void): void {
  report = listener;
  if (caches.size > 0) changed();
}

/** Reports the ids loaded in all of this replica's caches (the first report says it multiplexes). */
function changed(): void {
  if (!report) return;
  const ids = new Set<string>();
  for (const ref of caches) {
    const loaded = ref.deref();
    if (loaded) for (const id of loaded()) ids.add(id);
    else caches.delete(ref);
  }
  report([...ids]);
}

function checkedCap(options: MultiplexOptions, current?: number): number {
  const cap = options.maxModelsPerReplica ?? current ?? DEFAULT_MAX_MODELS_PER_REPLICA;
  if (!Number.isInteger(cap) || cap < 1) {
    throw new OptionsError(
      `multiplexed(): maxModelsPerReplica must be a positive integer, got ${String(cap)}.`,
    );
  }
  return cap;
}

/** Runs a model's `close()` if it has one; an evicted model's failure is only logged. */
async function closeModel(model: unknown): Promise<void> {
  const close = (model as { close?: unknown } | null | undefined)?.close;
  if (typeof close !== "function") return;
  try {
    await (close as () => unknown).call(model);
  } catch (error) {
    console.error("multiplexed(): close() of an evicted model failed:", error);
  }
}

/**
 * @example
 * class Forecaster {
 *   models = multiplexed(async (id: string) => loadModel(`s3://models/${id}`), {
 *     maxModelsPerReplica: 2,
 *   });
 *   async predict(x: number[]) {
 *     const model = await this.models(); // the id the request names
 *     return model.run(x);
 *   }
 * }
 */
export function multiplexed<Model>(
  load: (modelId: string) => Model | Promise<Model>,
  options: MultiplexOptions = {},
): MultiplexedModels<Model> {
  let cap = checkedCap(options);
  /** Least recently used first (a Map keeps insertion order; a use re-inserts). */
  const cache = new Map<string, Promise<Model>>();
  let loads = 0;
  let evictions = 0;
  const loaded = (): readonly string[] => [...cache.keys()];
  caches.add(new WeakRef(loaded));
  changed();

  const evictPast = (size: number): void => {
    let evicted = false;
    for (const [id, model] of cache) {
      if (cache.size <= size) break;
      cache.delete(id);
      evictions++;
      evicted = true;
      // A model still loading is closed once it has loaded; a failed load has nothing to close.
      model.then(closeModel, () => undefined);
    }
    if (evicted) changed();
  };

  const get = (modelId?: string): Promise<Model> => {
    const id = modelId ?? currentRequest()?.multiplexedModelId;
    if (typeof id !== "string" || id === "") {
      return Promise.reject(
        new TributaryError(
          "BAD_REQUEST",
          "multiplexed(): the request names no model. Send the x-tributary-model-id header (or " +
            "an OIP model version, or a handle's multiplexedModelId), or pass the id explicitly.",
        ),
      );
    }
    const hit = cache.get(id);
    if (hit) {
      cache.delete(id);
      cache.set(id, hit);
      return hit;
    }
    evictPast(cap - 1);
    loads++;
    const model = Promise.resolve().then(() => load(id));
    cache.set(id, model);
    changed();
    model.catch(() => {
      // A failed load is forgotten, so the next request tries again.
      if (cache.get(id) !== model) return;
      cache.delete(id);
      changed();
    });
    return model;
  };

  return Object.assign(get, {
    configure(next: MultiplexOptions): void {
      cap = checkedCap(next, cap);
      evictPast(cap);
    },
    // `loaded` is held here, so the cache stays registered as long as this function lives.
    stats: (): MultiplexStats => ({ loads, evictions, loaded: loaded() }),
  });
}
