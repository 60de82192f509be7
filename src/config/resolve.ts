/**
 * From a configuration entry to a built Application: imports the module its `importPath`
 * names, finds the exported Application, and applies the deployments' overrides. Problems
 * point at the line of the field that caused them.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, realpathSync } from "node:fs";
import { dirname, extname, join, relative, resolve, isAbsolute } from "node:path";
import { pathToFileURL } from "node:url";
import { Application } from "../app/application.js";
import type { DeploymentOptions } from "../options.js";
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

/** Imports a module and returns the Application it exports (by name, default, or the only one). */
export async function importApplication(
  importPath: string,
  baseDir: string,
  version?: string,
): Promise<{ app: Application; moduleUrl: string; exportName: string }> {
  const { module, exportName } = splitImportPath(importPath);
  const file = resolve(baseDir, module);
  if (!MODULE_EXTENSIONS.has(extname(file).toLowerCase()))
    throw new Error(
      `the module ${module} is not a JavaScript or TypeScript file (expected one of ${[...MODULE_EXTENSIONS].join(", ")})`,
    );
  if (!existsSync(file))
    throw new Error(`the module ${module} does not exist (looked for ${file})`);
  // A version makes a new module instance: changed code is imported again, not from the cache.
  const moduleUrl = pathToFileURL(file).href + (version ? `?v=${version}` : "");
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
  const chosen = exportName
    ? apps.find(([name]) => name === exportName)
    : (apps.find(([name]) => name === "default") ?? (apps.length === 1 ? apps[0] : undefined));
  if (!chosen) {
    const found =
      apps.length > 0
        ? `it exports applications ${apps.map(([n]) => `"${n}"`).join(", ")}`
        : "it exports no application (build(...) result)";
    throw new Error(
      exportName
        ? `${module} has no exported application "${exportName}"; ${found}.`
        : `${module} does not say which application to serve; ${found}. Write ${module}:exportName.`,
    );
  }
  return { app: chosen[1], moduleUrl, exportName: chosen[0] };
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
  const at = ["applications", index];
  let app: Application;
  try {
    ({ app } = await importApplication(entry.importPath, dirname(resolve(configFile)), version));
  } catch (error) {
    throw new ConfigError([document.problem([...at, "importPath"], (error as Error).message)]);
  }
  if (app.name !== entry.name) {
    throw new ConfigError([
      document.problem(
        [...at, "name"],
        `found "${entry.name}", but ${entry.importPath} builds the application "${app.name}"; use that name.`,
      ),
    ]);
  }
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
    overrides[name] = options as DeploymentOptions;
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const configured = app.withOptions(overrides);
  return entry.routePrefix === undefined || entry.routePrefix === app.routePrefix
    ? configured
    : configured.withRoutePrefix(entry.routePrefix);
}

/**
 * A fingerprint of the code an import path names: the module's file and the source files
 * beside it and below it (so a change in a module it imports counts as a code change).
 * Only source files count: data the instance writes (its state) must not look like code.
 */
export function moduleVersion(importPath: string, baseDir: string): string {
  const file = resolve(baseDir, splitImportPath(importPath).module);
  if (!existsSync(file)) return "missing";
  const hash = createHash("sha256").update(readFileSync(file));
  const files: string[] = [];
  const walk = (dir: string, depth: number): void => {
    if (depth > 6 || files.length > 2_000) return;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.name.startsWith(".") || entry.name === "node_modules") continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path, depth + 1);
      else if (/\.[cm]?[jt]sx?$/.test(entry.name)) files.push(path);
    }
  };
  walk(dirname(file), 0);
  for (const path of files.sort()) hash.update(path).update(readFileSync(path));
  return hash.digest("hex").slice(0, 16);
}
