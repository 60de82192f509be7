/**
 * @internal TypeScript for user modules, only where one needs it. A JavaScript module
 * (`.js`, `.mjs`, `.cjs`) is imported as it is and no loader is registered in that thread
 * or process. A TypeScript module (`.ts`, `.mts`, `.cts`, `.tsx`) gets tsx, registered
 * once per thread before the import.
 *
 * Which tsx: the user's project's, resolved from the module's own directory, so that its
 * version is the one the user's own scripts run with (it reads the `tsconfig.json` of the
 * working directory, as the `tsx` command does). Only when the project has none is this
 * package's own resolution tried (a monorepo's hoisted copy). tsx is an optional peer
 * dependency: a JavaScript application installs and loads none of it.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";
import { isMainThread } from "node:worker_threads";
import { TributaryError } from "../errors.js";

const TYPESCRIPT = /\.[cm]?tsx?$/;
/** Set by whoever registers tsx in this thread (this module, or the source checkout's replica entry). */
const REGISTERED = Symbol.for("tributary.tsx-registered");

interface TsxApi {
  register(): unknown;
}

/** Whether a module URL (or path) names a TypeScript file; a `?v=` query is ignored. */
export function isTypeScript(moduleUrl: string): boolean {
  const path = moduleUrl.startsWith("file:") ? new URL(moduleUrl).pathname : moduleUrl;
  return TYPESCRIPT.test(path.split("?")[0]!);
}

/**
 * Whether a TypeScript loader already runs here: registered by us, or, on a process's main
 * thread, `tsx` / `--import tsx`. A worker thread inherits those flags but not the loader
 * (Node 20 does not run `--import` in workers), so there only our own mark counts.
 */
function loaderActive(): boolean {
  if ((globalThis as Record<symbol, unknown>)[REGISTERED] === true) return true;
  if (!isMainThread) return false;
  const flags = [...process.execArgv, process.env.NODE_OPTIONS ?? ""].join(" ");
  // `--import tsx` (or tsx/esm), and what the `tsx` command passes: …/tsx/dist/loader.mjs.
  return /--(?:import|loader)[=\s]+tsx(?:\/esm)?(?:\s|$)|tsx[/\\]dist[/\\](?:loader|preflight)/.test(
    flags,
  );
}

/**
 * tsx's ES module API (its CommonJS build cannot register ESM hooks from elsewhere), found
 * from the package's own `exports` as resolved from `parent`.
 */
function tsxApiUrl(parent: string): string | undefined {
  try {
    const manifestPath = createRequire(parent).resolve("tsx/package.json");
    const manifest = JSON.parse(readFileSync(manifestPath, "utf8")) as {
      exports?: Record<string, string | { import?: string | { default?: string } }>;
    };
    const exported = manifest.exports?.["./esm/api"];
    const entry = typeof exported === "string" ? exported : exported?.import;
    const file = typeof entry === "string" ? entry : entry?.default;
    return file ? new URL(file, pathToFileURL(manifestPath)).href : undefined;
  } catch {
    return undefined; // not installed where this parent looks
  }
}

async function loadTsx(moduleUrl: string): Promise<TsxApi> {
  for (const parent of [moduleUrl.split("?")[0]!, import.meta.url]) {
    const url = tsxApiUrl(parent);
    if (url) return (await import(url)) as TsxApi;
  }
  const plain = moduleUrl.split("?")[0]!;
  const shown = plain.startsWith("file:") ? fileURLToPath(plain) : plain;
  throw new TributaryError(
    "MISSING_PACKAGE",
    `${shown} is TypeScript, and no TypeScript loader was found for it: install tsx in your ` +
      `project (npm install --save-dev tsx), or compile the module to JavaScript and serve the .js file.`,
  );
}

/** Registers tsx in this thread if `moduleUrl` is TypeScript and no loader runs yet. */
export async function ensureTypeScriptLoader(moduleUrl: string): Promise<void> {
  if (!isTypeScript(moduleUrl) || loaderActive()) return;
  (await loadTsx(moduleUrl)).register();
  (globalThis as Record<symbol, unknown>)[REGISTERED] = true;
}
