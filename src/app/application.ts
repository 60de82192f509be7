/**
 * `build()` and the immutable `Application` it returns: the compiled graph, one resolved
 * option set per deployment (plus the generated `ingress`), and the module that built it.
 */
import { fileURLToPath } from "node:url";
import { accessSync, constants } from "node:fs";
import { isAbsolute, relative } from "node:path";
import { compileGraph, type CompiledGraph, type DeploymentSpec } from "../dag/compile.js";
import { formatCallSite, userCallSite, type CallSite } from "../dag/call-site.js";
import { stateOf, type NodeState } from "../dag/state.js";
import type { GraphNode } from "../dag/types.js";
import { GraphBuildError, OptionsError } from "../errors.js";
import {
  DEPLOYMENT_NAME_PATTERN,
  resolveOptions,
  mergeOptions,
  validateOptions,
  type DeploymentOptions,
  type ResolvedDeploymentOptions,
} from "../options.js";
import { checkWeights } from "../dag/weights.js";
import { registerApplication } from "./registry.js";
import type { Routes } from "./routes.js";

/** The generated deployment that receives requests and runs the graph. */
export const INGRESS = "ingress";

/**
 * Defaults of the ingress. It runs in the serving process and walks the graph, so it is
 * bounded by how many graph executions may be in flight, not by a model's capacity.
 */
export const INGRESS_DEFAULTS = { maxOngoingRequests: 1000, maxQueuedRequests: 1000 } as const;

/** The options the ingress takes: it has no replicas, code or config of its own. */
export const INGRESS_OPTIONS: readonly string[] = [
  "maxOngoingRequests",
  "maxQueuedRequests",
  "maxQueueWait",
];

/**
 * Why `options` do not fit the ingress (a field it has no use for, which would be ignored),
 * or undefined.
 */
export function ingressOptionsProblem(options: object): string | undefined {
  const other = Object.keys(options).filter(
    (key) => key !== "name" && !INGRESS_OPTIONS.includes(key),
  );
  if (other.length === 0) return undefined;
  return (
    `the ingress takes only ${INGRESS_OPTIONS.join(", ")}, not ${other.join(", ")}: it walks ` +
    `the graph in the front door (no replicas, code or config of its own); set those on the deployments`
  );
}

export interface BuildOptions<In = unknown, Out = unknown> {
  /** The application's name (default `"default"`). */
  readonly name?: string;
  /** Where HTTP requests are routed (default `/` for `default`, else `/{name}`). */
  readonly routePrefix?: string;
  /** Names deployments after variables: `names: { m1, m2 }`. */
  readonly names?: Readonly<Record<string, unknown>>;
  /**
   * Files the HTTP front door answers to `GET {routePrefix}{path}`, such as a page to try
   * the pipeline in a browser: `assets: { "/": new URL("./page.html", import.meta.url) }`.
   * The content type follows the file's extension. Give absolute paths or file URLs.
   */
  readonly assets?: Readonly<Record<string, string | URL>>;
  /**
   * HTTP routes of the application's own, declared on a Fastify instance scoped to the
   * route prefix, with zod schemas (see {@link Routes}). They run in the serving process
   * and call the graph (`app.call`) or its deployments (`app.getHandle`). The default
   * `POST {routePrefix}` stays unless a route takes `POST /` itself.
   */
  readonly routes?: Routes<In, Out>;
}

/**
 * @internal Where a served application came from when it is not a top-level export served
 * under its own name: an application builder called with `args`, or an export renamed by a
 * config. Replicas rebuild it the same way (see builder-entry.ts).
 */
export interface ApplicationOrigin {
  /** The file URL of the user's module (with its code version, if any). */
  readonly module: string;
  readonly exportName: string;
  /** The builder's arguments as given (validated again where it is rebuilt). */
  readonly args: Readonly<Record<string, unknown>> | undefined;
}

/** What `toConfig()` returns and `tributary build` writes as YAML. */
export interface ApplicationConfig {
  readonly name: string;
  readonly routePrefix: string;
  readonly importPath: string;
  /** The arguments of an application builder. */
  readonly args?: Readonly<Record<string, unknown>>;
  readonly deployments: readonly ({ readonly name: string } & DeploymentOptions)[];
  /** The weights of the graph's splits (absent when it has none). */
  readonly splits?: readonly SplitConfig[];
}

