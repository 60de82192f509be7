/** An in-process OTLP/HTTP (JSON) receiver: what the exporters send, decoded into spans. */
import { createServer } from "node:http";
import { gunzipSync } from "node:zlib";
import { eventually } from "./eventually.js";

export interface ReceivedSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string;
  readonly name: string;
  /** OTLP's SpanKind: 1 internal, 2 server, 3 client. */
  readonly kind: number;
  readonly attributes: Readonly<Record<string, unknown>>;
  /** OTLP's status code: 0 unset, 1 ok, 2 error. */
  readonly status: number;
  readonly events: readonly string[];
  readonly service: string;
  readonly scope: string;
}

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  boolValue?: boolean;
  doubleValue?: number;
}
type OtlpAttributes = { key: string; value: OtlpValue }[] | undefined;

const valueOf = (v: OtlpValue): unknown =>
  v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : (v.boolValue ?? v.doubleValue));

const attributesOf = (list: OtlpAttributes): Record<string, unknown> =>
  Object.fromEntries((list ?? []).map(({ key, value }) => [key, valueOf(value)]));

export async function otlpReceiver(): Promise<{
  readonly url: string;
  readonly spans: ReceivedSpan[];
  /** Waits (up to `ms`) until `count` spans have arrived. */
  waitForSpans(count: number, ms?: number): Promise<void>;
  close(): Promise<void>;
}> {
  const spans: ReceivedSpan[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      let body = Buffer.concat(chunks);
      if (req.headers["content-encoding"] === "gzip") body = gunzipSync(body);
      if (req.url === "/v1/traces" && /json/.test(req.headers["content-type"] ?? "")) {
        const message = JSON.parse(body.toString("utf8")) as {
          resourceSpans?: {
            resource?: { attributes?: OtlpAttributes };
            scopeSpans?: {
              scope?: { name?: string };
              spans?: {
                traceId: string;
                spanId: string;
                parentSpanId?: string;
                name: string;
                kind: number;
                attributes?: OtlpAttributes;
                status?: { code?: number };
                events?: { name: string }[];
              }[];
            }[];
          }[];
        };
        for (const resource of message.resourceSpans ?? []) {
          const service = String(attributesOf(resource.resource?.attributes)["service.name"]);
          for (const scope of resource.scopeSpans ?? []) {
            for (const span of scope.spans ?? []) {
              spans.push({
                traceId: span.traceId,
                spanId: span.spanId,
                parentSpanId: span.parentSpanId ?? "",
                name: span.name,
                kind: span.kind,
                attributes: attributesOf(span.attributes),
                status: span.status?.code ?? 0,
                events: (span.events ?? []).map((e) => e.name),
                service,
                scope: scope.scope?.name ?? "",
              });
            }
          }
        }
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    waitForSpans: (count, ms = 15_000) =>
      eventually(
        () => Promise.resolve(spans.length >= count),
        ms,
        `${count} spans arrived (${spans.length} did)`,
      ),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
