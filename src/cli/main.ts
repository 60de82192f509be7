/**
 * The `tributary` command.
 *
 * @example
 * tributary run ./app.ts:app --port 8000
 * tributary build ./app.ts:app -o serve.yaml
 * tributary run serve.yaml
 */
import { writeFile } from "node:fs/promises";
import { dirname, relative, resolve } from "node:path";
import { Command } from "commander";
import type { Application } from "../app/application.js";
import type { Duration } from "../app/options.js";
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

async function serveForeground(app: Application, options: RunOptions): Promise<void> {
  const server = await run(app, options);
  console.log(
    `Serving "${app.name}" at ${server.url}${app.routePrefix}${server.grpcPort ? ` (gRPC on port ${server.grpcPort})` : ""}. Ctrl-C drains and stops.`,
  );
  await new Promise<void>((done) => {
    for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => done());
  });
  console.log("Draining…");
  await server.close();
  console.log("Stopped.");
}

async function runCommand(target: string, flags: RunFlags): Promise<void> {
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
    ...(config.grpc && { grpc: { port: config.grpc.port ?? 9000 } }),
    ...fromFlags,
  });
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

export function program(): Command {
  const cli = new Command("tributary").description(
    "Serve machine-learning pipelines written in TypeScript.",
  );
  cli
    .command("run")
    .description(
      "Serve an application in the foreground; Ctrl-C drains in-flight requests and exits.",
    )
    .argument("<target>", "a module and export (./app.ts:app) or a config file (serve.yaml)")
    .option("--host <host>", "HTTP host (default 127.0.0.1)")
    .option("--port <port>", "HTTP port (default 8000; 0 picks a free one)")
    .option("--grpc-port <port>", "also serve the Open Inference Protocol over gRPC on this port")
    .addHelpText(
      "after",
      "\nExamples:\n  tributary run ./app.ts:app --port 8000\n  tributary run serve.yaml",
    )
    .action(runCommand);
  cli
    .command("build")
    .description("Write the YAML config of an application: every deployment, defaults as comments.")
    .argument("<target>", "a module and export, such as ./app.ts:app")
    .option("-o, --output <file>", "write to this file instead of standard output")
    .addHelpText("after", "\nExample:\n  tributary build ./app.ts:app -o serve.yaml")
    .action(buildCommand);
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
