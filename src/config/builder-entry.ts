/**
 * @internal The module a replica imports for an application that a builder made or a
 * config renamed (see served.ts). Its query names the user's module,
 * the export, the builder's arguments and the served name; importing it imports the
 * module, calls the builder with the same arguments (checked by the same schema), and
 * registers the result under this module's URL, where the replica looks it up.
 */
import { ensureTypeScriptLoader } from "../app/typescript-loader.js";
import { Application } from "../app/application.js";
import { callBuilder, isBuilder, type BuilderArgs } from "../app/builder.js";
import { servedApplication } from "./served.js";
import { registerApplication } from "../app/registry.js";

const query = new URL(import.meta.url).searchParams;
const module = query.get("module") ?? "";
const exportName = query.get("export") ?? "";
const name = query.get("name") ?? "";
const rawArgs = query.get("args");
const args = rawArgs === null ? undefined : (JSON.parse(rawArgs) as BuilderArgs);

await ensureTypeScriptLoader(module);
const exported = ((await import(module)) as Record<string, unknown>)[exportName];
const built =
  exported instanceof Application
    ? exported
    : isBuilder(exported)
      ? await callBuilder(exported, args ?? {}, `${exportName}()`)
      : undefined;
if (!built) throw new Error(`${module} has no application or builder "${exportName}".`);
const served = servedApplication(built, { module, exportName, args }, name);
if (served.moduleUrl !== import.meta.url) {
  throw new Error(
    `the rebuilt application's address ${served.moduleUrl} differs from ${import.meta.url}.`,
  );
}
registerApplication(served);
