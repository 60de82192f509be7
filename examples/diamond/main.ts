/**
 * Runs the diamond pipeline in-process on a few inputs and prints the graph.
 * `npm start` runs this file.
 */
import { describeGraph, toMermaid } from "tributary";
import { pipeline } from "./app.js";

console.log("Graph (Mermaid):\n" + toMermaid(pipeline) + "\n");
console.log(
  "Deployments:",
  describeGraph(pipeline)
    .deployments.map(
      (d) => `${d.name} (${d.kind} ${d.source}, ${d.options.numReplicas} replica(s))`,
    )
    .join(", "),
);
for (const request of [
  { features: [3, 4, 0], id: "a" },
  { features: [1, 2, 3], scale: 2, id: "b" },
]) {
  console.log(JSON.stringify(request), "->", JSON.stringify(await pipeline.execute(request)));
}
try {
  await pipeline.execute({ features: [], id: 7 } as never);
} catch (error) {
  console.log("A bad request is rejected:", (error as Error).message);
}
await pipeline.dispose();
