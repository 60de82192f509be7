/**
 * The `tributary` command.
 *
 * @example
 * tributary run ./app.ts:app --port 8000
 * tributary build ./app.ts:app -o serve.yaml
 * tributary run serve.yaml
 * tributary init my-app
 */
import { readFileSync } from "node:fs";
import { type IncomingMessage, request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { Command, Option } from "commander";
import { importApplication } from "../config/resolve.js";
import { applicationsToYaml } from "../config/write.js";
import type { DeployResult, Instance as InstanceClass } from "./instance.js";
import type { ClusterHead } from "../control/cluster.js";
import type { ReplicaNats } from "../wire/protocol.js";
import { TributaryError } from "../errors.js";
import { argsProblem, firstSignal, parseBuilderArgs, runCommand } from "./run.js";
import type { StatusAnswer as StatusText } from "./status-text.js";

/** This package's version, from its package.json (two levels above src/cli and dist/cli). */
function packageVersion(): string {
  const manifest = new URL("../../package.json", import.meta.url);
  return (JSON.parse(readFileSync(manifest, "utf8")) as { version: string }).version;
}

async function initCommand(dir: string): Promise<void> {
  const { initProject } = await import("./init.js");
  const { dir: target, files, source } = await initProject(dir);
  const relativeDir = relative(process.cwd(), target) || ".";
  const shown = /^[\w./-]+$/.test(relativeDir)
    ? relativeDir
    : `'${relativeDir.replaceAll("'", "'\\''")}'`;
  // Until Tributary is on the registry, it is installed from the tarball npm pack wrote.
  const install = source
    ? `npm install   # Tributary from ${source.slice("file:".length)}`
    : `npm install /path/to/tributary-${packageVersion()}.tgz   # npm pack in Tributary's checkout writes it`;
  console.log(`Wrote ${files.join(", ")} in ${shown}. Next:
  cd ${shown}
  ${install}
  npm test      # the graph, run in-process
  npm start     # serves serve.yaml at http://127.0.0.1:8000/sentiment`);
}

interface BuildFlags {
  output?: string;
  arg?: string[];
  target: "yaml" | "kubernetes";
  image?: string;
  natsUrl?: string;
  grpcPort?: string;
}

async function buildCommand(targets: string[], flags: BuildFlags): Promise<void> {
  const kubernetes = flags.target === "kubernetes";
  if (!kubernetes && (flags.image !== undefined || flags.natsUrl !== undefined))
    throw new Error("--image and --nats-url go with --target kubernetes.");
  if (kubernetes && !flags.output)
    throw new Error(
      "--target kubernetes writes a directory of manifests: name it with -o, such as -o k8s/.",
    );
  if (flags.natsUrl !== undefined && !/^(nats|tls):\/\/[^\s/]+$/.test(flags.natsUrl))
    throw new Error(`--nats-url expects nats://HOST:PORT (it is "${flags.natsUrl}").`);
  const grpcPort = flags.grpcPort === undefined ? undefined : Number(flags.grpcPort);
  if (grpcPort !== undefined && !(Number.isInteger(grpcPort) && grpcPort > 0 && grpcPort < 65_536))
    throw new Error(`--grpc-port expects a port from 1 to 65535 (it is "${flags.grpcPort}").`);
  const args = flags.arg && flags.arg.length > 0 ? parseBuilderArgs(flags.arg) : undefined;
  const output = flags.output ? resolve(flags.output) : undefined;
  // Import paths are relative to the config file; on Kubernetes it sits at the project's
  // root in the image, so they are relative to the working directory.
  const base = kubernetes || !output ? process.cwd() : dirname(output);
  const entries = [];
  const builders: string[] = [];
  for (const target of targets) {
    const { app, exportName, built } = await importApplication(target, process.cwd(), {
      args,
      argsForBuilder: targets.length > 1,
    }).catch(argsProblem);
    if (built) builders.push(target);
    const module = target.replace(/:[A-Za-z_$][\w$]*$/, "");
    const fromBase = relative(base, resolve(module));
    if (kubernetes && fromBase.startsWith(".."))
      throw new Error(
        `${module} is outside the working directory; the image holds the project at /app, so run tributary build from the project's root.`,
      );
    const importPath = `${fromBase.startsWith(".") ? fromBase : `./${fromBase}`}:${exportName}`;
    entries.push({ app, importPath });
  }
  if (args && targets.length > 1 && builders.length !== 1)
    throw new Error(
      builders.length === 0
        ? "--arg goes with a builder, and none of these targets is one."
        : `--arg goes with one builder, and ${builders.join(", ")} are builders: for several, write args: in the YAML.`,
    );
  const grpc = grpcPort === undefined ? undefined : { port: grpcPort };
  if (kubernetes && output) {
    // The front door listens on every interface of the head's pod, for its Service.
    const serveYaml = applicationsToYaml(entries, { host: "0.0.0.0", port: 8000 }, grpc);
    const { kubernetesManifests } = await import("../config/kubernetes.js");
    const { files, pools } = kubernetesManifests(
      entries.map((e) => e.app),
      {
        image: flags.image ?? "tributary-app:latest",
        natsUrl: flags.natsUrl ?? "nats://nats:4222",
        serveYaml,
        httpPort: 8000,
        ...(grpcPort !== undefined && { grpcPort }),
      },
    );
    await writeManifests(output, files);
    const shown = relative(process.cwd(), output) || ".";
    console.log(
      `Wrote ${files.length} files in ${shown}: the head and ${pools.length} node pool(s) (${pools.map((p) => `${p.name}: ${p.nodes}`).join(", ")}). Read ${join(shown, "README.md")} before kubectl apply -f ${shown}.`,
    );
    return;
  }
  const yaml = applicationsToYaml(entries, { host: "127.0.0.1", port: 8000 }, grpc);
  if (output) {
    await writeFile(output, yaml);
    // The graph's deployments: each application's generated ingress is listed beside them.
    const count = entries.reduce((n, { app }) => n + app.graph.deployments.length, 0);
    console.log(
      `Wrote ${relative(process.cwd(), output)} (${entries.length === 1 ? "" : `${entries.length} applications, `}${count} deployment${count === 1 ? "" : "s"} and ${entries.length === 1 ? "the ingress" : "their ingresses"}).`,
    );
  } else {
    process.stdout.write(yaml);
  }
}

/**
 * Writes the manifests into `dir` (created if missing). Manifests of an earlier build that
 * this one no longer writes (a pool that went away) are removed, so that
 * `kubectl apply -f dir` does not bring them back; other files are left alone.
 */
async function writeManifests(
  dir: string,
  files: readonly { file: string; text: string }[],
): Promise<void> {
  const { MANIFEST_MARKER } = await import("../config/kubernetes.js");
  await mkdir(dir, { recursive: true });
  const names = new Set(files.map((f) => f.file));
  for (const name of await readdir(dir)) {
    if (names.has(name) || !name.endsWith(".yaml")) continue;
    const text = await readFile(join(dir, name), "utf8").catch(() => "");
    if (text.startsWith(MANIFEST_MARKER)) await rm(join(dir, name));
  }
  for (const { file, text } of files) await writeFile(join(dir, file), text);
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
  // The admin API takes JSON bodies only, even where there is nothing to say.
  const payload = method === "GET" ? undefined : JSON.stringify(body ?? {});
  const response = await adminRequest(flags, method, path, payload);
  const text = await textOf(response);
  let answer: { error?: { message: string } };
  try {
    answer = JSON.parse(text) as typeof answer;
  } catch {
    throw new Error(
      `The instance at ${flags.address} answered HTTP ${response.statusCode} with no JSON.`,
    );
  }
  if ((response.statusCode ?? 500) >= 400)
    throw new Error(answer.error?.message ?? `HTTP ${response.statusCode}`);
  return answer;
}

/** The whole of an admin answer (decoded as UTF-8 by {@link adminRequest}). */
async function textOf(response: IncomingMessage): Promise<string> {
  let text = "";
  for await (const chunk of response) text += chunk as string;
  return text;
}

/**
 * One request to an instance's admin API, with no time limit: a deploy waits for replicas
 * to start and old ones to drain (minutes, by their timeouts), and `logs --follow` for
 * lines (fetch gave up on both after 300 s, and said no instance answered).
 */
function adminRequest(
  flags: AdminFlags,
  method: string,
  path: string,
  payload?: string,
): Promise<IncomingMessage> {
  const token = flags.token ?? process.env.TRIBUTARY_ADMIN_TOKEN;
  let url: URL | undefined;
  try {
    url = new URL(`${flags.address}${path}`);
  } catch {
    // not a URL: said below
  }
  if (url?.protocol !== "http:" && url?.protocol !== "https:") {
    return Promise.reject(
      new Error(`--address ${flags.address} is not the URL of an admin API (http://host:port).`),
    );
  }
  const send = url.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const request = send(
      url,
      {
        method,
        headers: {
          ...(payload !== undefined && { "content-type": "application/json" }),
          ...(token && { authorization: `Bearer ${token}` }),
        },
      },
      (response) => {
        // Whole characters: a chunk may end in the middle of one.
        response.setEncoding("utf8");
        resolve(response);
      },
    );
    request.once("error", (error: NodeJS.ErrnoException) => {
      const refused = ["ECONNREFUSED", "ENOTFOUND", "EHOSTUNREACH", "EAI_AGAIN"];
      reject(
        new Error(
          refused.includes(error.code ?? "")
            ? `no instance answers at ${flags.address} (${error.message}); start one with tributary start`
            : `the instance at ${flags.address} did not answer (${error.message}); tributary status shows what it runs`,
        ),
      );
    });
    request.end(payload);
  });
}

