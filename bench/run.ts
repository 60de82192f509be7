/**
 * `npm run bench` lists the benchmarks; `npm run bench <name>` runs one;
 * `npm run bench -- --report` runs all and adds their tables to the top of bench/RESULTS.md.
 */
import { readFile, writeFile } from "node:fs/promises";
import { machine, withRunOnTop } from "./stats.js";

const BENCHMARKS: Record<
  string,
  { about: string; load: () => Promise<{ main: () => Promise<string> }> }
> = {
  handle: {
    about: "empty handle call to a thread replica vs a raw MessagePort round trip",
    load: () => import("./handle.js"),
  },
  graph: {
    about: "the compiled graph path vs the same diamond written by hand with handles",
    load: () => import("./graph.js"),
  },
  tensor: {
    about: "a 1 MiB Float32Array through a hop and back: transferred vs structured-cloned",
    load: () => import("./tensor.js"),
  },
  batching: {
    about: "one replica with dynamic batching on vs off (synthetic sub-linear model)",
    load: () => import("./batching.js"),
  },
  scale: {
    about: "100-node plan cost per request; start time and memory per replica for many deployments",
    load: () => import("./scale.js"),
  },
  package: {
    about: "the packed package installed into a fresh project: tarball and node_modules sizes",
    load: () => import("./package.js"),
  },
  ocr: {
    about: "the served OCR pipeline (PP-OCRv4) vs a hand-written onnxruntime script, same images",
    load: () => import("./ocr.js"),
  },
  cluster: {
    about:
      "NATS: raw request/reply and TCP vs NatsMailbox (small, 1 MiB, 16 MiB), a real nats-server",
    load: () => import("./cluster.js"),
  },
  http: {
    about:
      "wrk: a four-deployment no-op diamond (one no-op deployment; the diamond without Tributary) over HTTP vs a bare Fastify hello-world",
    load: () => import("./http.js"),
  },
};

const args = process.argv.slice(2);
const report = args.includes("--report");
const names = args.filter((a) => !a.startsWith("--"));

if (names.length === 0 && !report) {
  console.log("Benchmarks (npm run bench <name>, or npm run bench -- --report for all):");
  for (const [name, { about }] of Object.entries(BENCHMARKS))
    console.log(`  ${name.padEnd(10)} ${about}`);
  process.exit(0);
}

const chosen = report ? Object.keys(BENCHMARKS) : names;
const sections: string[] = [];
for (const name of chosen) {
  const bench = BENCHMARKS[name];
  if (!bench) {
    console.error(`unknown benchmark "${name}"; run npm run bench to list them`);
    process.exit(1);
  }
  sections.push(await (await bench.load()).main());
}
if (report) {
  const file = new URL("./RESULTS.md", import.meta.url);
  const before = await readFile(file, "utf8").catch(() => "# Benchmark results\n");
  await writeFile(file, withRunOnTop(before, machine(), sections));
  console.log("added the tables to the top of bench/RESULTS.md");
}
