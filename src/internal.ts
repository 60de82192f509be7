/**
 * `tributary/internal`: the pieces behind the public API that the project's own tests,
 * benchmarks and tools use (as nats.js ships `./internal`). Nothing here is covered by
 * semantic versioning; applications import from `tributary` only.
 *
 * @example
 * import { parseConfig } from "tributary/internal";
 * const config = parseConfig("applications: []", "serve.yaml");
 *
 * @module
 */
export { resolveOptions } from "./options.js";
export { ConfigError, parseConfig } from "./config/load.js";
export {
  BuilderArgsError,
  codeMismatch,
  importApplication,
  moduleVersion,
  resolveApplication,
} from "./config/resolve.js";
export { parseBuilderArgs } from "./cli/run.js";
export { applicationToYaml } from "./config/write.js";
export { Instance } from "./cli/instance.js";
export { runPlan } from "./dag/run-plan.js";
export { loadInferenceService } from "./ingress/grpc.js";
export { Autoscaler } from "./control/autoscaler.js";
export { transferPlan } from "./dag/transfer-plan.js";
export { connectNats, NatsMailbox } from "./data/transport/nats-link.js";
export { ClusterHead } from "./control/cluster.js";
export { NODE_LEAVING, subjects } from "./wire/cluster.js";
export type { FromNode, NodeRecord, ToNode } from "./wire/cluster.js";
export type { MailboxOptions, NatsConnectOptions } from "./data/transport/nats-link.js";
export { ensureTypeScriptLoader, isTypeScript } from "./app/typescript-loader.js";