/** `tributary logs`: recent lines of a running instance (and, with --follow, new ones as they come). */
async function logsCommand(
  deployment: string | undefined,
  flags: AdminFlags & { app?: string; follow?: boolean; lines?: string },
): Promise<void> {
  if (flags.lines !== undefined && !/^\d+$/.test(flags.lines))
    throw new Error(`--lines (-n) must be a whole number (it is "${flags.lines}").`);
  const query = new URLSearchParams({
    ...(deployment !== undefined && { deployment }),
    ...(flags.app !== undefined && { application: flags.app }),
    ...(flags.lines !== undefined && { lines: flags.lines }),
    ...(flags.follow && { follow: "true" }),
  });
  const response = await adminRequest(flags, "GET", `/api/logs?${query.toString()}`);
  if ((response.statusCode ?? 500) >= 400) {
    const text = await textOf(response);
    const answer = (() => {
      try {
        return JSON.parse(text) as { error?: { message: string } };
      } catch {
        return {};
      }
    })();
    throw new Error(answer.error?.message ?? `HTTP ${response.statusCode}`);
  }
  // Each chunk as it arrives: with --follow this runs until the instance stops or Ctrl-C.
  for await (const chunk of response) process.stdout.write(chunk as string);
}

/** How `start --cluster` and `node` reach NATS. */
interface ClusterFlags {
  cluster?: string;
  clusterName: string;
  natsUser?: string;
  natsPassword?: string;
  natsToken?: string;
  natsCreds?: string;
  natsCa?: string;
}

