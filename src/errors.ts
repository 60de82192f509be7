/**
 * Every error Tributary raises is a {@link TributaryError} with a stable `code`. The table
 * below is the single place that maps a code to its HTTP and gRPC status; `docs/errors.md`
 * lists the same codes and a test keeps the two in sync.
 */

import type { ApplicationStatusInfo } from "./status.js";

/** gRPC status codes used by the table (numbers from the gRPC specification). */
const GrpcStatus = {
  CANCELLED: 1,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

/** Stable error codes, with the HTTP and gRPC status each one maps to. */
export const ERROR_CODES = {
  INVALID_GRAPH: { httpStatus: 500, grpcStatus: GrpcStatus.FAILED_PRECONDITION },
  INVALID_OPTIONS: { httpStatus: 500, grpcStatus: GrpcStatus.FAILED_PRECONDITION },
  VALIDATION_FAILED: { httpStatus: 422, grpcStatus: GrpcStatus.INVALID_ARGUMENT },
  EXECUTION_FAILED: { httpStatus: 500, grpcStatus: GrpcStatus.INTERNAL },
  BACK_PRESSURE: { httpStatus: 503, grpcStatus: GrpcStatus.RESOURCE_EXHAUSTED },
  QUEUE_TIMEOUT: { httpStatus: 503, grpcStatus: GrpcStatus.UNAVAILABLE },
  REPLICA_DIED: { httpStatus: 503, grpcStatus: GrpcStatus.UNAVAILABLE },
  DEPLOY_FAILED: { httpStatus: 503, grpcStatus: GrpcStatus.UNAVAILABLE },
  SERVER_CLOSED: { httpStatus: 503, grpcStatus: GrpcStatus.UNAVAILABLE },
  TIMEOUT: { httpStatus: 504, grpcStatus: GrpcStatus.DEADLINE_EXCEEDED },
  CANCELLED: { httpStatus: 499, grpcStatus: GrpcStatus.CANCELLED },
  NOT_FOUND: { httpStatus: 404, grpcStatus: GrpcStatus.NOT_FOUND },
  BAD_REQUEST: { httpStatus: 400, grpcStatus: GrpcStatus.INVALID_ARGUMENT },
  PAYLOAD_TOO_LARGE: { httpStatus: 413, grpcStatus: GrpcStatus.RESOURCE_EXHAUSTED },
  UNSUPPORTED_MEDIA_TYPE: { httpStatus: 415, grpcStatus: GrpcStatus.INVALID_ARGUMENT },
  INTERNAL: { httpStatus: 500, grpcStatus: GrpcStatus.INTERNAL },
  INVALID_CONFIG: { httpStatus: 400, grpcStatus: GrpcStatus.INVALID_ARGUMENT },
  MISSING_PACKAGE: { httpStatus: 500, grpcStatus: GrpcStatus.FAILED_PRECONDITION },
  UNAUTHORIZED: { httpStatus: 401, grpcStatus: GrpcStatus.UNAUTHENTICATED },
  FORBIDDEN: { httpStatus: 403, grpcStatus: GrpcStatus.PERMISSION_DENIED },
  TOO_MANY_CONNECTIONS: { httpStatus: 503, grpcStatus: GrpcStatus.UNAVAILABLE },
} as const satisfies Record<string, { httpStatus: number; grpcStatus: number }>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** The HTTP status a code is answered with. */
export function httpStatusOf(code: ErrorCode): number {
  return ERROR_CODES[code].httpStatus;
}

/** The gRPC status a code is answered with. */
export function grpcStatusOf(code: ErrorCode): number {
  return ERROR_CODES[code].grpcStatus;
}

/** Base class of every error Tributary raises. */
export class TributaryError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }

  override get name(): string {
    return this.constructor.name;
  }
}

/** A graph was wired in a way that cannot run: reported when the graph is compiled. */
export class GraphBuildError extends TributaryError {
  constructor(message: string) {
    super("INVALID_GRAPH", message);
  }
}

/** Deployment options failed their schema. */
export class OptionsError extends TributaryError {
  constructor(message: string) {
    super("INVALID_OPTIONS", message);
  }
}

/** One failing path of a validated value. `path` is `""` for the value itself. */
export interface ValidationIssue {
  readonly path: string;
  readonly message: string;
}

/**
 * A graph input failed the `InputNode`'s schema, or a handle call's arguments cannot be
 * sent to a replica; `issues` lists every failing path. `summary` heads the message.
 */
export class ValidationError extends TributaryError {
  readonly issues: readonly ValidationIssue[];

  constructor(issues: readonly ValidationIssue[], summary = "Input failed schema validation") {
    const lines = issues.map((i) => `  - ${i.path || "(input)"}: ${i.message}`);
    super("VALIDATION_FAILED", `${summary}:\n${lines.join("\n")}`);
    this.issues = issues;
  }
}

