import assert from "node:assert/strict";
import { test } from "node:test";
import { z } from "zod";
import {
  deployment,
  describeGraph,
  InputNode,
  toMermaid,
  type DeploymentHandle,
} from "../index.js";

class Model {
  forward(x: number): number {
    return x;
  }
}
class Ensemble {
  constructor(private readonly fallback: DeploymentHandle<Model>) {}
  combine(a: number, id: string): string {
    return `${id}:${a}`;
  }
}

function graph() {
  const input = new InputNode(z.object({ x: z.number(), id: z.string() }));
  const m1 = deployment(Model, { numReplicas: 2 }).options({ name: "m1" }).bind();
  const ens = deployment(Ensemble).bind(m1);
  return ens.combine.bind(m1.forward.bind(input.x), input.id);
}

test("describeGraph - lists nodes, edges and deployments with resolved options", () => {
  const description = describeGraph(graph());
  assert.deepEqual(
    description.nodes.map((n) => [n.id, n.kind, n.label]),
    [
      ["n0", "class", "m1 (class Model)"],
      ["n1", "class", "class Ensemble"],
      ["n2", "input", "InputNode"],
      ["n3", "attribute", "input.x"],
      ["n4", "call", "m1.forward()"],
      ["n5", "attribute", "input.id"],
      ["n6", "call", "Ensemble.combine()"],
    ],
  );
  assert.deepEqual(description.edges, [
    { from: "n0", to: "n1", role: "constructor", index: 0 },
    { from: "n2", to: "n3", role: "attribute" },
    { from: "n0", to: "n4", role: "instance" },
    { from: "n3", to: "n4", role: "argument", index: 0 },
    { from: "n2", to: "n5", role: "attribute" },
    { from: "n1", to: "n6", role: "instance" },
    { from: "n4", to: "n6", role: "argument", index: 0 },
    { from: "n5", to: "n6", role: "argument", index: 1 },
  ]);
  assert.equal(description.output, "n6");
  assert.deepEqual(
    description.deployments.map((d) => [
      d.name,
      d.kind,
      d.source,
      d.methods,
      d.options.numReplicas,
    ]),
    [
      ["m1", "class", "Model", ["forward"], 2],
      ["Ensemble", "class", "Ensemble", ["combine"], 1],
    ],
  );
  assert.match(description.nodes[4]!.site, /inspect\.test\.ts:\d+:\d+$/);
  assert.deepEqual((description.inputSchema as { required: string[] }).required, ["x", "id"]);
  // The description is plain JSON.
  assert.deepEqual(JSON.parse(JSON.stringify(description)), description);
});

test("toMermaid - draws every node and edge as a flowchart", () => {
  assert.equal(
    toMermaid(graph()),
    [
      "flowchart LR",
      '  n0[["m1 (class Model)"]]',
      '  n1[["class Ensemble"]]',
      '  n2[/"InputNode"/]',
      '  n3["input.x"]',
      '  n4("m1.forward()")',
      '  n5["input.id"]',
      '  n6("Ensemble.combine()")',
      "  n0 -.-> n1",
      "  n2 --> n3",
      "  n0 -.-> n4",
      "  n3 --> n4",
      "  n2 --> n5",
      "  n1 -.-> n6",
      "  n4 --> n6",
      "  n5 --> n6",
    ].join("\n"),
  );
});

test("describeGraph - rejects what is not a node", () => {
  assert.throws(() => describeGraph({}), /describeGraph\(\) expects a graph node/);
});
