/**
 * @internal The transports by isolation kind.
 */
import { ProcessTransport } from "./process.js";
import { ThreadTransport } from "./thread.js";
import type { ReplicaTransport, TransportFactory } from "./transport.js";

export const defaultTransportFactory: TransportFactory = (isolation, name): ReplicaTransport =>
  isolation === "process" ? new ProcessTransport(name) : new ThreadTransport(name);

export type { Isolation, ReplicaTransport, TransportFactory } from "./transport.js";