/** The weights of one split, by arm: what `serve.yaml`'s `splits:` sets. */
export interface SplitConfig {
  readonly name: string;
  readonly weights: Readonly<Record<string, number>>;
}

/** Weights by split name, by arm. */
export type SplitWeights = Readonly<Record<string, Readonly<Record<string, number>>>>;

declare const ioKey: unique symbol;

/** @internal A module's file and the version of its code (see `Application.code`). */
export interface CodeFingerprint {
  readonly file: string;
  readonly version: string;
}

/** A built graph: immutable; `withOptions` returns a new one. */
export class Application<In = unknown, Out = unknown> {
  /** @internal phantom: the graph's input and output types. */
  declare readonly [ioKey]?: { readonly input: In; readonly output: Out };
  readonly name: string;
  readonly routePrefix: string;
  /** Every deployment, `ingress` included, with its options resolved. */
  readonly deployments: Readonly<Record<string, ResolvedDeploymentOptions>>;
  /** @internal The file URL of the module that called `build()`. */
  readonly moduleUrl: string;
  /** @internal */
  readonly graph: CompiledGraph;
  /** @internal Where `build()` was called. */
  readonly site: CallSite | undefined;
  /** @internal The options as written (code, then overrides), by deployment. */
  readonly written: Readonly<Record<string, DeploymentOptions>>;
  /** Static files served by GET, by path under the route prefix (absolute file paths). */
  readonly assets: Readonly<Record<string, string>>;
  /** @internal The application's own HTTP routes (`build({ routes })`). */
  readonly routes: Routes | undefined;
  /** @internal Set when a builder made it or a config renamed it. */
  readonly origin: ApplicationOrigin | undefined;
  /**
   * The weights of the graph's splits by name, by arm: as set in code, or as changed by
   * {@link Application.withSplits} (`serve.yaml`'s `splits:`).
   */
  readonly splits: SplitWeights;
  /**
   * @internal The code a config applied (its module's file and the version of it and what
   * it imports, see `moduleVersion`): a cluster node runs a replica only with the same.
   */
  readonly code: CodeFingerprint | undefined;

  /** @internal Use {@link build}. */
  constructor(
    fields: Pick<
      Application,
      "name" | "routePrefix" | "moduleUrl" | "graph" | "site" | "written" | "assets"
    > &
      Partial<Pick<Application, "routes" | "origin" | "splits" | "code">>,
  ) {
    this.name = fields.name;
    this.routePrefix = fields.routePrefix;
    this.moduleUrl = fields.moduleUrl;
    this.graph = fields.graph;
    this.site = fields.site;
    this.written = Object.freeze({ ...fields.written });
    this.assets = Object.freeze({ ...fields.assets });
    this.routes = fields.routes;
    this.origin = fields.origin;
    this.code = fields.code;
    this.splits = Object.freeze(
      Object.fromEntries(
        [...this.graph.splits].map(([name, step]) => {
          const given = fields.splits?.[name];
          return [
            name,
            Object.freeze(
              given
                ? { ...given }
                : Object.fromEntries(step.keys.map((k, i) => [k, step.weights[i]!])),
            ),
          ];
        }),
      ),
    );
    for (const url of Object.keys(assetRoutes(this.routePrefix, this.assets))) {
      if (
        url === "/openapi.json" ||
        url === "/metrics" ||
        url === "/v2" ||
        url.startsWith("/v2/")
      ) {
        throw new OptionsError(
          `Application "${this.name}": the asset at ${url} would hide the server's own route there (/openapi.json, /metrics and /v2/… are reserved); choose another path or route prefix.`,
        );
      }
    }
    this.deployments = Object.freeze(
      Object.fromEntries(
        Object.entries(this.written).map(([name, options]) => [
          name,
          Object.freeze(resolveOptions(options)),
        ]),
      ),
    );
    Object.freeze(this);
  }

  /** The compiled deployment named `name` (`undefined` for `ingress`). @internal */
  spec(name: string): DeploymentSpec | undefined {
    return this.graph.deployments.find((d) => d.name === name);
  }