/** A step of the graph threw. `cause` is the original error. */
export class GraphExecutionError extends TributaryError {
  /** The deployment whose code failed. */
  readonly deployment: string;
  /** Where it failed: `"forward()"` (a method or function, with parentheses) or `"constructor"`. */
  readonly method: string;

  constructor(deployment: string, method: string, cause: unknown) {
    const detail = cause instanceof Error ? cause.message : String(cause);
    super("EXECUTION_FAILED", `Deployment "${deployment}" failed in ${method}: ${detail}`, {
      cause,
    });
    this.deployment = deployment;
    this.method = method;
  }
}

/** A deployment's queue is full: retry later (HTTP 503 with `Retry-After`). */
export class BackPressureError extends TributaryError {
  readonly deployment: string;

  constructor(deployment: string, ongoing: number, queued: number) {
    super(
      "BACK_PRESSURE",
      `Deployment "${deployment}" is overloaded: ${ongoing} ${ongoing === 1 ? "request" : "requests"} running and ${queued} queued ` +
        `(maxOngoingRequests × replicas and maxQueuedRequests reached). Retry later, or raise ` +
        `numReplicas or maxQueuedRequests.`,
    );
    this.deployment = deployment;
  }
}

/**
 * A request waited longer than its deployment's `maxQueueWait` for a free replica. It never
 * ran, so it is safe to retry (HTTP 503 with `Retry-After`, gRPC UNAVAILABLE).
 */
export class QueueTimeoutError extends TributaryError {
  readonly deployment: string;
  readonly waitedMs: number;
  readonly requestId: string | undefined;

  constructor(deployment: string, waitedMs: number, requestId: string | undefined) {
    super(
      "QUEUE_TIMEOUT",
      `${requestId === undefined ? "A request" : `Request ${requestId}`} waited ${waitedMs} ms in the ` +
        `queue of deployment "${deployment}" without a free replica (maxQueueWait) and was not run. ` +
        `Retry later, or raise numReplicas or maxOngoingRequests.`,
    );
    this.deployment = deployment;
    this.waitedMs = waitedMs;
    this.requestId = requestId;
  }
}

/** The replica running a request exited or was replaced before answering. */
export class ReplicaDiedError extends TributaryError {
  readonly deployment: string;
  readonly replica: string;

  /**
   * `lost`: the replica runs on, but the way to it dropped the request or its answer (in a
   * cluster, a NATS connection that was away).
   */
  constructor(deployment: string, replica: string, reason: string, lost = false) {
    super(
      "REPLICA_DIED",
      reason === "stopped"
        ? `Replica ${replica} of deployment "${deployment}" was stopped before the request finished (shutdown or scale-down past gracefulShutdownTimeout).`
        : lost
          ? `The request to replica ${replica} of deployment "${deployment}" was lost (${reason}). ` +
            `It was not retried because it may have had effects.`
          : `Replica ${replica} of deployment "${deployment}" died while handling the request (${reason}). ` +
            `It is being replaced; the request was not retried because it may have had effects.`,
    );
    this.deployment = deployment;
    this.replica = replica;
  }
}

/** A deployment could not start: its module failed to import or its constructor threw. */
export class DeployFailedError extends TributaryError {
  readonly deployment: string;
  /** From `run()`: the application's status when it gave up (each deployment's message). */
  status?: ApplicationStatusInfo;

  constructor(deployment: string, message: string, options?: { cause?: unknown }) {
    super("DEPLOY_FAILED", `Deployment "${deployment}" failed to deploy: ${message}`, options);
    this.deployment = deployment;
  }
}

/** The server is shutting down or closed and takes no new requests. */
export class ServerClosedError extends TributaryError {
  constructor(what: string) {
    super("SERVER_CLOSED", `${what}: the server is shutting down and takes no new requests.`);
  }
}

/** A request ran past its timeout; its slot is freed and the replica is told to stop. */
export class TimeoutError extends TributaryError {
  /** `timeoutMs`: the limit, where the one who reports it knows it. */
  constructor(what: string, timeoutMs?: number) {
    super(
      "TIMEOUT",
      timeoutMs === undefined ? `${what} timed out.` : `${what} timed out after ${timeoutMs} ms.`,
    );
  }
}

/** The caller aborted the request. */
export class CancelledError extends TributaryError {
  constructor(what: string, options?: { cause?: unknown }) {
    super("CANCELLED", `${what} was cancelled by the caller.`, options);
  }
}

/** Something asked for by name does not exist (a deployment, a method). */
export class NotFoundError extends TributaryError {
  constructor(message: string) {
    super("NOT_FOUND", message);
  }
}