const withCluster = (command: Command, required: boolean): Command =>
  command[required ? "requiredOption" : "option"](
    "--cluster <url>",
    required
      ? "the cluster's NATS server (nats://host:4222, tls://…, or several, comma-separated)"
      : "be the head of a cluster on this NATS server (nats://host:4222, tls://…)",
  )
    .option(
      "--cluster-name <name>",
      "the cluster's name: the prefix of its subjects and KV buckets",
      "tributary",
    )
    .option("--nats-user <user>", "NATS user (or set NATS_USER)")
    .option("--nats-password <password>", "NATS password (or set NATS_PASSWORD)")
    .option("--nats-token <token>", "NATS token (or set NATS_TOKEN)")
    .option("--nats-creds <file>", "a NATS .creds file (or set NATS_CREDS)")
    .option(
      "--nats-ca <file>",
      "the CA certificate (PEM) that signed the NATS server's TLS certificate (or set NATS_CA); implies TLS",
    );

/** The NATS credentials of the flags (or the `NATS_*` variables); undefined where not given. */
function natsAuth(flags: ClusterFlags): Omit<ReplicaNats, "url" | "subject"> {
  return {
    user: flags.natsUser ?? process.env.NATS_USER,
    pass: flags.natsPassword ?? process.env.NATS_PASSWORD,
    token: flags.natsToken ?? process.env.NATS_TOKEN,
    credsFile: flags.natsCreds ?? process.env.NATS_CREDS,
    caFile: flags.natsCa ?? process.env.NATS_CA,
  };
}

