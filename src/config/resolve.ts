/**
 * From a configuration entry to a built Application: imports the module its `importPath`
 * names, finds the exported Application, and applies the deployments' overrides. Problems
 * point at the line of the field that caused them.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync, realpathSync, statSync } from "node:fs";
import { dirname, extname, relative, resolve, isAbsolute } from "node:path";
import { pathToFileURL } from "node:url";
import {
  Application,
  INGRESS,
  ingressOptionsProblem,
  type CodeFingerprint,
} from "../app/application.js";
import { callBuilder, isBuilder, type BuilderArgs } from "../app/builder.js";
import { checkWeights } from "../dag/weights.js";
import type { DeploymentOptions } from "../options.js";
import { ValidationError, type ValidationIssue } from "../errors.js";
import { servedApplication } from "./served.js";
import { ConfigError, didYouMean, type PositionedDocument } from "./load.js";
import { ensureTypeScriptLoader } from "../app/typescript-loader.js";
import type { ApplicationConfigEntry } from "./schema.js";

/** `./app.ts:app` → the module path and the export name (if any). */
export function splitImportPath(importPath: string): {
  module: string;
  exportName: string | undefined;
} {
  const match = /^(.*\.[cm]?[jt]sx?):([A-Za-z_$][\w$]*)$/.exec(importPath);
  return match
    ? { module: match[1]!, exportName: match[2] }
    : { module: importPath, exportName: undefined };
}

/** The extensions a module may have: anything else is not imported (it would run as JavaScript). */
const MODULE_EXTENSIONS = new Set([".js", ".mjs", ".cjs", ".jsx", ".ts", ".mts", ".cts", ".tsx"]);

/**
 * Why an import failed, without quoting the module's text: a syntax error names only its
 * position (JavaScript engines and esbuild quote the offending source, which may be a
 * file that was never meant to be code).
 */
function importFailure(error: unknown): string {
  const e = error as { name?: unknown; message?: unknown; stack?: unknown } | null;
  const message = typeof e?.message === "string" ? e.message : String(error);
  const syntax = e?.name === "SyntaxError" || e?.name === "TransformError";
  if (!syntax) return message;
  const esbuild = /:(\d+):(\d+): ERROR/.exec(message);
  const node = typeof e?.stack === "string" ? /^\S+:(\d+)\n/.exec(e.stack) : null;
  const where = esbuild
    ? ` at line ${esbuild[1]}, column ${esbuild[2]}`
    : node
      ? ` at line ${node[1]}`
      : "";
  return `it is not valid JavaScript or TypeScript (a syntax error${where})`;
}

/** How an import path is served: a builder's arguments, and a name other than the code's. */
export interface ImportOptions {
  /** The code version: a new one imports changed code again instead of from the cache. */
  readonly version?: string | undefined;
  /** Arguments of an application builder (`--arg`, `args:`). */
  readonly args?: BuilderArgs | undefined;
  /** The name to serve the application under (a config's `name`). */
  readonly name?: string | undefined;
  /** `args` go to a builder only: an application given them is not refused (several targets). */
  readonly argsForBuilder?: boolean | undefined;
}

/** A builder's arguments failed its schema; `issues` name each argument. */
export class BuilderArgsError extends Error {
  readonly issues: readonly ValidationIssue[];
  constructor(label: string, issues: readonly ValidationIssue[]) {
    super(
      `the arguments of ${label} failed its schema: ${issues.map((i) => `${i.path || "(args)"}: ${i.message}`).join("; ")}`,
    );
    this.issues = issues;
  }
}

/**
 * Imports a module and returns the Application it exports (by name, default, or the only
 * one), or the one an exported builder returns for `options.args`. An application built by
 * a builder or served under another name is addressed so that replicas rebuild it the
 * same way (served.ts).
 */
