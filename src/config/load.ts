/**
 * Loads `serve.yaml` with positions: every problem names the file, line and column, the
 * field's path, what was found and what is allowed; an unknown field gets a did-you-mean.
 * A file with any problem is rejected whole.
 */
import { readFile } from "node:fs/promises";
import { relative } from "node:path";
import { isMap, LineCounter, parseDocument, type Document, type Node } from "yaml";
import type { z } from "zod";
import { TributaryError } from "../errors.js";
import { serveConfigSchema, type ServeConfig } from "./schema.js";

export interface ConfigProblem {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  /** `applications[0].deployments[1].numReplicas` */
  readonly path: string;
  readonly message: string;
}

/** A configuration file was rejected; `problems` lists every reason with its position. */
export class ConfigError extends TributaryError {
  readonly problems: readonly ConfigProblem[];

  constructor(problems: readonly ConfigProblem[]) {
    const lines = problems.map(
      (p) => `  ${p.file}:${p.line}:${p.column}: ${p.path ? `${p.path}: ` : ""}${p.message}`,
    );
    super(
      "INVALID_CONFIG",
      `The configuration was rejected; nothing was changed:\n${lines.join("\n")}`,
    );
    this.problems = problems;
  }
}

export function formatPath(path: readonly PropertyKey[]): string {
  return path
    .map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`))
    .join("");
}

/** Levenshtein distance, for did-you-mean. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const saved = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = saved;
    }
  }
  return row[b.length]!;
}

/**
 * Fields of Ray Serve's config file whose names here are not a near spelling of theirs (a
 * Ray user's `serve.yaml` mostly differs by case: `num_replicas` is `numReplicas`).
 */
const RAY_SERVE_NAMES: Readonly<Record<string, string>> = {
  http_options: "http",
  grpc_options: "grpc",
  autoscaling_config: "autoscaling",
  ray_actor_options: "resources",
};

/** A field's did-you-mean: the field that does what Ray Serve's does, or a near spelling. */
function didYouMeanField(key: string, allowed: readonly string[]): string {
  const ours = Object.hasOwn(RAY_SERVE_NAMES, key) ? RAY_SERVE_NAMES[key] : undefined;
  return ours !== undefined && allowed.includes(ours)
    ? ` Did you mean "${ours}" (Ray Serve's ${key})?`
    : didYouMean(key, allowed);
}

export function didYouMean(key: string, allowed: readonly string[]): string {
  const best = allowed
    .map((candidate) => ({ candidate, d: distance(key.toLowerCase(), candidate.toLowerCase()) }))
    .sort((a, b) => a.d - b.d)[0];
  return best && best.d <= Math.max(2, Math.floor(key.length / 3))
    ? ` Did you mean "${best.candidate}"?`
    : "";
}

/** Keys a strict object schema allows at `path` (for did-you-mean). */
function allowedKeys(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  let s: z.ZodType | undefined = schema;
  for (const part of path) {
    for (;;) {
      const def = s?._zod.def as { innerType?: z.ZodType; type?: string } | undefined;
      if (def?.innerType) s = def.innerType;
      else break;
    }
    const def = s?._zod.def as
      { type?: string; shape?: Record<string, z.ZodType>; element?: z.ZodType } | undefined;
    s = typeof part === "number" ? def?.element : def?.shape?.[part as string];
  }
  for (;;) {
    const def = s?._zod.def as { innerType?: z.ZodType } | undefined;
    if (def?.innerType) s = def.innerType;
    else break;
  }
  const shape = (s?._zod.def as { shape?: Record<string, unknown> } | undefined)?.shape;
  return shape ? Object.keys(shape) : [];
}

/** A parsed YAML document with a way to point at any of its nodes. */
export class PositionedDocument {
  readonly file: string;
  readonly #doc: Document;
  readonly #lines: LineCounter;

  constructor(file: string, doc: Document, lines: LineCounter) {
    this.file = file;
    this.#doc = doc;
    this.#lines = lines;
  }

  /** Where the value at `path` is (or, with `key`, where that key of the map at `path` is). */
  position(path: readonly PropertyKey[], key?: string): { line: number; column: number } {
    let node: unknown = this.#doc.getIn(path as unknown[], true);
    for (let p = [...path]; !node && p.length > 0; p = p.slice(0, -1))
      node = this.#doc.getIn(p.slice(0, -1) as unknown[], true);
    if (key !== undefined && isMap(node)) {
      const pair = node.items.find(
        (item) => (item.key as { value?: unknown } | null)?.value === key,
      );
      if (pair) node = pair.key;
    }
    const offset = (node as Node | undefined)?.range?.[0] ?? 0;
    const { line, col } = this.#lines.linePos(offset);
    return { line, column: col };
  }

  problem(path: readonly PropertyKey[], message: string, key?: string): ConfigProblem {
    const { line, column } = this.position(path, key);
    return {
      file: this.file,
      line,
      column,
      path: formatPath(key ? [...path, key] : path),
      message,
    };
  }
}

function describeFound(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a map";
  return `${typeof value} ${JSON.stringify(value)}`;
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let value = root;
  for (const part of path) value = (value as Record<PropertyKey, unknown> | undefined)?.[part];
  return value;
}

/** Parses and validates configuration text. Throws ConfigError listing every problem. */
/** Aliases a serve.yaml may use (each expands a node: a billion laughs is refused). */
const MAX_ALIASES = 1_000;

export function parseConfig(
  text: string,
  file: string,
): { config: ServeConfig; document: PositionedDocument } {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const document = new PositionedDocument(file, doc, lines);
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => {
        const { line, col } = lines.linePos(e.pos[0]);
        return {
          file,
          line,
          column: col,
          path: "",
          message: `YAML syntax error: ${e.message.split("\n")[0]}`,
        };
      }),
    );
  }
  let raw: unknown;
  try {
    // The yaml library refuses a count that reaches its maximum: 1,000 aliases pass.
    raw = doc.toJS({ maxAliasCount: MAX_ALIASES + 1 });
  } catch (error) {
    throw new ConfigError([
      {
        file,
        line: 1,
        column: 1,
        path: "",
        message: /alias count/i.test((error as Error).message)
          ? `YAML could not be read: it uses more than ${MAX_ALIASES.toLocaleString("en")} aliases (the limit of serve.yaml)`
          : `YAML could not be read: ${(error as Error).message}`,
      },
    ]);
  }
  const result = serveConfigSchema.safeParse(raw);
  if (result.success) return { config: result.data, document };
  const problems = result.error.issues.flatMap((issue): ConfigProblem[] => {
    if (issue.code === "unrecognized_keys") {
      const allowed = allowedKeys(serveConfigSchema, issue.path);
      return issue.keys.map((key) =>
        document.problem(
          issue.path,
          `unknown field "${key}".${didYouMeanField(key, allowed)} Allowed: ${allowed.join(", ")}.`,
          key,
        ),
      );
    }
    const found = describeFound(valueAt(raw, issue.path));
    return [
      document.problem(
        issue.path,
        `found ${found}; ${issue.message.replace(/^Invalid (input|option): /, "")}`,
      ),
    ];
  });
  throw new ConfigError(problems);
}

/** Reads and validates a configuration file. */
export async function loadConfig(
  path: string,
): Promise<{ config: ServeConfig; document: PositionedDocument }> {
  const shown = relative(process.cwd(), path) || path;
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new ConfigError([
      {
        file: shown,
        line: 1,
        column: 1,
        path: "",
        message: `cannot read the file: ${(error as Error).message}`,
      },
    ]);
  }
  return parseConfig(text, shown);
}
