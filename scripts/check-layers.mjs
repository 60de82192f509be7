// npm run check: the folders of src/ depend only downward (shared DESIGN.md §7). Each
// folder has a rank; a module may import from its own folder or from a lower rank, never
// from a higher one, so no import cycle between folders can form. Files directly under
// src/ are the foundation (errors, options, values), except the public entry points.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const LAYERS = [
  ["foundation", "wire"], // errors, options, status types; the message protocol
  ["dag"], // graph nodes, bind typing, compiled plan, local executor, handles
  ["app"], // applications, the registry replicas find them in, module loading
  ["data"], // routers, replica connections, transports, the replica host
  ["control"], // deployment state machines, reconcile, health, autoscaling, updates
  ["metrics"], // Prometheus series (prom-client) and the dashboard's view, read from control
  ["ingress"], // HTTP, gRPC and OIP front doors
  ["runtime"], // run() and Server: the control plane, data plane and front doors together
  ["config"], // serve.yaml
  ["cli"], // the tributary command and the instance
  ["api"], // index.ts and internal.ts
];
const rank = new Map(LAYERS.flatMap((names, i) => names.map((name) => [name, i])));
const root = resolve("src");
const layerOf = (file) => {
  const parts = relative(root, file).split(/[\\/]/);
  if (parts.length > 1) return parts[0];
  return /^(index|internal)\.ts$/.test(parts[0]) ? "api" : "foundation";
};

const files = [];
const walk = (dir) => {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (/\.(ts|mts|mjs)$/.test(name)) files.push(path);
  }
};
walk(root);

const problems = [];
for (const file of files) {
  const from = layerOf(file);
  if (!rank.has(from)) problems.push(`${relative(".", file)}: folder "${from}" has no layer`);
  const text = readFileSync(file, "utf8");
  const specifiers = text.matchAll(
    /(?:^|\n)\s*(?:import|export)[^;]*?from\s*["'](\.[^"']+)["']|import\(\s*["'](\.[^"']+)["']\s*\)/g,
  );
  for (const match of specifiers) {
    const specifier = match[1] ?? match[2];
    const to = layerOf(resolve(dirname(file), specifier));
    if (to === from) continue;
    // Tests sit beside their code and may import what they test from above.
    if (/\.test(-d)?\.ts$/.test(file)) continue;
    if ((rank.get(to) ?? Infinity) > (rank.get(from) ?? -1)) {
      problems.push(
        `${relative(".", file)} (${from}) imports ${specifier} (${to}): ${from} is below ${to}`,
      );
    }
  }
}
if (problems.length > 0) {
  console.error(`Layers: ${problems.length} import(s) point upward:\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
console.log(`Layers: ${files.length} modules, every import points down or sideways.`);
