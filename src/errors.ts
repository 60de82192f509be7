/**
 * Every error Tributary raises is a {@link TributaryError} with a stable `code`. The table
 * below is the single place that maps a code to its HTTP and gRPC status; `docs/errors.md`
 * lists the same codes and a test keeps the two in sync.
 */

/** gRPC status codes used by the table (numbers from the gRPC specification). */
const GrpcStatus = {
  INVALID_ARGUMENT: 3,
  FAILED_PRECONDITION: 9,
  INTERNAL: 13,
} as const;

/** Stable error codes, with the HTTP and gRPC status each one maps to. */
export const ERROR_CODES = {
  INVALID_GRAPH: { httpStatus: 500, grpcStatus: GrpcStatus.FAILED_PRECONDITION },
  INVALID_OPTIONS: { httpStatus: 500, grpcStatus: GrpcStatus.FAILED_PRECONDITION },
  VALIDATION_FAILED: { httpStatus: 422, grpcStatus: GrpcStatus.INVALID_ARGUMENT },
  EXECUTION_FAILED: { httpStatus: 500, grpcStatus: GrpcStatus.INTERNAL },
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

/** A graph input failed the `InputNode`'s schema; `issues` lists every failing path. */
export class ValidationError extends TributaryError {
  readonly issues: readonly ValidationIssue[];

  constructor(issues: readonly ValidationIssue[]) {
    const lines = issues.map((i) => `  - ${i.path || "(input)"}: ${i.message}`);
    super("VALIDATION_FAILED", `Input failed schema validation:\n${lines.join("\n")}`);
    this.issues = issues;
  }
}

/** A step of the graph threw. `cause` is the original error. */
export class GraphExecutionError extends TributaryError {
  /** The deployment whose code failed. */
  readonly deployment: string;
  /** The method that failed: a method name, `"constructor"`, `"reconfigure"`, or the function's name. */
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
