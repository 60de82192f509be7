/**
 * Tributary: serve machine-learning pipelines written in TypeScript.
 *
 * @example
 * import { z } from "zod";
 * import { deployment, InputNode } from "tributary";
 *
 * const double = deployment(async function double(x: number) { return 2 * x; });
 * const input = new InputNode(z.object({ x: z.number() }));
 * const out = double.bind(input.x);
 * await out.execute({ x: 21 }); // 42
 */
export { deployment, InputNode, MultiOutputNode } from "./dag/deployment.js";
export type { InputNodeConstructor, MultiOutputNodeConstructor } from "./dag/deployment.js";
export { branch, split } from "./dag/choice.js";
export type { ChoiceNode, SplitOptions } from "./dag/choice.js";
export { describeGraph, toMermaid } from "./dag/inspect.js";
export { Application, build, INGRESS } from "./app/application.js";
export type {
  ApplicationConfig,
  BuildOptions,
  SplitConfig,
  SplitWeights,
} from "./app/application.js";
export { appBuilder } from "./app/builder.js";
export type { ApplicationBuilder, BuilderArgs } from "./app/builder.js";
export type {
  RouteContext,
  RouteGraphInput,
  Routes,
  RouteServer,
  ZodTypeProvider,
} from "./app/routes.js";
export { run, Server } from "./runtime/server.js";
export type {
  GraphHandle,
  GraphInput,
  RequestOptions,
  RunOptions,
  ServerStatus,
} from "./runtime/server.js";
export { requestContext } from "./data/context.js";
export { batch } from "./data/batch.js";
export type { BatchedFunction, BatchOptions, BatchStats } from "./data/batch.js";
export { multiplexed } from "./data/multiplex.js";
export type { MultiplexedModels, MultiplexOptions, MultiplexStats } from "./data/multiplex.js";
export { withHandleOptions } from "./dag/handle.js";
export type { HandleOptions } from "./dag/handle.js";
export { image, tensor } from "./ingress/adapters.js";
export { DATATYPES } from "./ingress/tensors.js";
export type { Datatype, Tensor, TypedArray } from "./ingress/tensors.js";
export type { RequestContext } from "./data/context.js";
export type {
  ApplicationStatus,
  ApplicationStatusInfo,
  DeploymentStatus,
  DeploymentStatusInfo,
  ReplicaStatusInfo,
} from "./status.js";
export type { ReplicaState } from "./control/replica-client.js";
export type {
  DeploymentDescription,
  EdgeDescription,
  GraphDescription,
  NodeDescription,
  NodeKind,
} from "./dag/inspect.js";
export type {
  AttributeNode,
  BindArg,
  BindArgs,
  CallNode,
  ClassDeployment,
  ClassNode,
  ConstructorArg,
  Deployment,
  DeploymentHandle,
  FunctionDeployment,
  GraphNode,
  MethodBinder,
  Producer,
} from "./dag/types.js";
export { DEFAULT_OPTIONS, resolveOptions, toMilliseconds } from "./options.js";
export type {
  DeploymentOptions,
  Duration,
  JsonValue,
  ResolvedAutoscaling,
  ResolvedDeploymentOptions,
} from "./options.js";
export {
  ERROR_CODES,
  BackPressureError,
  QueueTimeoutError,
  CancelledError,
  DeployFailedError,
  NotFoundError,
  ReplicaDiedError,
  ServerClosedError,
  TimeoutError,
  GraphBuildError,
  GraphExecutionError,
  OptionsError,
  TributaryError,
  ValidationError,
  grpcStatusOf,
  httpStatusOf,
} from "./errors.js";
export type { ErrorCode, ValidationIssue } from "./errors.js";
