/**
 * @internal `tracing: { otlpEndpoint }`: an OpenTelemetry SDK that exports spans over
 * OTLP/HTTP (JSON), for users who registered none. Each thread and process that makes
 * spans sets one up (the main thread, every replica, every front-door worker), unless its
 * code registered an SDK of its own (that one wins: the API takes the first provider
 * registered). Several `run()`s of one process share the provider; each endpoint gets its
 * own batch processor.
 */
import { context, trace } from "@opentelemetry/api";
import { OptionsError } from "./errors.js";
import { requirePackages } from "./optional-package.js";

/** The packages the OTLP exporter needs (optional peer dependencies). */
export const TRACING_PACKAGES = [
  "@opentelemetry/sdk-trace-base",
  "@opentelemetry/exporter-trace-otlp-http",
  "@opentelemetry/context-async-hooks",
  "@opentelemetry/resources",
] as const;

/** Throws MISSING_PACKAGE (naming what to install) unless the exporter's packages resolve. */
export function checkTracingPackages(): void {
  requirePackages("tracing.otlpEndpoint", TRACING_PACKAGES);
}

/** How long a batch of ended spans waits before it is sent. */
const EXPORT_DELAY_MS = 1_000;

/** The shapes used here of the SDK's span processor (the SDK's types stay out of ours). */
interface Processor {
  onStart(span: unknown, parent: unknown): void;
  onEnd(span: unknown): void;
  forceFlush(): Promise<void>;
  shutdown(): Promise<void>;
}

/** One provider per thread, fanning ended spans out to each endpoint's processor. */
class FanOut implements Processor {
  readonly processors = new Map<string, { processor: Processor; users: number }>();
  onStart(span: unknown, parent: unknown): void {
    for (const { processor } of this.processors.values()) processor.onStart(span, parent);
  }
  onEnd(span: unknown): void {
    for (const { processor } of this.processors.values()) processor.onEnd(span);
  }
  async forceFlush(): Promise<void> {
    await Promise.all([...this.processors.values()].map(({ processor }) => processor.forceFlush()));
  }
  async shutdown(): Promise<void> {
    await Promise.all([...this.processors.values()].map(({ processor }) => processor.shutdown()));
  }
}

let setup: Promise<FanOut | undefined> | undefined;

/** The OTLP/HTTP traces URL of an endpoint: a bare `http://host:4318` gets `/v1/traces`. */
export function tracesUrl(endpoint: string): string {
  const url = new URL(endpoint);
  if (url.pathname === "/" || url.pathname === "") url.pathname = "/v1/traces";
  return url.toString();
}

/** A running export: `flush` sends what ended; `close` flushes and stops this endpoint's part. */
export interface TraceExport {
  flush(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Exports this thread's spans to `endpoint` (OTLP/HTTP). Resolves with a no-op export when
 * the code already registered an OpenTelemetry SDK (its exporters get the spans).
 */
export async function exportTraces(endpoint: string, serviceName: string): Promise<TraceExport> {
  checkTracingPackages();
  setup ??= (async () => {
    const [base, { AsyncLocalStorageContextManager }, { resourceFromAttributes }] =
      await Promise.all([
        import("@opentelemetry/sdk-trace-base"),
        import("@opentelemetry/context-async-hooks"),
        import("@opentelemetry/resources"),
      ]);
    const fanOut = new FanOut();
    const provider = new base.BasicTracerProvider({
      resource: resourceFromAttributes({ "service.name": serviceName }),
      spanProcessors: [fanOut],
    });
    if (!trace.setGlobalTracerProvider(provider)) return undefined; // the user's SDK wins
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    return fanOut;
  })();
  const fanOut = await setup;
  if (!fanOut) return { flush: () => Promise.resolve(), close: () => Promise.resolve() };
  const url = tracesUrl(endpoint);
  let entry = fanOut.processors.get(url);
  if (!entry) {
    const [{ BatchSpanProcessor }, { OTLPTraceExporter }] = await Promise.all([
      import("@opentelemetry/sdk-trace-base"),
      import("@opentelemetry/exporter-trace-otlp-http"),
    ]);
    const processor = new BatchSpanProcessor(new OTLPTraceExporter({ url }), {
      scheduledDelayMillis: EXPORT_DELAY_MS,
    }) as unknown as Processor;
    entry = { processor, users: 0 };
    fanOut.processors.set(url, entry);
  }
  const mine = entry;
  mine.users++;
  let closed = false;
  return {
    flush: () => mine.processor.forceFlush(),
    async close() {
      if (closed) return;
      closed = true;
      await mine.processor.forceFlush();
      if (--mine.users > 0) return;
      fanOut.processors.delete(url);
      await mine.processor.shutdown();
    },
  };
}

/** `tracing` as written in code or YAML. */
export interface TracingOptions {
  /** An OTLP/HTTP endpoint (`http://collector:4318`, or its full `/v1/traces` URL). */
  readonly otlpEndpoint: string;
  /** `service.name` of the spans (default `tributary`). */
  readonly serviceName?: string | undefined;
}

/** `tracing` checked and filled: the endpoint is an http(s) URL, the packages are installed. */
export function resolveTracing(
  tracing: TracingOptions | undefined,
): { readonly otlpEndpoint: string; readonly serviceName: string } | undefined {
  if (tracing === undefined) return undefined;
  let url: URL | undefined;
  try {
    url = new URL(tracing.otlpEndpoint);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== "http:" && url.protocol !== "https:"))
    throw new OptionsError(
      `tracing.otlpEndpoint must be an http(s) URL such as http://127.0.0.1:4318 (it is ${JSON.stringify(tracing.otlpEndpoint)}).`,
    );
  const serviceName = tracing.serviceName ?? "tributary";
  if (typeof serviceName !== "string" || serviceName.length === 0)
    throw new OptionsError("tracing.serviceName must be a non-empty string.");
  checkTracingPackages();
  return { otlpEndpoint: tracing.otlpEndpoint, serviceName };
}
