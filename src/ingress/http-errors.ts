/**
 * @internal Any error → an HTTP status and the `{ error: { code, message, requestId } }`
 * body (or, under `/v2`, the Open Inference Protocol's `{ error: message }` with the same
 * code and request id beside it). Stack traces only in debug mode.
 */
import { ERROR_CODES, TributaryError, ValidationError, type ErrorCode } from "../errors.js";

interface HttpError {
  readonly status: number;
  readonly body: Record<string, unknown>;
  readonly retryAfter?: number;
}

/** Fastify's own errors by code; others fall back on their status code. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: "PAYLOAD_TOO_LARGE",
  FST_REQ_FILE_TOO_LARGE: "PAYLOAD_TOO_LARGE",
  FST_PARTS_LIMIT: "PAYLOAD_TOO_LARGE",
  FST_FILES_LIMIT: "PAYLOAD_TOO_LARGE",
  FST_FIELDS_LIMIT: "PAYLOAD_TOO_LARGE",
  FST_ERR_CTP_INVALID_MEDIA_TYPE: "UNSUPPORTED_MEDIA_TYPE",
  FST_INVALID_MULTIPART_CONTENT_TYPE: "UNSUPPORTED_MEDIA_TYPE",
};

/**
 * The code and message of `error`, and the status when it names one of its own: an error of
 * a route's (Fastify's `statusCode`, or `fallbackStatus`: what the route set with
 * `reply.code()` before sending it) keeps its 4xx or 5xx status and its message, under the
 * code of that status (`BAD_REQUEST` for a 4xx none has, `INTERNAL` for a 5xx; a 500 says
 * only "Internal server error.").
 */
function codeOf(
  error: unknown,
  fallbackStatus: number | undefined,
): { code: ErrorCode; message: string; status?: number } {
  if (error instanceof TributaryError) return { code: error.code, message: error.message };
  const e = error as { statusCode?: unknown; code?: unknown; message?: unknown };
  const message = typeof e.message === "string" ? e.message : String(error);
  if (typeof e.code === "string" && FASTIFY_CODES[e.code])
    return { code: FASTIFY_CODES[e.code]!, message };
  const status = httpStatus(e.statusCode) ?? httpStatus(fallbackStatus);
  if (status !== undefined && status < 500) {
    const code = (Object.entries(ERROR_CODES).find(([, s]) => s.httpStatus === status)?.[0] ??
      "BAD_REQUEST") as ErrorCode;
    return { code, message, status };
  }
  // A 500 is an unexpected failure whatever set it: its message stays in the log.
  if (status !== undefined && status !== 500) return { code: "INTERNAL", message, status };
  return { code: "INTERNAL", message: "Internal server error." };
}

/** `value` when it is an HTTP error status (400–599). */
const httpStatus = (value: unknown): number | undefined =>
  typeof value === "number" && Number.isInteger(value) && value >= 400 && value <= 599
    ? value
    : undefined;

export function httpError(
  error: unknown,
  requestId: string,
  debug: boolean,
  oip = false,
  fallbackStatus?: number,
): HttpError {
  const { code, message, status: own } = codeOf(error, fallbackStatus);
  const status = own ?? ERROR_CODES[code].httpStatus;
  const extra: Record<string, unknown> = {};
  if (error instanceof ValidationError) extra.issues = error.issues;
  if (debug && error instanceof Error) {
    extra.stack = error.stack;
    if (error.cause instanceof Error)
      extra.cause = { message: error.cause.message, stack: error.cause.stack };
    if (code === "INTERNAL") extra.detail = error.message;
  }
  const body = oip
    ? { error: message, code, requestId, ...extra }
    : { error: { code, message, requestId, ...extra } };
  return {
    status,
    body,
    ...((code === "BACK_PRESSURE" || code === "QUEUE_TIMEOUT") && { retryAfter: 1 }),
  };
}