export async function importApplication(
  importPath: string,
  baseDir: string,
  options: ImportOptions = {},
): Promise<{ app: Application; moduleUrl: string; exportName: string; built: boolean }> {
  const { module, exportName } = splitImportPath(importPath);
  const file = resolve(baseDir, module);
  if (!MODULE_EXTENSIONS.has(extname(file).toLowerCase()))
    throw new Error(
      `the module ${module} is not a JavaScript or TypeScript file (expected one of ${[...MODULE_EXTENSIONS].join(", ")})`,
    );
  if (!existsSync(file))
    throw new Error(`the module ${module} does not exist (looked for ${file})`);
  // A version makes a new module instance: changed code is imported again, not from the cache.
  const moduleUrl = pathToFileURL(file).href + (options.version ? `?v=${options.version}` : "");
  let exports: Record<string, unknown>;
  try {
    await ensureTypeScriptLoader(moduleUrl);
    exports = (await import(moduleUrl)) as Record<string, unknown>;
  } catch (error) {
    throw new Error(`importing ${module} failed: ${importFailure(error)}`);
  }
  const apps = Object.entries(exports).filter(([, value]) => value instanceof Application) as [
    string,
    Application,
  ][];
  let chosen: [string, Application] | undefined = exportName
    ? apps.find(([name]) => name === exportName)
    : (apps.find(([name]) => name === "default") ?? (apps.length === 1 ? apps[0] : undefined));
  let built = false;
  const exported = exportName === undefined ? undefined : exports[exportName];
  if (!chosen && exportName !== undefined && isBuilder(exported)) {
    const label = `${module}:${exportName}`;
    try {
      chosen = [exportName, await callBuilder(exported, options.args ?? {}, label)];
    } catch (error) {
      if (error instanceof ValidationError) throw new BuilderArgsError(label, error.issues);
      throw error;
    }
    built = true;
  }
  if (!chosen) {
    const builders = Object.entries(exports)
      .filter(([, value]) => isBuilder(value))
      .map(([n]) => `"${n}"`);
    const names = [
      ...(apps.length > 0 ? [`applications ${apps.map(([n]) => `"${n}"`).join(", ")}`] : []),
      ...(builders.length > 0 ? [`builders ${builders.join(", ")}`] : []),
    ];
    const found =
      names.length > 0
        ? `it exports ${names.join(" and ")}`
        : "it exports no application (build(...) result) or builder";
    throw new Error(
      exportName
        ? `${module} has no exported application or builder "${exportName}"; ${found}.`
        : `${module} does not say which application to serve; ${found}. Write ${module}:exportName.`,
    );
  }
  if (
    !built &&
    !options.argsForBuilder &&
    options.args !== undefined &&
    Object.keys(options.args).length > 0
  ) {
    throw new Error(
      `${module}:${chosen[0]} is an application, not a builder: it takes no arguments. Export a function that returns build(...) to take them.`,
    );
  }
  const chosenName = chosen[0];
  let app = chosen[1];
  if (built || (options.name !== undefined && options.name !== app.name)) {
    app = servedApplication(
      app,
      { module: moduleUrl, exportName: chosenName, args: built ? (options.args ?? {}) : undefined },
      options.name ?? app.name,
    );
  }
  return { app, moduleUrl, exportName: chosenName, built };
}

/**
 * Which modules a configuration may import. The admin API takes configurations from any
 * caller that can reach it, so it imports a module only when it lies under the config
 * file's directory and under the project directory, or under a directory the operator
 * allowed. Paths are compared after resolving symbolic links.
 */
export interface ImportPolicy {
  /** The instance's project directory (its working directory by default). */
  readonly projectDir: string;
  /** Directories whose modules may be imported wherever the config file is (`--allow-imports`). */
  readonly allowedDirs: readonly string[];
}

const isInside = (path: string, dir: string): boolean => {
  const rel = relative(dir, path);
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
};

const realOrUndefined = (path: string): string | undefined => {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
};

/**
 * Checks `applications[index].importPath` against `policy` without importing anything:
 * its extension, that it exists, and where it lies. ConfigError on a problem.
 */
