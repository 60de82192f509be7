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

function codeOf(error: unknown): { code: ErrorCode; message: string } {
  if (error instanceof TributaryError) return { code: error.code, message: error.message };
  const e = error as { statusCode?: unknown; code?: unknown; message?: unknown };
  const message = typeof e.message === "string" ? e.message : String(error);
  if (typeof e.code === "string" && FASTIFY_CODES[e.code])
    return { code: FASTIFY_CODES[e.code]!, message };
  if (typeof e.statusCode === "number" && e.statusCode >= 400 && e.statusCode < 500) {
    const code = (Object.entries(ERROR_CODES).find(([, s]) => s.httpStatus === e.statusCode)?.[0] ??
      "BAD_REQUEST") as ErrorCode;
    return { code, message };
  }
  return { code: "INTERNAL", message: "Internal server error." };
}

export function httpError(
  error: unknown,
  requestId: string,
  debug: boolean,
  oip = false,
): HttpError {
  const { code, message } = codeOf(error);
  const status = ERROR_CODES[code].httpStatus;
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
