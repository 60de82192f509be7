/**
 * `tributary start`: a long-running instance with an admin API. It owns the HTTP front
 * door and converges on the last configuration that validated: a change of options is
 * applied with `server.update` (only what each deployment needs); a change of code (the
 * module's contents or import path) starts the new version beside the old one, switches
 * the front door to it once healthy, then drains the old one. The last applied
 * configuration is kept in the state directory and restored on restart.
 */
import { randomUUID, timingSafeEqual } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { isIP } from "node:net";
import { dirname, join, resolve } from "node:path";
import Fastify, { type FastifyInstance } from "fastify";
import type { Duration } from "../options.js";
import { ConfigError, parseConfig } from "../config/load.js";
import {
  checkImportPath,
  moduleVersion,
  resolveApplication,
  type ImportPolicy,
} from "../config/resolve.js";
import type { ServeConfig } from "../config/schema.js";
import { TributaryError } from "../errors.js";
import type { IngressTarget } from "../ingress/target.js";
import { startFrontDoors, type FrontDoors } from "../runtime/front-doors.js";
import { run, type RunOptions, type Server } from "../runtime/server.js";
import { isWildcard, refusal } from "./admin-guard.js";

export interface InstanceOptions {
  readonly adminHost: string;
  readonly adminPort: number;
  /** Required when the admin API listens on a non-loopback address. */
  readonly adminToken: string | undefined;
  readonly stateDir: string;
  /**
   * Where deployed configurations may import modules from: under the config file's
   * directory inside `projectDir` (default: the working directory), or under one of
   * `allowedDirs` (`--allow-imports`).
   */
  readonly imports?: Partial<ImportPolicy>;
}

interface Applied {
  readonly file: string;
  readonly text: string;
  readonly version: string;
  readonly server: Server;
}

export interface DeployResult {
  readonly application: string;
  /** `started`, `updated` (per deployment: what changed), or `code` (the whole application rolled). */
  readonly action: "started" | "updated" | "code" | "unchanged";
  readonly changes: Record<string, string[]>;
}

const isLoopback = (host: string): boolean =>
  host === "localhost" || host === "::1" || (isIP(host) === 4 && host.startsWith("127."));

function serverOptions(config: ServeConfig): RunOptions {
  const http = config.http ?? {};
  return {
    ...(http.host !== undefined && { host: http.host }),
    ...(http.port !== undefined && { port: http.port }),
    ...(http.requestTimeout !== undefined && { requestTimeout: http.requestTimeout as Duration }),
    ...(http.readTimeout !== undefined && { readTimeout: http.readTimeout as Duration }),
    ...(http.bodyLimit !== undefined && { bodyLimit: http.bodyLimit }),
    ...(http.maxConnections !== undefined && { maxConnections: http.maxConnections }),
    ...(config.grpc && { grpc: { port: config.grpc.port ?? 9000 } }),
  };
}

/** Compares secrets in constant time. */
function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** How long requests in flight may finish on an old address when the front door moves. */
const RESTART_DRAIN_MS = 5_000;

/** The largest configuration the admin API accepts. */
const ADMIN_BODY_LIMIT = 4 * 1024 * 1024;

export class Instance {
  readonly #options: InstanceOptions;
  readonly #imports: ImportPolicy;
  #applied: Applied | undefined;
  #frontDoors: FrontDoors | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #admin: FastifyInstance | undefined;
  #closed: Promise<void> | undefined;
  /** Resolves when the instance has shut down. */
  readonly stopped: Promise<void>;
  #stop!: () => void;