async function connectCluster(flags: ClusterFlags, role: string) {
  const { NAME_PATTERN } = await import("../wire/cluster.js");
  if (!NAME_PATTERN.test(flags.clusterName))
    throw new Error(
      `--cluster-name must be letters, digits, "-" or "_" (it is "${flags.clusterName}")`,
    );
  const wrong = flags
    .cluster!.split(",")
    .find((server) => /^[a-z][a-z0-9+.-]*:\/\//i.test(server) && !/^(nats|tls):\/\//i.test(server));
  if (wrong !== undefined)
    throw new Error(
      `--cluster expects a NATS server's URL, nats://HOST:PORT or tls://HOST:PORT (it is "${wrong}").`,
    );
  const { connectNats } = await import("../data/transport/nats-link.js");
  try {
    return await connectNats(flags.cluster!, {
      name: `tributary-${role}-${process.pid}`,
      ...natsAuth(flags),
    });
  } catch (error) {
    if (error instanceof TributaryError) throw error;
    throw new Error(
      `cannot reach the cluster's NATS server at ${flags.cluster}: ${(error as Error).message}`,
    );
  }
}

/** A duration flag (`10s`, `500ms`, or milliseconds). */
async function durationFlag(name: string, value: string): Promise<number> {
  const { toMilliseconds } = await import("../options.js");
  const ms = toMilliseconds(/^\d+$/.test(value) ? Number(value) : value);
  if (!Number.isFinite(ms) || ms <= 0)
    throw new Error(`${name} must be a duration above 0 (it is "${value}")`);
  return ms;
}

async function startCommand(
  config: string | undefined,
  flags: {
    adminHost: string;
    adminPort: string;
    adminToken?: string;
    stateDir: string;
    allowImports?: string[];
    logLines: string;
    nodeTimeout: string;
  } & ClusterFlags,
  command?: Command,
): Promise<void> {
  if (flags.cluster === undefined && command?.getOptionValueSource("nodeTimeout") === "cli")
    throw new Error("--node-timeout goes with --cluster (a head judges its nodes by it).");
  const logLines = Number(flags.logLines);
  if (!Number.isInteger(logLines) || logLines < 1)
    throw new Error(`--log-lines must be a whole number above 0 (it is "${flags.logLines}")`);
  const { Instance } = await import("./instance.js");
  let cluster: ClusterHead | undefined;
  if (flags.cluster !== undefined) {
    const nodeTimeoutMs = await durationFlag("--node-timeout", flags.nodeTimeout);
    const nc = await connectCluster(flags, "head");
    const { ClusterHead } = await import("../control/cluster.js");
    cluster = await ClusterHead.open(nc, { name: flags.clusterName, nodeTimeoutMs }).catch(
      async (error: unknown) => {
        // Refused (another head runs): the open connection would keep this process alive.
        await nc.drain().catch(() => undefined);
        throw error;
      },
    );
    // Another head took over while this one was cut off: two heads must not run one cluster.
    cluster.onLost((reason) => {
      console.error(`tributary: ${reason}; this head stops.`);
      process.exit(1);
    });
    console.log(
      `Head of cluster "${flags.clusterName}" on ${flags.cluster}: ${cluster.nodes().filter((n) => n.state === "ALIVE").length} node(s) alive.`,
    );
  }
  try {
    await serveInstance(Instance, cluster, config, flags, logLines);
  } finally {
    // Also when the instance could not start: an open connection would keep this process.
    await cluster?.close();
    await cluster?.nc.drain().catch(() => undefined);
  }
}

async function serveInstance(
  Instance: typeof InstanceClass,
  cluster: ClusterHead | undefined,
  config: string | undefined,
  flags: Parameters<typeof startCommand>[1],
  logLines: number,
): Promise<void> {
  const instance = new Instance({
    cluster,
    logLines,
    adminHost: flags.adminHost,
    adminPort: Number(flags.adminPort),
    adminToken: flags.adminToken ?? process.env.TRIBUTARY_ADMIN_TOKEN,
    stateDir: resolve(flags.stateDir),
    imports: { projectDir: process.cwd(), allowedDirs: flags.allowImports ?? [] },
  });
  const address = await instance.listen();
  console.log(
    `Admin API at ${address}. Deploy with: tributary deploy ${config ?? "serve.yaml"} --address ${address}`,
  );
  try {
    const restored = await instance.restore();
    if (restored)
      console.log(
        `Restored ${restored.applications.map((a) => `"${a.application}"`).join(", ")} from ${cluster ? "the cluster's state" : flags.stateDir}.`,
      );
  } catch (error) {
    console.error(`Could not restore the last configuration: ${(error as Error).message}`);
  }
  if (config !== undefined) {
    // Applied after the restore, so the file given wins; one that does not apply stops the
    // instance (a container restarts it), rather than serving something else.
    try {
      const file = resolve(config);
      const result = await instance.deploy(await readFile(file, "utf8"), file);
      console.log(
        `Applied ${relative(process.cwd(), file)}: ${result.applications.map((a) => `"${a.application}" ${a.action}`).join(", ")}.`,
      );
    } catch (error) {
      await instance.close();
      throw error;
    }
  }
  void firstSignal().then(() => {
    if (cluster) {
      // A head is stopped by a signal to restart or upgrade it: the cluster's replicas run on
      // for the next head, which adopts them (`tributary shutdown` stops the applications).
      console.log(
        "Handing over: this head's requests in flight finish, its lease is given back, and the replicas on the nodes run on for the next head (tributary shutdown stops them)…",
      );
      return instance.close({ handOver: true });
    }
    console.log("Draining (Ctrl-C again stops at once, cutting off what still runs)…");
    return instance.close();
  });
  await instance.stopped;
  console.log("Stopped.");
}

/** `tributary node`: joins a cluster and hosts replicas until a signal. */
async function nodeCommand(
  flags: {
    name?: string;
    resources?: string;
    httpPort?: string;
    httpHost: string;
    nodeTimeout: string;
  } & ClusterFlags,
): Promise<void> {
  const { ClusterNode, defaultNodeName, parseResources } = await import("./node.js");
  const resources = parseResources(flags.resources);
  const name = flags.name ?? defaultNodeName();
  const nodeTimeoutMs = await durationFlag("--node-timeout", flags.nodeTimeout);
  const httpPort = flags.httpPort === undefined ? undefined : Number(flags.httpPort);
  if (
    httpPort !== undefined &&
    !(Number.isInteger(httpPort) && httpPort >= 0 && httpPort <= 65_535)
  )
    throw new Error(
      `--http-port must be a port number from 0 to 65535 (it is "${flags.httpPort}")`,
    );
  const nc = await connectCluster(flags, `node-${name}`);
  let node: Awaited<ReturnType<typeof ClusterNode.start>>;
  try {
    node = await ClusterNode.start(nc, {
      name,
      cluster: flags.clusterName,
      resources,
      nodeTimeoutMs,
      // Each replica connects to NATS itself, as this node did.
      nats: { url: flags.cluster!, ...natsAuth(flags) },
      ...(httpPort !== undefined && { http: { host: flags.httpHost, port: httpPort } }),
    });
  } catch (error) {
    // An open connection would keep this process running.
    await nc.close().catch(() => undefined);
    throw error;
  }
  console.log(
    `Node "${name}" joined cluster "${flags.clusterName}" on ${flags.cluster} with ${JSON.stringify(resources)}${node.httpUrl ? `; front door at ${node.httpUrl}` : ""}.`,
  );
  await firstSignal();
  console.log("Leaving the cluster…");
  await node.close();
  await nc.drain().catch(() => undefined);
  console.log("Stopped.");
}

interface StatusAnswer {
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
}

async function deployCommand(file: string, flags: AdminFlags & { wait?: boolean }): Promise<void> {
  const text = await readFile(resolve(file), "utf8");
  const result = (await admin(flags, "PUT", "/api/deploy", {
    file: resolve(file),
    text,
  })) as DeployResult;
  for (const app of result.applications) {
    const changes = Object.entries(app.changes).map(
      ([name, kinds]) => `${name}: ${kinds.join(", ")}`,
    );
    console.log(
      `${app.application}: ${app.action}${changes.length > 0 ? ` (${changes.join("; ")})` : ""}`,
    );
  }
  if (result.http.length > 0) console.log(`http: updated (${result.http.join(", ")})`);
  if (!flags.wait) return;
  const waiting = new Set(
    result.applications.filter((a) => a.action !== "removed").map((a) => a.application),
  );
  while (waiting.size > 0) {
    const status = (await admin(flags, "GET", "/api/status")) as StatusAnswer;
    for (const name of [...waiting]) {
      const app = status.applications[name];
      const deployments = Object.values(app?.deployments ?? {});
      const lines = deployments.map(
        (d) =>
          `  ${d.name}: ${d.status.padEnd(13)} ${d.replicas.length} replica(s)${d.message ? ` ${d.message}` : ""}`,
      );
      console.log(`${name}: ${app?.status ?? "?"}\n${lines.join("\n")}`);
      if (app?.status === "DEPLOY_FAILED") {
        const why = deployments
          .filter((d) => d.status === "DEPLOY_FAILED")
          .map((d) => `${d.name}: ${d.message}`)
          .join("; ");
        throw new Error(`${name} is DEPLOY_FAILED: ${why || app.message}`);
      }
      // Done when every deployment runs exactly its target: a scale-down has ended too.
      const settled = deployments.every(
        (d) =>
          d.replicas.length === d.targetReplicas && d.replicas.every((r) => r.state === "RUNNING"),
      );
      if (app?.status === "RUNNING" && settled) waiting.delete(name);
    }
    if (waiting.size > 0) await new Promise((r) => setTimeout(r, 500));
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
    .option(
      "--arg <key=value>",
      "an argument of an application builder (repeatable); the value reads as in YAML",
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .addHelpText(
      "after",
      "\nExamples:\n  tributary run ./app.ts:app --port 8000\n  tributary run ./app.ts:builder --arg modelPath=./m.onnx --arg replicas=2\n  tributary run serve.yaml",
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
      "\nExample (in Tributary's checkout, after npm pack):\n  npx tributary init ../my-app && cd ../my-app && npm install && npm test",
    )
    .action(initCommand);
  cli
    .command("build")
    .description("Write the YAML config of applications: every deployment, defaults as comments.")
    .argument("<targets...>", "modules and exports, such as ./app.ts:app ./other.ts:builder")
    .option(
      "-o, --output <path>",
      "write to this file instead of standard output (a directory with --target kubernetes)",
    )
    .option(
      "--arg <key=value>",
      "an argument of the builder (repeatable), written under args:",
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .addOption(
      new Option(
        "--target <target>",
        "yaml: the serve config; kubernetes: manifests of a cluster on NATS (head, node pools, config), with a README",
      )
        .choices(["yaml", "kubernetes"])
        .default("yaml"),
    )
    .option("--grpc-port <port>", "also serve the Open Inference Protocol over gRPC on this port")
    .option(
      "--image <image>",
      "kubernetes: your project's container image (default tributary-app:latest, a placeholder)",
    )
    .option(
      "--nats-url <url>",
      "kubernetes: the NATS server every pod connects to (default nats://nats:4222)",
    )
    .addHelpText(
      "after",
      "\nExamples:\n  tributary build ./app.ts:app -o serve.yaml\n  tributary build ./a.ts:app ./b.ts:builder --arg size=2 -o serve.yaml\n  tributary build ./app.ts:app --target kubernetes --image registry.example/app:1 -o k8s/",
    )
    .action(buildCommand);
  cli
    .command("start")
    .description(
      "Start a long-running instance with an admin API; it restores its last applied config, then applies [config] if given.",
    )
    .argument("[config]", "a config file to apply once started, such as serve.yaml")
    .option(
      "--admin-host <host>",
      "admin API host (a non-loopback host needs a token)",
      "127.0.0.1",
    )
    .option("--admin-port <port>", "admin API port", "8265")
    .option("--log-lines <count>", "recent log lines kept for tributary logs", "10000")
    .option("--admin-token <token>", "require this bearer token (or set TRIBUTARY_ADMIN_TOKEN)")
    .option("--state-dir <dir>", "where the last applied config is kept", ".tributary")
    .option(
      "--allow-imports <dir...>",
      "also import modules from these directories (by default only modules under the config file's directory, inside the working directory)",
    )
    .option("--node-timeout <duration>", "with --cluster: a node silent this long is DEAD", "10s");
  withCluster(cli.commands.at(-1)!, false)
    .addHelpText(
      "after",
      "\nExamples:\n  tributary start --state-dir /var/lib/tributary\n  tributary start serve.yaml\n  tributary start --cluster nats://10.0.0.5:4222 serve.yaml",
    )
    .action(startCommand);
  withCluster(
    cli
      .command("node")
      .description(
        "Join a cluster as a node: host replicas the head places here, and optionally a front door.",
      )
      .option("--name <name>", "this node's name (default: the host name)")
      .option(
        "--resources <json>",
        `what this node offers, as JSON: {"cpus":4,"gpus":1,"memory":8e9,"custom":{"ocr":1}} (default: this machine's CPUs and memory)`,
      )
      .option("--http-port <port>", "serve the applications' HTTP front door on this node too")
      .option("--http-host <host>", "the front door's host", "127.0.0.1")
      .option(
        "--node-timeout <duration>",
        "a peer silent this long is DEAD (the head's setting wins)",
        "10s",
      ),
    true,
  )
    .addHelpText(
      "after",
      `\nExample:\n  tributary node --cluster nats://10.0.0.5:4222 --name gpu-1 --resources '{"gpus":1,"custom":{"ocr":1}}'`,
    )
    .action(nodeCommand);
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
    .description(
      "Show applications, deployments and their replicas by state, messages and the last deploy.",
    )
    .option("--json", "print the admin API's JSON answer instead")
    .addHelpText("after", "\nExamples:\n  tributary status\n  tributary status --json")
    .action(async (flags: AdminFlags & { json?: boolean }) => {
      const answer = await admin(flags, "GET", "/api/status");
      if (flags.json) console.log(JSON.stringify(answer, null, 2));
      else {
        const { formatStatus } = await import("./status-text.js");
        console.log(formatStatus(answer as StatusText));
      }
    });
  withAdmin(cli.command("logs"))
    .description(
      "Print the recent log lines of a running instance (JSON, one a line): the request log and what replicas write with console.*.",
    )
    .argument("[deployment]", "only this deployment's lines")
    .option("--app <name>", "only this application's lines")
    .option("-f, --follow", "keep printing new lines as they are logged")
    .option("-n, --lines <count>", "only the last <count> lines kept")
    .addHelpText("after", "\nExample:\n  tributary logs classifier --follow")
    .action(logsCommand);
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

let pipesGuarded = false;

export async function main(argv: readonly string[]): Promise<number> {
  // Output piped into a reader that stops early (`tributary status | head`) ends quietly,
  // as other commands do, instead of with an EPIPE stack trace.
  if (!pipesGuarded) {
    pipesGuarded = true;
    for (const stream of [process.stdout, process.stderr])
      stream.on("error", (error: NodeJS.ErrnoException) => {
        if (error.code === "EPIPE") process.exit(0);
        throw error;
      });
  }
  try {
    await program().parseAsync(argv);
    return 0;
  } catch (error) {
    if (error instanceof TributaryError) console.error(error.message);
    else console.error(`tributary: ${(error as Error).message ?? String(error)}`);
    return 1;
  }
}