  /**
   * A new Application with some deployments' options changed. Each given field replaces the
   * current one (an object-valued field is replaced whole); `numReplicas` turns off the
   * autoscaling the code set, and `autoscaling` replaces the code's `numReplicas`.
   *
   * @example
   * const scaled = app.withOptions({ m1: { numReplicas: 4 } });
   */
  withOptions(overrides: Readonly<Record<string, DeploymentOptions>>): Application<In, Out> {
    const written: Record<string, DeploymentOptions> = { ...this.written };
    for (const [name, options] of Object.entries(overrides)) {
      if (!(name in written)) {
        throw new OptionsError(
          `Application "${this.name}" has no deployment "${name}"; its deployments are ${Object.keys(
            written,
          )
            .map((n) => `"${n}"`)
            .join(", ")}.`,
        );
      }
      validateOptions(options, `deployment "${name}"`);
      const ingressProblem = name === INGRESS ? ingressOptionsProblem(options) : undefined;
      if (ingressProblem) throw new OptionsError(`Application "${this.name}": ${ingressProblem}.`);
      if (options.name !== undefined && options.name !== name) {
        throw new OptionsError(
          `Deployment "${name}" cannot be renamed by options; rename it in code.`,
        );
      }
      written[name] = mergeOptions(written[name] ?? {}, options);
    }
    return new Application<In, Out>({ ...this, written });
  }

  /**
   * A new Application with some splits' weights changed (an integer 0–100 per arm, summing
   * to 100). Serving it with `server.update()` (or `tributary deploy`) changes the traffic
   * division live: no replica restarts.
   *
   * @example
   * await server.update(app.withSplits({ model: { stable: 0, canary: 100 } }));
   */
  withSplits(overrides: SplitWeights): Application<In, Out> {
    const splits: Record<string, Readonly<Record<string, number>>> = { ...this.splits };
    for (const [name, weights] of Object.entries(overrides)) {
      const step = this.graph.splits.get(name);
      if (!step) {
        const known = [...this.graph.splits.keys()];
        throw new OptionsError(
          `Application "${this.name}" has no split "${name}"; ${
            known.length > 0
              ? `its splits are ${known.map((n) => `"${n}"`).join(", ")}`
              : "its graph has no split"
          }.`,
        );
      }
      checkWeights(name, step.keys, weights);
      splits[name] = { ...weights };
    }
    return new Application<In, Out>({ ...this, splits });
  }

  /** A new Application served at another route prefix. */
  withRoutePrefix(routePrefix: string): Application<In, Out> {
    if (!routePrefix.startsWith("/")) {
      throw new OptionsError(
        `routePrefix "${routePrefix}" of application "${this.name}" must start with "/".`,
      );
    }
    return new Application<In, Out>({ ...this, routePrefix });
  }

  /** The plain object `tributary build` writes as YAML: every deployment and its options. */
  toConfig(): ApplicationConfig {
    const source = (this.origin?.module ?? this.moduleUrl).split("?")[0]!;
    const path = source.startsWith("file:") ? fileURLToPath(source) : source;
    const relativePath = relative(process.cwd(), path);
    const importPath =
      (relativePath.startsWith(".") ? relativePath : `./${relativePath}`) +
      (this.origin ? `:${this.origin.exportName}` : "");
    return {
      name: this.name,
      routePrefix: this.routePrefix,
      importPath,
      ...(this.origin?.args && { args: this.origin.args }),
      deployments: Object.entries(this.written).map(([name, options]) => {
        const { name: _ignored, ...rest } = options;
        return { name, ...rest };
      }),
      ...(this.graph.splits.size > 0 && {
        splits: Object.entries(this.splits).map(([name, weights]) => ({ name, weights })),
      }),
    };
  }
}

/** How long draining `app` may take: the largest gracefulShutdownTimeout of its deployments. */
export function drainMs(app: Application): number {
  return Math.max(
    0,
    ...app.graph.deployments.map((d) => app.deployments[d.name]!.gracefulShutdownTimeoutMs),
  );
}

