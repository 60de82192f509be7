// npm run check: the folders of src/ depend only downward (shared DESIGN.md §7). Each
// folder has a rank; a module may import from its own folder or from a lower rank, never
// from a higher one, so no import cycle between folders can form. Files directly under
// src/ are the foundation (errors, options, values), except the public entry points.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import ts from "typescript";

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
// The folder to check: src/, or another given as the first argument (the tests give one).
const root = resolve(process.argv[2] ?? "src");
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

/** The package's own entry points, imported by name (`tributary`, `tributary/internal`). */
const SELF = { tributary: "api", "tributary/internal": "api", "tributary/cli": "cli" };

/**
 * Every module a file names, as TypeScript reads it (not in strings or comments):
 * `import … from`, `export … from`, `import type`, a bare `import "…"` for its side
 * effects, and `import("…")` or import(`…`) without interpolation.
 */
const specifiersOf = (text) =>
  ts.preProcessFile(text, true, true).importedFiles.map((file) => file.fileName);

const problems = [];
/** Folder-to-folder imports, to find cycles among folders of one rank too (foundation, wire). */
const edges = new Map();
for (const file of files) {
  const from = layerOf(file);
  if (!rank.has(from)) problems.push(`${relative(".", file)}: folder "${from}" has no layer`);
  const text = readFileSync(file, "utf8");
  for (const specifier of specifiersOf(text)) {
    let to;
    if (specifier.startsWith(".")) to = layerOf(resolve(dirname(file), specifier));
    else if (specifier in SELF) to = SELF[specifier];
    else if (specifier.startsWith("tributary/")) to = "api";
    else continue; // another package
    if (to === from) continue;
    // Tests sit beside their code and may import what they test from above.
    if (/\.test(-d)?\.ts$/.test(file)) continue;
    if (!edges.has(from)) edges.set(from, new Map());
    if (!edges.get(from).has(to))
      edges.get(from).set(to, `${relative(".", file)} imports ${specifier}`);
    if ((rank.get(to) ?? Infinity) > (rank.get(from) ?? -1)) {
      problems.push(
        `${relative(".", file)} (${from}) imports ${specifier} (${to}): ${from} is below ${to}`,
      );
    }
  }
}
// Imports within one rank point sideways: they may still close a cycle between two folders.
const visiting = new Set();
const done = new Set();
const visit = (folder, path) => {
  if (done.has(folder)) return;
  if (visiting.has(folder)) {
    const cycle = path.slice(path.indexOf(folder));
    const steps = cycle.map((f, i) => edges.get(f).get(cycle[i + 1] ?? folder));
    problems.push(`a cycle between folders ${[...cycle, folder].join(" → ")}: ${steps.join("; ")}`);
    return;
  }
  visiting.add(folder);
  for (const next of edges.get(folder)?.keys() ?? []) visit(next, [...path, folder]);
  visiting.delete(folder);
  done.add(folder);
};
for (const folder of edges.keys()) visit(folder, []);
if (problems.length > 0) {
  console.error(
    `Layers: ${problems.length} import(s) point upward or close a cycle:\n  ${problems.join("\n  ")}`,
  );
  process.exit(1);
}
console.log(
  `Layers: ${files.length} modules, every import points down or sideways, and no folders form a cycle.`,
);
