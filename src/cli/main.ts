/**
 * The `tributary` command.
 *
 * @example
 * tributary run ./app.ts:app --port 8000
 * tributary build ./app.ts:app -o serve.yaml
 * tributary run serve.yaml
 * tributary init my-app
 */
import { existsSync, readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { dirname, relative, resolve } from "node:path";
import { Command } from "commander";
import type { Application } from "../app/application.js";
import type { Duration } from "../options.js";
import { ConfigError, loadConfig } from "../config/load.js";
import { importApplication, resolveApplication } from "../config/resolve.js";
import { applicationToYaml } from "../config/write.js";
import { run, type RunOptions } from "../runtime/server.js";
import { TributaryError } from "../errors.js";

const isConfigFile = (target: string): boolean => /\.ya?ml$/i.test(target);

interface RunFlags {
  host?: string;
  port?: string;
  grpcPort?: string;
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

/** The longest drain of an application: its largest gracefulShutdownTimeout. */
const drainSeconds = (app: Application): number =>
  Math.max(
    0,
    ...app.graph.deployments.map((d) => app.deployments[d.name]!.gracefulShutdownTimeoutMs),
  ) / 1000;

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

async function runCommand(given: string | undefined, flags: RunFlags): Promise<void> {
  const target = given ?? defaultTarget();
  const fromFlags: RunOptions = {
    ...(flags.host && { host: flags.host }),
    ...(flags.port !== undefined && { port: Number(flags.port) }),
    ...(flags.grpcPort !== undefined && { grpc: { port: Number(flags.grpcPort) } }),
  };
  if (!isConfigFile(target)) {
    const { app } = await importApplication(target, process.cwd());
    await serveForeground(app, fromFlags);
    return;
  }
  const { config, document } = await loadConfig(resolve(target));
  if (config.applications.length > 1) {
    throw new ConfigError([
      document.problem(
        ["applications", 1],
        "serving several applications from one instance is not supported yet; use one file per application.",
      ),
    ]);
  }
  const app = await resolveApplication(config.applications[0]!, 0, document, resolve(target));
  await serveForeground(app, {
    ...(config.http?.host && { host: config.http.host }),
    ...(config.http?.port !== undefined && { port: config.http.port }),
    ...(config.http?.requestTimeout !== undefined && {
      requestTimeout: config.http.requestTimeout as Duration,
    }),
    ...(config.http?.readTimeout !== undefined && {
      readTimeout: config.http.readTimeout as Duration,
    }),
    ...(config.http?.bodyLimit !== undefined && { bodyLimit: config.http.bodyLimit }),
    ...(config.http?.maxConnections !== undefined && {
      maxConnections: config.http.maxConnections,
    }),
    ...(config.grpc && { grpc: { port: config.grpc.port ?? 9000 } }),
    ...fromFlags,
  });
}

/** This package's version, from its package.json (two levels above src/cli and dist/cli). */
function packageVersion(): string {
  const manifest = new URL("../../package.json", import.meta.url);
  return (JSON.parse(readFileSync(manifest, "utf8")) as { version: string }).version;
}

/** `tributary run` with no target serves `serve.yaml` in the working directory, as `serve run` does. */
function defaultTarget(): string {
  if (existsSync(resolve("serve.yaml"))) return "serve.yaml";
  throw new Error(
    "no target given and there is no serve.yaml here: write tributary run ./app.ts:app or tributary run serve.yaml",
  );
}

async function initCommand(dir: string): Promise<void> {
  const { initProject } = await import("./init.js");
  const { dir: target, files } = await initProject(dir);
  const relativeDir = relative(process.cwd(), target) || ".";
  const shown = /^[\w./-]+$/.test(relativeDir)
    ? relativeDir
    : `'${relativeDir.replaceAll("'", "'\\''")}'`;
  console.log(`Wrote ${files.join(", ")} in ${shown}. Next:
  cd ${shown}
  npm install
  npm test      # the graph, run in-process
  npm start     # serves serve.yaml at http://127.0.0.1:8000/sentiment`);
}

async function buildCommand(target: string, flags: { output?: string }): Promise<void> {
  const { app, exportName } = await importApplication(target, process.cwd());
  const output = flags.output ? resolve(flags.output) : undefined;
  const module = target.replace(/:[A-Za-z_$][\w$]*$/, "");
  const fromOutput = relative(output ? dirname(output) : process.cwd(), resolve(module));
  const importPath = `${fromOutput.startsWith(".") ? fromOutput : `./${fromOutput}`}:${exportName}`;
  const yaml = applicationToYaml(app, importPath, { host: "127.0.0.1", port: 8000 });
  if (output) {
    await writeFile(output, yaml);
    console.log(
      `Wrote ${relative(process.cwd(), output)} (${Object.keys(app.deployments).length} deployments).`,
    );
  } else {
    process.stdout.write(yaml);
  }
}

const ADMIN = process.env.TRIBUTARY_ADDRESS ?? "http://127.0.0.1:8265";

interface AdminFlags {
  address: string;
  token?: string;
}

/** Calls the admin API of a running instance; throws with its error message. */
async function admin(
  flags: AdminFlags,
  method: string,
  path: string,
  body?: unknown,
): Promise<unknown> {
  const token = flags.token ?? process.env.TRIBUTARY_ADMIN_TOKEN;
  // The admin API takes JSON bodies only, even where there is nothing to say.
  const payload = method === "GET" ? undefined : JSON.stringify(body ?? {});
  let response: Response;
  try {
    response = await fetch(`${flags.address}${path}`, {
      method,
      headers: {
        ...(payload !== undefined && { "content-type": "application/json" }),
        ...(token && { authorization: `Bearer ${token}` }),
      },
      ...(payload !== undefined && { body: payload }),
    });
  } catch (error) {
    throw new Error(
      `no instance answers at ${flags.address} (${(error as Error).message}); start one with tributary start`,
    );
  }
  const answer = (await response.json()) as { error?: { message: string } };
  if (!response.ok) throw new Error(answer.error?.message ?? `HTTP ${response.status}`);
  return answer;
}

async function startCommand(flags: {
  adminHost: string;
  adminPort: string;
  adminToken?: string;
  stateDir: string;
  allowImports?: string[];
}): Promise<void> {
  const { Instance } = await import("./instance.js");
  const instance = new Instance({
    adminHost: flags.adminHost,
    adminPort: Number(flags.adminPort),
    adminToken: flags.adminToken ?? process.env.TRIBUTARY_ADMIN_TOKEN,
    stateDir: resolve(flags.stateDir),
    imports: { projectDir: process.cwd(), allowedDirs: flags.allowImports ?? [] },
  });
  const address = await instance.listen();
  console.log(
    `Admin API at ${address}. Deploy with: tributary deploy serve.yaml --address ${address}`,
  );
  try {
    const restored = await instance.restore();
    if (restored) console.log(`Restored "${restored.application}" from ${flags.stateDir}.`);
  } catch (error) {
    console.error(`Could not restore the last configuration: ${(error as Error).message}`);
  }
  void firstSignal().then(() => {
    console.log("Draining (Ctrl-C again stops at once, cutting off what still runs)…");
    return instance.close();
  });
  await instance.stopped;
  console.log("Stopped.");
}

async function deployCommand(file: string, flags: AdminFlags & { wait?: boolean }): Promise<void> {
  const { readFile } = await import("node:fs/promises");
  const text = await readFile(resolve(file), "utf8");
  const result = (await admin(flags, "PUT", "/api/deploy", { file: resolve(file), text })) as {
    application: string;
    action: string;
    changes: Record<string, string[]>;
  };
  const changes = Object.entries(result.changes).map(
    ([name, kinds]) => `${name}: ${kinds.join(", ")}`,
  );
  console.log(
    `${result.application}: ${result.action}${changes.length > 0 ? ` (${changes.join("; ")})` : ""}`,
  );
  if (!flags.wait) return;
  for (;;) {
    const status = (await admin(flags, "GET", "/api/status")) as {
      applications: Record<
        string,
        {
          status: string;
          message: string;
          deployments: Record<
            string,
            {
              name: string;
              status: string;
              message: string;
              targetReplicas: number;
              replicas: { state: string }[];
            }
          >;
        }
      >;
    };
    const app = status.applications[result.application];
    const deployments = Object.values(app?.deployments ?? {});
    const lines = deployments.map(
      (d) =>
        `  ${d.name}: ${d.status.padEnd(13)} ${d.replicas.length} replica(s)${d.message ? ` ${d.message}` : ""}`,
    );
    console.log(`${result.application}: ${app?.status ?? "?"}\n${lines.join("\n")}`);
    if (app?.status === "DEPLOY_FAILED") {
      const why = deployments
        .filter((d) => d.status === "DEPLOY_FAILED")
        .map((d) => `${d.name}: ${d.message}`)
        .join("; ");
      throw new Error(`${result.application} is DEPLOY_FAILED: ${why || app.message}`);
    }
    // Done when every deployment runs exactly its target: a scale-down has ended too.
    const settled = deployments.every(
      (d) =>
        d.replicas.length === d.targetReplicas && d.replicas.every((r) => r.state === "RUNNING"),
    );
    if (app?.status === "RUNNING" && settled) return;
    await new Promise((r) => setTimeout(r, 500));
  }
}

export function program(): Command {
  const cli = new Command("tributary")
    .description("Serve machine-learning pipelines written in TypeScript.")
    .version(packageVersion(), "-v, --version");
  cli
    .command("run")
    .description(
      "Serve an application in the foreground; Ctrl-C drains in-flight requests and exits.",
    )
    .argument(
      "[target]",
      "a module and export (./app.ts:app, ./app.mjs:app) or a config file (default: ./serve.yaml)",
    )
    .option("--host <host>", "HTTP host (default 127.0.0.1)")
    .option("--port <port>", "HTTP port (default 8000; 0 picks a free one)")
    .option("--grpc-port <port>", "also serve the Open Inference Protocol over gRPC on this port")
    .addHelpText(
      "after",
      "\nExamples:\n  tributary run ./app.ts:app --port 8000\n  tributary run serve.yaml",
    )
    .action(runCommand);
  cli
    .command("init")
    .description(
      "Write a small working project: two deployments, serve.yaml, a test, package.json.",
    )
    .argument("<dir>", "the project's directory (created; existing files are never overwritten)")
    .addHelpText(
      "after",
      "\nExample:\n  npx tributary init my-app && cd my-app && npm install && npm test",
    )
    .action(initCommand);
  cli
    .command("build")
    .description("Write the YAML config of an application: every deployment, defaults as comments.")
    .argument("<target>", "a module and export, such as ./app.ts:app")
    .option("-o, --output <file>", "write to this file instead of standard output")
    .addHelpText("after", "\nExample:\n  tributary build ./app.ts:app -o serve.yaml")
    .action(buildCommand);
  cli
    .command("start")
    .description(
      "Start a long-running instance with an admin API; it restores its last applied config.",
    )
    .option(
      "--admin-host <host>",
      "admin API host (a non-loopback host needs a token)",
      "127.0.0.1",
    )
    .option("--admin-port <port>", "admin API port", "8265")
    .option("--admin-token <token>", "require this bearer token (or set TRIBUTARY_ADMIN_TOKEN)")
    .option("--state-dir <dir>", "where the last applied config is kept", ".tributary")
    .option(
      "--allow-imports <dir...>",
      "also import modules from these directories (by default only modules under the config file's directory, inside the working directory)",
    )
    .addHelpText("after", "\nExample:\n  tributary start --state-dir /var/lib/tributary")
    .action(startCommand);
  const withAdmin = (command: Command): Command =>
    command
      .option("--address <url>", "the instance's admin API", ADMIN)
      .option("--token <token>", "its bearer token (or set TRIBUTARY_ADMIN_TOKEN)");
  withAdmin(cli.command("deploy"))
    .description(
      "Apply a config to a running instance: only what changed is applied; an invalid file changes nothing.",
    )
    .argument("<file>", "serve.yaml")
    .option("--wait", "wait until every deployment is healthy, showing progress")
    .addHelpText("after", "\nExample:\n  tributary deploy serve.yaml --wait")
    .action(deployCommand);
  withAdmin(cli.command("status"))
    .description("Show applications, deployments and replicas of a running instance.")
    .addHelpText("after", "\nExample:\n  tributary status")
    .action(async (flags: AdminFlags) =>
      console.log(JSON.stringify(await admin(flags, "GET", "/api/status"), null, 2)),
    );
  withAdmin(cli.command("config"))
    .description("Print the config a running instance last applied.")
    .addHelpText("after", "\nExample:\n  tributary config > serve.yaml")
    .action(async (flags: AdminFlags) => {
      process.stdout.write(((await admin(flags, "GET", "/api/config")) as { text: string }).text);
    });
  withAdmin(cli.command("shutdown"))
    .description("Drain and stop a running instance.")
    .addHelpText("after", "\nExample:\n  tributary shutdown")
    .action(async (flags: AdminFlags) => {
      await admin(flags, "POST", "/api/shutdown");
      console.log("Shutting down.");
    });
  return cli;
}

export async function main(argv: readonly string[]): Promise<number> {
  try {
    await program().parseAsync(argv);
    return 0;
  } catch (error) {
    if (error instanceof TributaryError) console.error(error.message);
    else console.error(`tributary: ${(error as Error).message ?? String(error)}`);
    return 1;
  }
}
