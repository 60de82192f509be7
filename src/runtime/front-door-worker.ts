/**
 * @internal A front-door worker: one of the `http: { workers: N }` processes that share
 * the HTTP port. It imports the application's module as a replica does, keeps a router
 * per deployment of its own (membership from the control plane, calls straight to the
 * replicas' Unix sockets), and serves the same routes as the front door of `run()`. The
 * main thread is on none of its requests' paths.
 */
import { findApplication, markReplicaContext } from "../app/registry.js";
import { handleProxy } from "../dag/handle.js";
import type { DeploymentHandle } from "../dag/types.js";
import { ensureTypeScriptLoader } from "../app/typescript-loader.js";
import { serializeError } from "../wire/error-codec.js";
import { OutgoingCalls } from "../data/remote-handle.js";
import { bytesFieldOf, OipModel } from "../ingress/oip.js";
import type { IngressTarget } from "../ingress/target.js";
import type { MembersMessage, SerializedError } from "../wire/protocol.js";
import { startFrontDoors, type FrontDoors } from "./front-doors.js";
import { GraphIngress } from "./graph-ingress.js";
import { exportTraces, resolveTracing, type TraceExport } from "../tracing-export.js";
import type { RunOptions } from "./server.js";

/** What a front-door worker is told (over the cluster's IPC channel). */
export type ToFrontDoor =
  | {
      readonly t: "init";
      readonly moduleUrl: string;
      readonly app: string;
      readonly deployments: readonly string[];
      /** The ingress's limits as configured (code, YAML or an update). */
      readonly ingress: { readonly maxOngoing: number; readonly maxQueued: number };
      /** The front door's settings (no log stream: lines go to standard output). */
      readonly options: Omit<RunOptions, "logStream" | "transports">;
    }
  | MembersMessage
  | { readonly t: "ingress"; readonly maxOngoing: number; readonly maxQueued: number }
  /** Stop taking requests; close the connections on `force`. */
  | { readonly t: "close" }
  | { readonly t: "force" };

/** What a front-door worker says. */
export type FromFrontDoor =
  | { readonly t: "hello" }
  | { readonly t: "listening"; readonly url: string }
  | { readonly t: "failed"; readonly e: SerializedError }
  | { readonly t: "subscribe"; readonly d: string };

markReplicaContext();

const send = (message: FromFrontDoor): void => {
  if (process.connected) process.send?.(message, undefined, undefined, () => undefined);
};
const outgoing = new OutgoingCalls(
  (message) => {
    if (message.t === "subscribe") send(message);
  },
  () => undefined,
);
let doors: FrontDoors | undefined;
let ingress: GraphIngress | undefined;
let force: (() => void) | undefined;

/** `tracing.otlpEndpoint`'s exporter in this worker, when set. */
let traceExport: TraceExport | undefined;

async function init(message: Extract<ToFrontDoor, { t: "init" }>): Promise<void> {
  await ensureTypeScriptLoader(message.moduleUrl);
  await import(message.moduleUrl);
  // After the module: an SDK its code registered wins over this one.
  const tracing = resolveTracing(message.options.tracing);
  if (tracing) traceExport = await exportTraces(tracing.otlpEndpoint, tracing.serviceName);
  const app = findApplication(message.moduleUrl, message.app);
  if (!app) throw new Error(`importing ${message.moduleUrl} did not build "${message.app}"`);
  for (const name of message.deployments) outgoing.subscribe(name);
  const graphIngress = new GraphIngress(app, (step, args, options) =>
    outgoing.call(step.deployment, step.method, args, options),
  );
  graphIngress.limit(message.ingress.maxOngoing, message.ingress.maxQueued);
  ingress = graphIngress;
  const schema = app.graph.input?.schema;
  const target: IngressTarget = {
    app,
    model: new OipModel(app.name, schema),
    bytesField: bytesFieldOf(schema),
    call: (input, options) => graphIngress.call(input, options),
    // For the application's own routes (build({ routes })), which this worker serves too.
    getHandle: (name) =>
      handleProxy(name, (method, args) =>
        outgoing.call(name, method, args),
      ) as DeploymentHandle<unknown>,
    ready: () => outgoing.ready(),
  };
  doors = await startFrontDoors(target, message.options);
  send({ t: "listening", url: doors.url });
}

process.on("message", (message: ToFrontDoor) => {
  switch (message.t) {
    case "init":
      init(message).catch((error: unknown) => send({ t: "failed", e: serializeError(error) }));
      return;
    case "members":
      outgoing.onMembers(message);
      return;
    case "ingress":
      ingress?.limit(message.maxOngoing, message.maxQueued);
      return;
    case "close":
      void doors
        ?.close(new Promise<void>((resolve) => (force = resolve)))
        .then(() => traceExport?.close())
        .finally(() => process.exit(0));
      if (!doors) process.exit(0);
      return;
    case "force":
      force?.();
      return;
  }
});
// The main process decides when this one stops (after draining it), not a terminal's Ctrl-C;
// the main process going away ends it.
process.on("SIGINT", () => undefined);
process.on("disconnect", () => process.exit(0));
// Messages sent before this listener existed would be lost: the main process waits for this.
send({ t: "hello" });