  constructor(options: InstanceOptions) {
    if (!isLoopback(options.adminHost) && !options.adminToken) {
      throw new TributaryError(
        "INVALID_CONFIG",
        `The admin API would listen on ${options.adminHost}, which is not a loopback address: give a token with --admin-token or TRIBUTARY_ADMIN_TOKEN.`,
      );
    }
    this.#options = options;
    this.#imports = {
      projectDir: resolve(options.imports?.projectDir ?? process.cwd()),
      allowedDirs: (options.imports?.allowedDirs ?? []).map((dir) => resolve(dir)),
    };
    this.stopped = new Promise((resolve) => (this.#stop = resolve));
  }

  /** The front door's target: always the current application's. */
  readonly #target: IngressTarget = (() => {
    const current = (): IngressTarget => {
      if (!this.#applied) throw new TributaryError("SERVER_CLOSED", "No application is deployed.");
      return this.#applied.server.ingressTarget();
    };
    return {
      get app() {
        return current().app;
      },
      get model() {
        return current().model;
      },
      get bytesField() {
        return current().bytesField;
      },
      call: (input, options) => current().call(input, options),
      ready: () => this.#applied?.server.ingressTarget().ready() ?? false,
    };
  })();

  /** Validates and applies a configuration; one at a time, in order. */
  deploy(text: string, file: string): Promise<DeployResult> {
    const next = this.#queue.then(() => this.#deploy(text, file));
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #deploy(text: string, file: string): Promise<DeployResult> {
    const { config, document } = parseConfig(text, file);
    if (config.applications.length > 1) {
      throw new ConfigError([
        document.problem(
          ["applications", 1],
          "serving several applications from one instance is not supported yet; use one file per application.",
        ),
      ]);
    }
    const entry = config.applications[0]!;
    // Every check that needs no user code runs first: a module is imported (its top-level
    // code runs) only for a configuration that passed them, from an allowed directory.
    checkImportPath(entry, 0, document, file, this.#imports);
    const version = moduleVersion(entry.importPath, dirname(resolve(file)));
    const previous = this.#applied;
    const sameCode =
      previous !== undefined &&
      version === previous.version &&
      previous.server.app.name === entry.name;
    const app = await resolveApplication(
      entry,
      0,
      document,
      file,
      sameCode ? previous.version : version,
    );
    let result: DeployResult;
    if (previous && sameCode && app.graph === previous.server.app.graph) {
      const plan = await previous.server.update(app);
      this.#applied = { file, text, version, server: previous.server };
      const changes: Record<string, string[]> = Object.fromEntries(
        Object.entries(plan).filter(([, kinds]) => kinds.length > 0),
      );
      const http = await this.#ensureFrontDoors(serverOptions(config));
      if (http.length > 0) changes.http = http;
      result = {
        application: app.name,
        action: Object.keys(changes).length > 0 ? "updated" : "unchanged",
        changes,
      };
    } else {
      const server = await run(app, { ...serverOptions(config), frontDoors: false });
      if (this.#closed) {
        await server.close();
        throw new TributaryError("SERVER_CLOSED", "The instance is shutting down.");
      }
      this.#applied = { file, text, version, server };
      try {
        await this.#ensureFrontDoors(serverOptions(config));
      } catch (error) {
        // The front door could not open (a port in use): keep what ran before.
        this.#applied = previous;
        await server.close();
        throw error;
      }
      result = { application: app.name, action: previous ? "code" : "started", changes: {} };
      if (previous) await previous.server.close(); // drains what it was still serving
    }
    await this.#persist(file, text);
    return result;
  }

  /**
   * Starts the front doors, or applies changed http settings to them in place (no connection
   * is dropped). Only a new address or gRPC port restarts them. Resolves with what changed.
   */
  async #ensureFrontDoors(options: RunOptions): Promise<string[]> {
    if (this.#frontDoors) {
      const changed = await this.#frontDoors.update(options);
      if (changed) return changed;
      const old = this.#frontDoors;
      this.#frontDoors = undefined;
      // Requests in flight on the old address get a moment to finish.
      await old.close(new Promise((resolve) => setTimeout(resolve, RESTART_DRAIN_MS)));
    }
    this.#frontDoors = await startFrontDoors(this.#target, options);
    return ["address"];
  }