export function checkImportPath(
  entry: ApplicationConfigEntry,
  index: number,
  document: PositionedDocument,
  configFile: string,
  policy: ImportPolicy,
): void {
  const at = ["applications", index, "importPath"];
  const { module } = splitImportPath(entry.importPath);
  const configDir = dirname(resolve(configFile));
  const file = resolve(configDir, module);
  const fail = (message: string): never => {
    throw new ConfigError([document.problem(at, message)]);
  };
  if (!MODULE_EXTENSIONS.has(extname(file).toLowerCase()))
    fail(
      `the module ${module} is not a JavaScript or TypeScript file (expected one of ${[...MODULE_EXTENSIONS].join(", ")}); nothing was imported.`,
    );
  const real = realOrUndefined(file);
  if (real === undefined) return fail(`the module ${module} does not exist (looked for ${file})`);
  const allowed = policy.allowedDirs.map(realOrUndefined).filter((d) => d !== undefined);
  if (allowed.some((dir) => isInside(real, dir))) return;
  const realConfigDir = realOrUndefined(configDir);
  const project = realOrUndefined(policy.projectDir);
  if (
    realConfigDir !== undefined &&
    project !== undefined &&
    isInside(real, realConfigDir) &&
    isInside(real, project)
  )
    return;
  fail(
    `the module ${module} (${real}) is outside the directories this instance imports from: ` +
      `modules under the config file's directory inside the project directory ${policy.projectDir}` +
      `${policy.allowedDirs.length > 0 ? `, or under ${policy.allowedDirs.join(", ")}` : ""}. ` +
      `Nothing was imported; start the instance with --allow-imports DIR to allow another directory.`,
  );
}

/** Builds the application of `applications[index]`, its overrides applied; ConfigError on a problem. */
export async function resolveApplication(
  entry: ApplicationConfigEntry,
  index: number,
  document: PositionedDocument,
  configFile: string,
  version?: string,
): Promise<Application> {
  return (await configureApplication(entry, index, document, configFile, { version })).app;
}

/**
 * The application of `applications[index]` as its code builds it (`base`: imported, or
 * the one given, which keeps a running graph when neither code nor arguments changed) and
 * with the entry's overrides and route prefix applied (`app`). ConfigError on a problem.
 */
