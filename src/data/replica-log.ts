/**
 * @internal What user code writes with `console.*` inside a replica becomes one JSON line
 * per call (pino's format: `level`, `time`, `msg`), tagged with the application,
 * deployment and replica, and the request id while a request runs (the replica's request
 * context). The lines go to the runtime, which writes them where its log goes (standard
 * output, or an instance's log, which `tributary logs` reads). Writes straight to
 * `process.stdout` are not captured.
 */
import { hostname } from "node:os";
import { format } from "node:util";
import { pino, type Level } from "pino";
import { currentRequest } from "./context.js";

export interface ReplicaLogTags {
  readonly application: string;
  readonly deployment: string;
  readonly replica: string;
}

const METHODS: Readonly<Record<string, Level>> = {
  log: "info",
  info: "info",
  debug: "debug",
  trace: "trace",
  warn: "warn",
  error: "error",
};

/** Replaces this thread's `console` methods: each call becomes a line given to `send`. */
export function captureConsole(tags: ReplicaLogTags, send: (line: string) => void): void {
  const logger = pino(
    {
      level: "trace",
      base: { pid: process.pid, hostname: hostname(), ...tags },
      mixin: () => {
        const requestId = currentRequest()?.requestId;
        return requestId === undefined ? {} : { requestId };
      },
    },
    { write: (line: string) => send(line.endsWith("\n") ? line.slice(0, -1) : line) },
  );
  const target = console as unknown as Record<string, (...args: unknown[]) => void>;
  for (const [method, level] of Object.entries(METHODS)) {
    target[method] =
      method === "trace"
        ? (...args: unknown[]) => logger.trace(`${format(...args)}\n${traceOf(new Error())}`)
        : (...args: unknown[]) => logger[level](format(...args));
  }
  target.dir = (value: unknown) => logger.info(format("%O", value));
}

/** The stack of `error` without its first line (the error's message) nor this module's frame. */
function traceOf(error: Error): string {
  return (error.stack ?? "").split("\n").slice(2).join("\n");
}
