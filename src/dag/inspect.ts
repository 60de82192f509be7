/**
 * Graph inspection: a JSON description of a graph and a Mermaid flowchart of it.
 */
import { zod } from "../zod.js";
import { resolveOptions, type ResolvedDeploymentOptions } from "../options.js";
import { GraphBuildError } from "../errors.js";
import { formatCallSite } from "./call-site.js";
import { compileGraph, type CompiledGraph } from "./compile.js";
import { shortLabel } from "./label.js";
import { nestedNodes, stateOf, type NodeState } from "./state.js";

export type NodeKind = NodeState["kind"];

export interface NodeDescription {
  /** `n0`, `n1`, … in topological order (dependencies first). */
  readonly id: string;
  readonly kind: NodeKind;
  /** `m1.forward()`, `input.image`, `InputNode`, … */
  readonly label: string;
  /** The deployment a call or class node belongs to. */
  readonly deployment?: string;
  /** The method a call node calls (absent for function deployments). */
  readonly method?: string;
  /** The property an attribute node reads. */
  readonly key?: string;
  /** Where user code created or bound the node (`file:line:column`). */
  readonly site: string;
}

export interface EdgeDescription {
  readonly from: string;
  readonly to: string;
  /** `argument`: a call or output argument; `constructor`: a handle bound into a constructor; `instance`: the class a method call runs on; `attribute`: the value an attribute is read from. */
  readonly role: "argument" | "constructor" | "instance" | "attribute" | "selector" | "arm";
  /**
   * The argument's position (or the output's key) for `argument` and `constructor` edges;
   * the arm's key for `arm` edges (`selector`: the value choosing a branch's arm).
   */
  readonly index?: number | string;
}

export interface DeploymentDescription {
  readonly name: string;
  readonly kind: "function" | "class";
  /** The function's or class's own name. */
  readonly source: string;
  /** Methods the graph calls (class deployments). */
  readonly methods: readonly string[];
  readonly options: ResolvedDeploymentOptions;
}

export interface GraphDescription {
  readonly nodes: readonly NodeDescription[];
  readonly edges: readonly EdgeDescription[];
  readonly deployments: readonly DeploymentDescription[];
  /** The id of the node whose value the graph returns. */
  readonly output: string;
  /** JSON Schema of the input, when the InputNode has a zod schema. */
  readonly inputSchema?: unknown;
}

function rootState(node: unknown, caller: string): NodeState {
  const state = stateOf(node);
  if (!state) throw new GraphBuildError(`${caller}() expects a graph node, got ${typeof node}.`);
  return state;
}

function describeCompiled(graph: CompiledGraph): GraphDescription {
  const ids = new Map(graph.nodes.map((n, i) => [n, `n${i}`]));
  const id = (n: NodeState): string => ids.get(n)!;
  const nodes = graph.nodes.map((n): NodeDescription => {
    const deployment =
      n.kind === "class" || n.kind === "call"
        ? graph.nameOf.get(n.kind === "call" && n.instance ? n.instance : n)
        : undefined;
    return {
      id: id(n),
      kind: n.kind,
      label: shortLabel(n, deployment),
      ...(deployment !== undefined && { deployment }),
      ...(n.kind === "call" && n.method !== undefined && { method: n.method }),
      ...(n.kind === "attribute" && { key: n.key }),
      site: formatCallSite(n.site),
    };
  });
  const edges: EdgeDescription[] = [];
  for (const n of graph.nodes) {
    if (n.kind === "attribute") edges.push({ from: id(n.parent), to: id(n), role: "attribute" });
    if (n.kind === "call" && n.instance)
      edges.push({ from: id(n.instance), to: id(n), role: "instance" });
    if (n.kind === "call" || n.kind === "class" || n.kind === "multi") {
      n.args.forEach((arg, i) => {
        const s = stateOf(arg);
        const index = n.kind === "multi" && n.keys ? n.keys[i]! : i;
        if (!s) {
          // Class nodes inside an array or object constructor argument.
          if (n.kind === "class") {
            for (const nested of nestedNodes(arg))
              edges.push({ from: id(nested.state), to: id(n), role: "constructor", index });
          }
          return;
        }
        edges.push({
          from: id(s),
          to: id(n),
          role: n.kind === "class" ? "constructor" : "argument",
          index,
        });
      });
    }
  }
  for (const n of graph.nodes) {
    if (n.kind === "branch") edges.push({ from: id(n.selector), to: id(n), role: "selector" });
    if (n.kind === "branch" || n.kind === "split") {
      n.arms.forEach((arm, i) =>
        edges.push({ from: id(arm), to: id(n), role: "arm", index: n.keys[i]! }),
      );
    }
  }
  const deployments = graph.deployments.map((d): DeploymentDescription => ({
    name: d.name,
    kind: d.deployment.kind,
    source: d.deployment.target.name,
    methods: d.methods,
    options: resolveOptions(d.deployment.config),
  }));
  const schema = graph.input?.schema;
  return {
    nodes,
    edges,
    deployments,
    output: id(graph.nodes[graph.nodes.length - 1]!),
    ...(schema && {
      inputSchema: zod().toJSONSchema(schema, { unrepresentable: "any", io: "input" }),
    }),
  };
}

/**
 * A JSON description of the graph ending at `node`: its nodes, edges and deployments.
 *
 * @example
 * const { deployments } = describeGraph(out);
 * deployments.map((d) => d.name); // ["m1", "m2", "Ensemble", "combine"]
 */
export function describeGraph(node: unknown): GraphDescription {
  return describeCompiled(compileGraph(rootState(node, "describeGraph")));
}

const SHAPES: Record<NodeKind, [string, string]> = {
  input: ['[/"', '"/]'],
  attribute: ['["', '"]'],
  call: ['("', '")'],
  class: ['[["', '"]]'],
  multi: ['{{"', '"}}'],
  branch: ['{"', '"}'],
  split: ['>"', '"]'],
};

/**
 * A Mermaid flowchart of the graph ending at `node`.
 *
 * @example
 * console.log(toMermaid(out)); // flowchart LR …
 */
export function toMermaid(node: unknown): string {
  const graph = describeGraph(node);
  const escape = (text: string): string => text.replace(/"/g, "#quot;");
  const lines = ["flowchart LR"];
  for (const n of graph.nodes) {
    const [open, close] = SHAPES[n.kind];
    lines.push(`  ${n.id}${open}${escape(n.label)}${close}`);
  }
  for (const e of graph.edges) {
    lines.push(
      e.role === "instance" || e.role === "constructor"
        ? `  ${e.from} -.-> ${e.to}`
        : e.role === "arm"
          ? `  ${e.from} -->|${escape(String(e.index))}| ${e.to}`
          : `  ${e.from} --> ${e.to}`,
    );
  }
  return lines.join("\n");
}
