/**
 * @internal Errors crossing a thread or process travel as `{ name, code, message, stack,
 * cause }` and are rebuilt on arrival with their class, code and own data.
 */
import * as errors from "../errors.js";
import type { SerializedError } from "./protocol.js";

type ErrorClass = abstract new (...args: never) => Error;

const CLASSES = new Map<string, ErrorClass>(
  [
    errors.TributaryError,
    errors.GraphBuildError,
    errors.OptionsError,
    errors.ValidationError,
    errors.GraphExecutionError,
    errors.BackPressureError,
    errors.QueueTimeoutError,
    errors.ReplicaDiedError,
    errors.DeployFailedError,
    errors.ServerClosedError,
    errors.TimeoutError,
    errors.CancelledError,
    errors.NotFoundError,
    Error,
    TypeError,
    RangeError,
    SyntaxError,
    ReferenceError,
    EvalError,
    URIError,
  ].map((c) => [c.name, c]),
);

const SKIPPED = new Set(["name", "message", "stack", "cause", "code"]);

/** What a thrown value that is not an Error was: its JSON where it has one (bounded). */
function describeThrown(value: unknown): string {
  if (typeof value === "object" && value !== null) {
    try {
      const json = JSON.stringify(value);
      if (json !== undefined) return json.length > 1000 ? `${json.slice(0, 1000)}…` : json;
    } catch {
      // a cycle, or a toJSON that throws: its string form below
    }
  }
  try {
    return String(value);
  } catch {
    return `a value of type ${typeof value}`; // (an object with no prototype)
  }
}

export function serializeError(error: unknown, depth = 0): SerializedError {
  if (!(error instanceof Error)) {
    return {
      name: "Error",
      message: typeof error === "string" ? error : `Non-error thrown: ${describeThrown(error)}`,
    };
  }
  let props: Record<string, unknown> | undefined;
  for (const [key, value] of Object.entries(error)) {
    if (SKIPPED.has(key)) continue;
    try {
      structuredClone(value);
      (props ??= {})[key] = value;
    } catch {
      // a property that cannot cross (a function, a socket) is left behind
    }
  }
  const code = (error as { code?: unknown }).code;
  return {
    name: error.name,
    message: error.message,
    stack: error.stack,
    code: typeof code === "string" ? code : undefined,
    props,
    cause:
      error.cause !== undefined && depth < 8 ? serializeError(error.cause, depth + 1) : undefined,
  };
}

export function deserializeError(data: SerializedError): Error {
  const Class = CLASSES.get(data.name) ?? Error;
  const error = Object.create(Class.prototype as object) as Error;
  Object.defineProperty(error, "message", {
    value: data.message,
    writable: true,
    configurable: true,
  });
  Object.defineProperty(error, "stack", {
    value: data.stack ?? `${data.name}: ${data.message}`,
    writable: true,
    configurable: true,
  });
  if (!CLASSES.has(data.name) || Class === Error) {
    Object.defineProperty(error, "name", { value: data.name, writable: true, configurable: true });
  }
  if (data.code !== undefined) Object.assign(error, { code: data.code });
  if (data.props) Object.assign(error, data.props);
  if (data.cause)
    Object.defineProperty(error, "cause", {
      value: deserializeError(data.cause),
      writable: true,
      configurable: true,
    });
  return error;
}
