/**
 * @internal The node objects users hold. `InputNode` and its attributes are Proxies so that
 * `input.image` and `input[0]` make attribute nodes; class nodes are Proxies so that
 * `classNode.method.bind(...)` works for any method. Because a Proxy forwards `this`,
 * these classes keep their state under a symbol rather than in `#private` fields (which
 * throw when reached through a Proxy).
 */
import { inspect } from "node:util";
import { GraphBuildError } from "../errors.js";
import { userCallSite } from "./call-site.js";
import type { DeploymentImpl } from "./deployment-impl.js";
import { disposeExecutor, executorFor } from "./executor.js";
import { describeNode } from "./label.js";
import { STATE, type ClassState, type HasState, type NodeState } from "./state.js";

/** An executable node: every node but a class node. */
export class NodeImpl implements HasState {
  readonly [STATE]: NodeState;

  constructor(state: NodeState) {
    this[STATE] = state;
  }

  async execute(input?: unknown): Promise<unknown> {
    return executorFor(this[STATE]).execute(input);
  }

  async dispose(): Promise<void> {
    await disposeExecutor(this[STATE]);
  }

  [inspect.custom](): string {
    return `[${describeNode(this[STATE])}]`;
  }
}

const attributeNodes = new WeakMap<NodeState, Map<string, NodeImpl>>();

const attributeHandler: ProxyHandler<NodeImpl> = {
  get(target, key, receiver) {
    if (typeof key === "symbol" || key === "execute" || key === "dispose") {
      return Reflect.get(target, key, receiver) as unknown;
    }
    if (key === "then") return undefined; // a node is not a promise
    return attributeOf(target[STATE], key);
  },
};

function attributeOf(parent: NodeState, key: string): NodeImpl {
  let byKey = attributeNodes.get(parent);
  if (!byKey) attributeNodes.set(parent, (byKey = new Map<string, NodeImpl>()));
  let node = byKey.get(key);
  if (!node) {
    node = new Proxy(
      new NodeImpl({ kind: "attribute", parent, key, site: userCallSite() }),
      attributeHandler,
    );
    byKey.set(key, node);
  }
  return node;
}

function isSchema(value: unknown): boolean {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as { safeParseAsync?: unknown }).safeParseAsync === "function"
  );
}

/** The graph's input. Property and index access give attribute nodes. */
export class InputNodeImpl extends NodeImpl {
  constructor(schema?: unknown) {
    if (schema !== undefined && !isSchema(schema)) {
      throw new GraphBuildError(
        "new InputNode(schema) expects a zod schema (for example z.object({ … })); pass nothing for an unchecked input.",
      );
    }
    super({ kind: "input", schema: schema as never, site: userCallSite() });
    return new Proxy(this, attributeHandler);
  }
}

/** Several results gathered into a tuple (array form) or an object (record form). */
export class MultiOutputNodeImpl extends NodeImpl {
  constructor(items: unknown) {
    const isArray = Array.isArray(items);
    const isRecord =
      typeof items === "object" &&
      items !== null &&
      !isArray &&
      [Object.prototype, null].includes(Object.getPrototypeOf(items) as object | null);
    if (!isArray && !isRecord) {
      throw new GraphBuildError(
        "new MultiOutputNode() expects an array of nodes ([a, b]) or an object of nodes ({ a, b }).",
      );
    }
    const record = items as Record<string, unknown>;
    super({
      kind: "multi",
      keys: isArray ? undefined : Object.keys(record),
      args: isArray ? [...(items as unknown[])] : Object.values(record),
      site: userCallSite(),
    });
  }
}

/** A bound class: `node.method.bind(...)` makes call nodes; not executable itself. */
class ClassNodeImpl implements HasState {
  readonly [STATE]: ClassState;

  constructor(state: ClassState) {
    this[STATE] = state;
  }

  [inspect.custom](): string {
    return `[${describeNode(this[STATE])}]`;
  }
}

interface MethodBinder {
  bind: (...args: unknown[]) => NodeImpl;
}
const methodBinders = new WeakMap<ClassState, Map<string, MethodBinder>>();

const classHandler: ProxyHandler<ClassNodeImpl> = {
  get(target, key, receiver) {
    if (typeof key === "symbol") return Reflect.get(target, key, receiver) as unknown;
    if (key === "then") return undefined;
    const state = target[STATE];
    let byMethod = methodBinders.get(state);
    if (!byMethod) methodBinders.set(state, (byMethod = new Map<string, MethodBinder>()));
    let binder = byMethod.get(key);
    if (!binder) {
      binder = { bind: (...args: unknown[]) => createCallNode(state.deployment, state, key, args) };
      byMethod.set(key, binder);
    }
    return binder;
  },
};

export function createClassNode(deployment: DeploymentImpl, args: unknown[]): HasState {
  const state: ClassState = { kind: "class", deployment, args, site: userCallSite() };
  return new Proxy(new ClassNodeImpl(state), classHandler);
}

export function createCallNode(
  deployment: DeploymentImpl,
  instance: ClassState | undefined,
  method: string | undefined,
  args: unknown[],
): NodeImpl {
  return new NodeImpl({ kind: "call", deployment, instance, method, args, site: userCallSite() });
}
