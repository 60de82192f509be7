/**
 * @internal An application served under a name, or built from arguments, that replicas
 * cannot find by the module that called build(): they import builder-entry.ts instead,
 * which rebuilds it from its origin.
 */
import { Application, type ApplicationOrigin } from "../app/application.js";

/**
 * The module replicas import to rebuild an application that a builder made or a config
 * renamed: this file's sibling `builder-entry`, with what to rebuild in its query (the
 * query also makes each origin a module instance of its own).
 */
function entryUrl(origin: ApplicationOrigin, name: string): string {
  const url = new URL(import.meta.url.replace(/\/served\.([cm]?[jt]s)$/, "/builder-entry.$1"));
  url.searchParams.set("module", origin.module);
  url.searchParams.set("export", origin.exportName);
  url.searchParams.set("name", name);
  if (origin.args !== undefined) url.searchParams.set("args", JSON.stringify(origin.args));
  return url.href;
}

/**
 * The application as served under `name`: replicas find it through the entry module, which
 * rebuilds it from `origin`. (Its `site` is dropped: a builder calls build() inside a
 * function by design, and replicas do not look it up by the module that called build().)
 */
export function servedApplication(
  app: Application,
  origin: ApplicationOrigin,
  name: string,
): Application {
  return new Application({
    ...app,
    name,
    moduleUrl: entryUrl(origin, name),
    site: undefined,
    origin,
  });
}
