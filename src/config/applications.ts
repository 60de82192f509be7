/**
 * Checks across the applications of one `serve.yaml`: names and route prefixes are unique
 * (a route prefix is where the front door sends a request, so two applications cannot
 * share one). Problems point at the second occurrence.
 */
import { ConfigError, type ConfigProblem, type PositionedDocument } from "./load.js";
import type { ServeConfig } from "./schema.js";

export function checkApplications(config: ServeConfig, document: PositionedDocument): void {
  const problems: ConfigProblem[] = [];
  const names = new Map<string, number>();
  for (const [index, entry] of config.applications.entries()) {
    const first = names.get(entry.name);
    if (first !== undefined) {
      problems.push(
        document.problem(
          ["applications", index, "name"],
          `found "${entry.name}" again (applications[${first}] has it); each application needs a name of its own.`,
        ),
      );
    } else names.set(entry.name, index);
  }
  if (problems.length > 0) throw new ConfigError(problems);
}

/** Normalises a route prefix for comparison: no trailing slash except the root's. */
export const normalPrefix = (prefix: string): string => prefix.replace(/(.)\/+$/, "$1");

/**
 * Checks that the applications' route prefixes (as they will be served: from the file or
 * the code) are unique; `indexOf` finds an application's entry in the file.
 */
export function checkRoutePrefixes(
  apps: readonly { readonly name: string; readonly routePrefix: string }[],
  document: PositionedDocument,
  indexOf: (name: string) => number,
): void {
  const problems: ConfigProblem[] = [];
  const seen = new Map<string, string>();
  for (const app of apps) {
    const prefix = normalPrefix(app.routePrefix);
    const other = seen.get(prefix);
    if (other !== undefined) {
      problems.push(
        document.problem(
          ["applications", indexOf(app.name), "routePrefix"],
          `application "${app.name}" would be served at ${app.routePrefix}, where "${other}" is served; give each application a routePrefix of its own.`,
        ),
      );
    } else seen.set(prefix, app.name);
  }
  if (problems.length > 0) throw new ConfigError(problems);
}
