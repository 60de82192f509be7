/**
 * `tributary run`: serves a module's application (or a builder's, with `--arg`), or every
 * application of a config file, in the foreground; the first Ctrl-C drains and stops.
 */
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { drainMs, type Application } from "../app/application.js";
import { BuilderArgsError, importApplication } from "../config/resolve.js";
import { OptionsError, TributaryError } from "../errors.js";
import { run, type RunOptions } from "../runtime/server.js";

const isConfigFile = (target: string): boolean => /\.ya?ml$/i.test(target);

export interface RunFlags {
  host?: string;
  port?: string;
  grpcPort?: string;
  arg?: string[];
}

/**
 * Resolves on the first SIGINT or SIGTERM. A second one stops the process at once, after
 * saying so on standard error (process replicas are killed on the way out).
 */
export function firstSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let received = 0;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (++received === 1) {
        resolve(signal);
        return;
      }
      process.stderr.write(
        `Received ${signal} again: stopping now, without waiting for the requests still running.\n`,
      );
      process.exit(signal === "SIGINT" ? 130 : 143);
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });
}

/** The longest drain of an application, in seconds. */
const drainSeconds = (app: Application): number => drainMs(app) / 1000;

async function serveForeground(app: Application, options: RunOptions): Promise<void> {
  const server = await run(app, options);
  console.log(
    `Serving "${app.name}" at ${server.url}${app.routePrefix}${server.grpcPort ? ` (gRPC on port ${server.grpcPort})` : ""}. Ctrl-C drains and stops.`,
  );
  await firstSignal();
  console.log(
    `Draining (up to ${drainSeconds(server.app)} s; Ctrl-C again stops at once, cutting off what still runs)…`,
  );
  await server.close();
  console.log("Stopped.");
}

/**
 * `--arg key=value` (repeatable) → a builder's arguments. The value is read as a YAML
 * scalar, as it would be under `args:` (`2` a number, `true` a boolean, `"2"` a string).
 */
export function parseBuilderArgs(pairs: readonly string[]): Record<string, unknown> {
  const args: Record<string, unknown> = {};
  for (const pair of pairs) {
    const at = pair.indexOf("=");
    if (at <= 0) throw new Error(`--arg ${pair}: expected key=value, such as --arg replicas=2`);
    const key = pair.slice(0, at);
    if (Object.hasOwn(args, key)) throw new Error(`--arg ${key} is given twice.`);
    const text = pair.slice(at + 1);
    let value: unknown = text;
    try {
      value = parseYaml(text) ?? text;
    } catch {
      // Not a YAML scalar (an unbalanced quote): the text as it is.
    }
    if (typeof value === "object" && value !== null) value = text; // only scalars
    args[key] = value;
  }
  return args;
}

/** A builder's arguments failed its schema: the error names each `--arg`. */
export function argsProblem(error: unknown): never {
  if (error instanceof BuilderArgsError) {
    throw new TributaryError(
      "VALIDATION_FAILED",
      `Invalid builder arguments:\n${error.issues.map((i) => `  --arg ${i.path || "(args)"}: ${i.message}`).join("\n")}`,
    );
  }
  throw error;
}

/** A port given on the command line, from `min` to 65535; else an error naming the flag. */
function portFlag(flag: string, text: string, min: number): number {
  const port = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!(port >= min && port <= 65_535))
    throw new OptionsError(`${flag} expects a port from ${min} to 65535 (it is "${text}").`);
  return port;
}

export async function runCommand(given: string | undefined, flags: RunFlags): Promise<void> {
  const target = given ?? defaultTarget();
  const fromFlags: RunOptions = {
    ...(flags.host && { host: flags.host }),
    ...(flags.port !== undefined && { port: portFlag("--port", flags.port, 0) }),
    ...(flags.grpcPort !== undefined && {
      grpc: { port: portFlag("--grpc-port", flags.grpcPort, 0) },
    }),
  };
  if (!isConfigFile(target)) {
    const args = flags.arg && flags.arg.length > 0 ? parseBuilderArgs(flags.arg) : undefined;
    const { app } = await importApplication(target, process.cwd(), { args }).catch(argsProblem);
    await serveForeground(app, fromFlags);
    return;
  }
  if (flags.arg && flags.arg.length > 0)
    throw new Error("--arg goes with a builder (./app.ts:builder); in serve.yaml, write args:");
  await serveConfigForeground(resolve(target), fromFlags);
}

/** Serves every application of a config file, as an instance without an admin API would. */
async function serveConfigForeground(file: string, overrides: RunOptions): Promise<void> {
  const { Instance } = await import("./instance.js");
  const { readFile } = await import("node:fs/promises");
  const instance = new Instance({
    adminHost: "127.0.0.1",
    adminPort: 0,
    adminToken: undefined,
    stateDir: undefined,
    // The operator names this file on the command line: its modules may be anywhere.
    imports: { projectDir: process.cwd(), allowedDirs: [dirname(file), "/"] },
    overrides,
  });
  try {
    await instance.deploy(await readFile(file, "utf8"), file);
  } catch (error) {
    await instance.close();
    throw error;
  }
  const status = (await instance.status()) as {
    url: string | null;
    applications: Record<string, { routePrefix: string }>;
  };
  const served = Object.entries(status.applications).map(
    ([name, app]) => `"${name}" at ${status.url ?? ""}${app.routePrefix}`,
  );
  console.log(`Serving ${served.join(", ")}. Ctrl-C drains and stops.`);
  await firstSignal();
  console.log("Draining (Ctrl-C again stops at once, cutting off what still runs)…");
  await instance.close();
  console.log("Stopped.");
}

/** `tributary run` with no target serves `serve.yaml` in the working directory, as `serve run` does. */
function defaultTarget(): string {
  if (existsSync(resolve("serve.yaml"))) return "serve.yaml";
  throw new Error(
    "no target given and there is no serve.yaml here: write tributary run ./app.ts:app or tributary run serve.yaml",
  );
}
