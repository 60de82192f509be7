/**
 * @internal How a node is named in errors, `util.inspect` and graph descriptions.
 */
import { formatCallSite } from "./call-site.js";
import type { NodeState } from "./state.js";

/** `input.image[0]` for an attribute node (the path from the input). */
function attributePath(state: NodeState): string {
  if (state.kind !== "attribute") return state.kind === "input" ? "input" : shortLabel(state);
  const parent = attributePath(state.parent);
  return /^\d+$/.test(state.key) ? `${parent}[${state.key}]` : `${parent}.${state.key}`;
}

/**
 * A node's label without its location. `deploymentName` overrides the deployment's own
 * name once names are assigned.
 */
export function shortLabel(state: NodeState, deploymentName?: string): string {
  switch (state.kind) {
    case "input":
      return "InputNode";
    case "attribute":
      return attributePath(state);
    case "call": {
      const name = deploymentName ?? state.deployment.name;
      return state.method === undefined ? `${name}()` : `${name}.${state.method}()`;
    }
    case "class": {
      const name = deploymentName ?? state.deployment.name;
      const source = state.deployment.target.name;
      return name === source ? `class ${name}` : `${name} (class ${source || "anonymous"})`;
    }
    case "multi":
      return "MultiOutputNode";
    case "branch":
      return `branch(${shortLabel(state.selector)})`;
    case "split":
      return `split "${state.name}"`;
  }
}

/** A node's label with where user code created it. */
export function describeNode(state: NodeState, deploymentName?: string): string {
  const verb = state.kind === "call" || state.kind === "class" ? "bound" : "created";
  return `${shortLabel(state, deploymentName)} (${verb} at ${formatCallSite(state.site)})`;
}
