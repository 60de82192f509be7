/**
 * From a configuration entry to a built Application: imports the module its `importPath`
 * names, finds the exported Application, and applies the deployments' overrides. Problems
 * point at the line of the field that caused them.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { Application } from "../app/application.js";
import type { DeploymentOptions } from "../app/options.js";
import { ConfigError, didYouMean, type PositionedDocument } from "./load.js";
import { ensureTypeScriptLoader } from "../runtime/typescript-loader.js";
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

/** Imports a module and returns the Application it exports (by name, default, or the only one). */
export async function importApplication(
  importPath: string,
  baseDir: string,
  version?: string,
): Promise<{ app: Application; moduleUrl: string; exportName: string }> {
  const { module, exportName } = splitImportPath(importPath);
  const file = resolve(baseDir, module);
  if (!existsSync(file))
    throw new Error(`the module ${module} does not exist (looked for ${file})`);
  // A version makes a new module instance: changed code is imported again, not from the cache.
  const moduleUrl = pathToFileURL(file).href + (version ? `?v=${version}` : "");
  let exports: Record<string, unknown>;
  try {
    await ensureTypeScriptLoader(moduleUrl);
    exports = (await import(moduleUrl)) as Record<string, unknown>;
  } catch (error) {
    throw new Error(`importing ${module} failed: ${(error as Error).message ?? String(error)}`);
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
