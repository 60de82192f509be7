/**
 * Where user code created a node or a deployment, read from the stack: build errors name
 * nodes by it, and the runtime finds the user's module by it.
 */
import { fileURLToPath } from "node:url";
import { relative, sep } from "node:path";

/**
 * The directories of this package's code: frames inside them are the library's, not the
 * user's. This module runs from `dist/` (built) or `src/` (a source checkout); with source
 * maps on (tsx, `--enable-source-maps`), frames of `dist/` are reported at their `src/`
 * paths, so both count.
 */
const LIBRARY_DIRS = [
  fileURLToPath(new URL("..", import.meta.url)),
  fileURLToPath(new URL("../../src/", import.meta.url)),
  fileURLToPath(new URL("../../dist/", import.meta.url)),
];

export interface CallSite {
  /** The module's file URL (`file:///…/app.ts`), or what the stack gave for non-file modules. */
  readonly url: string;
  readonly line: number;
  readonly column: number;
  /**
   * Whether the call ran in the module's top-level code rather than inside a function:
   * the frame has no function name and the one below it (if any) is Node's module loader.
   */
  readonly topLevel: boolean;
  /** The function the call ran in, when it was not top-level code. */
  readonly functionName: string | undefined;
}

/** `at fn (/path/x.ts:1:2)` or `at /path/x.ts:1:2`; `node:internal/…` frames do not match. */
const FRAME = /(?:\(|at )((?:file:\/\/|\/|[A-Za-z]:\\)[^()]*?):(\d+):(\d+)\)?$/;

/** The library's own modules; its unit tests (beside the code) count as user code. */
function isLibraryFile(path: string): boolean {
  return (
    LIBRARY_DIRS.some((dir) => path.startsWith(dir)) && !/\.test(?:-d)?\.[cm]?[jt]s$/.test(path)
  );
}

/** The first stack frame outside this library, or `undefined` when there is none. */
export function userCallSite(): CallSite | undefined {
  const saved = Error.stackTraceLimit;
  Error.stackTraceLimit = 50;
  const stack = new Error().stack ?? "";
  Error.stackTraceLimit = saved;
  const lines = stack
    .split("\n")
    .slice(1)
    .map((l) => l.trim());
  for (const [i, line] of lines.entries()) {
    const match = FRAME.exec(line);
    if (!match) continue;
    const [, location = "", row = "0", column = "0"] = match;
    const path = location.startsWith("file://") ? fileURLToPath(location) : location;
    if (isLibraryFile(path) || path.includes(`${sep}node_modules${sep}`)) {
      continue;
    }
    const url = location.startsWith("file://") ? location : `file://${path}`;
    const fn = /^at (?:async )?(.+?) \(/.exec(line)?.[1];
    const next = lines[i + 1];
    // A CommonJS module's code runs in a wrapper function, called as `Object.<anonymous>`.
    const anonymous = fn === undefined || fn === "<anonymous>" || fn === "Object.<anonymous>";
    const topLevel =
      anonymous &&
      (next === undefined || !FRAME.test(next) || /ModuleJob|Module\._compile/.test(next));
    return {
      url,
      line: Number(row),
      column: Number(column),
      topLevel,
      functionName: topLevel ? undefined : (fn ?? "<anonymous>"),
    };
  }
  return undefined;
}

/** `examples/diamond/app.ts:12:15`, relative to the working directory when inside it. */
export function formatCallSite(site: CallSite | undefined): string {
  if (!site) return "an unknown location";
  const path = site.url.startsWith("file://") ? fileURLToPath(site.url) : site.url;
  const shown = path.startsWith(process.cwd() + sep) ? relative(process.cwd(), path) : path;
  return `${shown}:${site.line}:${site.column}`;
}