/** The GET routes of an application's assets: URL path → file. `/` is also the bare prefix. */
export function assetRoutes(
  routePrefix: string,
  assets: Readonly<Record<string, string>>,
): Record<string, string> {
  const prefix = routePrefix.replace(/\/+$/, "");
  const routes: Record<string, string> = {};
  for (const [path, file] of Object.entries(assets)) {
    routes[`${prefix}${path}`] = file;
    if (path === "/" && prefix !== "") routes[prefix] = file;
  }
  return routes;
}

/** Checks `assets`: each path starts with "/", and each file exists and is readable. */
function resolveAssets(
  assets: Readonly<Record<string, string | URL>>,
  site: CallSite | undefined,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [path, file] of Object.entries(assets)) {
    if (!/^\/[\w\-./]*$/.test(path) || path.includes("..")) {
      throw new OptionsError(
        `build({ assets }) at ${formatCallSite(site)}: "${path}" is not a URL path; use one such as "/" or "/page.html".`,
      );
    }
    if (!(file instanceof URL) && !file.startsWith("file:") && !isAbsolute(file)) {
      throw new OptionsError(
        `build({ assets }) at ${formatCallSite(site)}: the file for "${path}" is the relative path "${file}"; give an absolute path or a URL such as new URL("./page.html", import.meta.url).`,
      );
    }
    const absolute = file instanceof URL || file.startsWith("file:") ? fileURLToPath(file) : file;
    try {
      accessSync(absolute, constants.R_OK);
    } catch {
      throw new OptionsError(
        `build({ assets }) at ${formatCallSite(site)}: the file for "${path}", ${absolute}, cannot be read.`,
      );
    }
    out[path] = absolute;
  }
  return out;
}

/**
 * Builds a graph into an application: compiles it once into an execution plan, names its
 * deployments and adds the generated `ingress`. Call it at module top level: replicas
 * re-import the module and find the graph by the application's name.
 *
 * @example
 * export const app = build(out, { name: "classify", routePrefix: "/classify", names: { m1, m2 } });
 */
export function build<Out, In>(
  node: GraphNode<Out, In>,
  options: BuildOptions<In, Out> = {},
): Application<In, Out> {
  const site = userCallSite();
  const root = stateOf(node);
  if (!root) throw new GraphBuildError(`build() at ${formatCallSite(site)} expects a graph node.`);
  const name = options.name ?? "default";
  if (!DEPLOYMENT_NAME_PATTERN.test(name)) {
    throw new OptionsError(
      `Application name "${name}" is invalid: use letters, digits, '_', '-' or '.'.`,
    );
  }
  const routePrefix = options.routePrefix ?? (name === "default" ? "/" : `/${name}`);
  if (!routePrefix.startsWith("/")) {
    throw new OptionsError(
      `routePrefix "${routePrefix}" of application "${name}" must start with "/".`,
    );
  }
  const assets = resolveAssets(options.assets ?? {}, site);
  const names = new Map<NodeState, string>();
  for (const [variable, value] of Object.entries(options.names ?? {})) {
    const state = stateOf(value);
    const owner = state?.kind === "call" ? (state.instance ?? state) : state;
    if (!owner || (owner.kind !== "class" && owner.kind !== "call")) {
      throw new GraphBuildError(
        `build({ names }) at ${formatCallSite(site)}: "${variable}" is not a deployment's node (a class node or a call).`,
      );
    }
    const other = names.get(owner);
    if (other !== undefined) {
      throw new GraphBuildError(
        `build({ names }) at ${formatCallSite(site)}: "${other}" and "${variable}" name the same deployment; give it one name.`,
      );
    }
    names.set(owner, variable);
  }
  const graph = compileGraph(root, names);
  const written: Record<string, DeploymentOptions> = {};
  for (const spec of graph.deployments) written[spec.name] = { ...spec.deployment.config };
  written[INGRESS] = { ...INGRESS_DEFAULTS };
  const app = new Application<In, Out>({
    name,
    routePrefix,
    moduleUrl: site?.url ?? "",
    graph,
    site,
    written,
    assets,
    routes: options.routes as Routes | undefined,
  });
  registerApplication(app);
  return app;
}
