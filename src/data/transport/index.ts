/**
 * @internal The transports by isolation kind.
 */
import { ProcessTransport } from "./process.js";
import { ThreadTransport } from "./thread.js";
import type { ReplicaTransport, TransportFactory } from "./transport.js";

export const defaultTransportFactory: TransportFactory = (
  isolation,
  name,
  limits = {},
): ReplicaTransport =>
  isolation === "process" ? new ProcessTransport(name, limits) : new ThreadTransport(name, limits);

export type { Isolation, ReplicaLimits, ReplicaTransport, TransportFactory } from "./transport.js";