export async function configureApplication(
  entry: ApplicationConfigEntry,
  index: number,
  document: PositionedDocument,
  configFile: string,
  from: { readonly version?: string | undefined; readonly base?: Application },
): Promise<{ app: Application; base: Application }> {
  const at = ["applications", index];
  const base = from.base ?? (await importEntry(entry, at, document, configFile, from.version));
  const app = base;
  const overrides: Record<string, DeploymentOptions> = {};
  const problems = [];
  for (const [j, deployment] of entry.deployments.entries()) {
    const { name, ...options } = deployment;
    if (!Object.hasOwn(app.deployments, name)) {
      const known = Object.keys(app.deployments);
      problems.push(
        document.problem(
          [...at, "deployments", j, "name"],
          `found "${name}", but application "${app.name}" has no such deployment.${didYouMean(name, known)} Its deployments: ${known.join(", ")}.`,
        ),
      );
      continue;
    }
    const ingressProblem = name === INGRESS ? ingressOptionsProblem(options) : undefined;
    if (ingressProblem) {
      problems.push(document.problem([...at, "deployments", j], `${ingressProblem}.`));
      continue;
    }
    overrides[name] = options as DeploymentOptions;
  }
  const weights: Record<string, Record<string, number>> = {};
  for (const [j, { name, weights: given }] of entry.splits.entries()) {
    const step = app.graph.splits.get(name);
    if (!step) {
      const known = [...app.graph.splits.keys()];
      problems.push(
        document.problem(
          [...at, "splits", j, "name"],
          `found "${name}", but application "${app.name}" has no such split.${didYouMean(name, known)} ${
            known.length > 0 ? `Its splits: ${known.join(", ")}.` : "Its graph has no split()."
          }`,
        ),
      );
      continue;
    }
    try {
      checkWeights(name, step.keys, given);
      weights[name] = given;
    } catch (error) {
      problems.push(document.problem([...at, "splits", j, "weights"], (error as Error).message));
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const configured = app.withOptions(overrides).withSplits(weights);
  const prefixed =
    entry.routePrefix === undefined || entry.routePrefix === app.routePrefix
      ? configured
      : configured.withRoutePrefix(entry.routePrefix);
  const file = resolve(dirname(resolve(configFile)), splitImportPath(entry.importPath).module);
  return {
    base,
    app:
      from.version === undefined
        ? prefixed
        : new Application({ ...prefixed, code: { file, version: from.version } }),
  };
}

/** Imports the application an entry names (its builder called with its `args`). */
async function importEntry(
  entry: ApplicationConfigEntry,
  at: readonly PropertyKey[],
  document: PositionedDocument,
  configFile: string,
  version: string | undefined,
): Promise<Application> {
  try {
    const { app } = await importApplication(entry.importPath, dirname(resolve(configFile)), {
      version,
      args: entry.args,
      name: entry.name,
    });
    return app;
  } catch (error) {
    if (error instanceof BuilderArgsError) {
      throw new ConfigError(
        error.issues.map((issue) =>
          document.problem(
            [...at, "args", ...(issue.path ? issue.path.split(".") : [])],
            issue.message,
          ),
        ),
      );
    }
    throw new ConfigError([document.problem([...at, "importPath"], (error as Error).message)]);
  }
}

/**
 * A fingerprint of the code an import path names: the module's file and every source file
 * it imports by a relative path, transitively (so a change in a module it imports counts
 * as a code change, and a change beside it that it does not import does not: several
 * applications in one folder are updated one by one). Packages are not followed. Data the
 * instance writes (its state) is never code.
 */
export function moduleVersion(importPath: string, baseDir: string): string {
  return codeVersion(resolve(baseDir, splitImportPath(importPath).module));
}

/**
 * Why `where` (a cluster node) must not run a replica of an application whose code the head
 * applied as `code` (its module's file and version, see {@link moduleVersion}): the copy
 * here differs, or is missing. Undefined when they match, or when the head named none (an
 * application `run()` in code).
 */
export function codeMismatch(code: CodeFingerprint | undefined, where: string): string | undefined {
  if (!code) return undefined;
  const { file, version: wanted } = code;
  const here = codeVersion(file);
  if (here === wanted) return undefined;
  return here === "missing"
    ? `${where} has no ${file}: every node needs the application's code, at the same path as the head's`
    : `${where} has other code than the head for ${file} or a module it imports (version ${here} here, ${wanted} on the head): deploy the same code to every node.`;
}

/** {@link moduleVersion} of a module's file. */
export function codeVersion(file: string): string {
  if (!existsSync(file)) return "missing";
  const hash = createHash("sha256");
  const seen = new Set<string>();
  const pending = [file];
  while (pending.length > 0 && seen.size < 2_000) {
    const path = pending.pop()!;
    if (seen.has(path)) continue;
    seen.add(path);
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch {
      continue;
    }
    hash.update(path).update(text);
    for (const match of text.matchAll(RELATIVE_IMPORT)) {
      const found = sourceFile(resolve(dirname(path), match[1] ?? match[2]!));
      if (found && !seen.has(found)) pending.push(found);
    }
  }
  return hash.digest("hex").slice(0, 16);
}

/** `from "./x"`, `import "./x"`, `import("./x")`, `require("./x")`: relative specifiers. */
const RELATIVE_IMPORT =
  /(?:\bfrom|\bimport)\s*["'](\.{1,2}\/[^"']+)["']|(?:\bimport|\brequire)\s*\(\s*["'](\.{1,2}\/[^"']+)["']\s*\)/g;

/** The source file a specifier names (`./x.js` may be `./x.ts`; `./x` may be `./x.ts`). */
function sourceFile(path: string): string | undefined {
  const candidates = [path];
  if (/\.[cm]?js$/.test(path))
    candidates.push(path.replace(/js$/, "ts"), path.replace(/\.js$/, ".tsx"));
  else if (!/\.[cm]?[jt]sx?$/.test(path))
    for (const ext of [".ts", ".tsx", ".mts", ".js", ".mjs", "/index.ts", "/index.js"])
      candidates.push(path + ext);
  return candidates.find(
    (candidate) => existsSync(candidate) && !statSync(candidate).isDirectory(),
  );
}