  async #persist(file: string, text: string): Promise<void> {
    await mkdir(this.#options.stateDir, { recursive: true });
    await writeFile(
      join(this.#options.stateDir, "applied.json"),
      JSON.stringify({ file: resolve(file), text }),
    );
  }

  /** Restores the last applied configuration from the state directory, if any. */
  async restore(): Promise<DeployResult | undefined> {
    let saved: { file: string; text: string };
    try {
      saved = JSON.parse(await readFile(join(this.#options.stateDir, "applied.json"), "utf8")) as {
        file: string;
        text: string;
      };
    } catch {
      return undefined;
    }
    return this.deploy(saved.text, saved.file);
  }

  async status(): Promise<Record<string, unknown>> {
    const applied = this.#applied;
    if (!applied) return { applications: {}, url: this.#frontDoors?.url ?? null };
    return { ...(await applied.server.status()), url: this.#frontDoors?.url ?? null };
  }

  config(): { file: string; text: string } | undefined {
    return this.#applied && { file: this.#applied.file, text: this.#applied.text };
  }

  /** Starts the admin API; returns its address. */
  async listen(): Promise<string> {
    const admin = Fastify({ logger: false, bodyLimit: ADMIN_BODY_LIMIT });
    // JSON only: Fastify's text/plain parser would take the bodies a web page can send.
    admin.removeAllContentTypeParsers();
    admin.addContentTypeParser(
      "application/json",
      { parseAs: "string" },
      admin.getDefaultJsonParser("error", "error"),
    );
    const token = this.#options.adminToken;
    const bound = this.#options.adminHost.toLowerCase();
    // A wildcard address has no one name to check against; a token is required there.
    const allowedHosts = isWildcard(bound) ? undefined : new Set([bound, "localhost"]);
    admin.addHook("onRequest", async (request, reply) => {
      const refused = refusal(request.headers, request.method, allowedHosts);
      if (refused) {
        return reply.code(refused.status).send({
          error: { code: refused.code, message: refused.message, requestId: request.id },
        });
      }
      if (token && !sameSecret(request.headers.authorization ?? "", `Bearer ${token}`)) {
        return reply.code(401).send({
          error: {
            code: "UNAUTHORIZED",
            message: "This admin API needs the instance's token.",
            requestId: randomUUID(),
          },
        });
      }
      return undefined;
    });
    admin.setErrorHandler((error, request, reply) => {
      const e = error as Error & { code?: string; problems?: unknown };
      const status =
        error instanceof ConfigError ? 400 : error instanceof TributaryError ? 409 : 500;
      void reply.code(status).send({
        error: {
          code: e.code ?? "INTERNAL",
          message: e.message,
          requestId: request.id,
          problems: e.problems,
        },
      });
    });
    admin.put<{ Body: { file?: string; text?: string } }>("/api/deploy", async (request) => {
      const { file, text } = request.body ?? {};
      if (typeof text !== "string")
        throw new TributaryError("BAD_REQUEST", "A deploy needs { file, text }.");
      return this.deploy(text, typeof file === "string" ? file : "serve.yaml");
    });
    admin.get("/api/status", async () => this.status());
    admin.get(
      "/api/config",
      async (_request, reply) =>
        this.config() ??
        reply.code(404).send({ error: { code: "NOT_FOUND", message: "Nothing is deployed yet." } }),
    );
    admin.post("/api/shutdown", async () => {
      setImmediate(() => void this.close());
      return { shuttingDown: true };
    });
    await admin.listen({ host: this.#options.adminHost, port: this.#options.adminPort });
    this.#admin = admin;
    const address = admin.server.address();
    const port = typeof address === "object" && address ? address.port : this.#options.adminPort;
    const host =
      isIP(this.#options.adminHost) === 6
        ? `[${this.#options.adminHost}]`
        : this.#options.adminHost;
    return `http://${host}:${port}`;
  }

  /** Drains and stops everything. Safe to call twice. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      await this.#admin?.close();
      // The front doors stop taking requests at once; their connections close once the
      // application has drained (bounded by its gracefulShutdownTimeout).
      let drained!: () => void;
      const force = new Promise<void>((resolve) => (drained = resolve));
      const doors = this.#frontDoors?.close(force);
      await this.#applied?.server.close();
      setTimeout(drained, 100);
      await doors;
      this.#stop();
    })();
    return this.#closed;
  }
}
