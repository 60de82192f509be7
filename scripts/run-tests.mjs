// Runs every `*.test.ts` under src/, test/ and examples/ with node:test through tsx, against
// the TypeScript sources (test/package.test.ts checks the built package).
// Node 20's `--test` does not expand globs or look for .ts files, so the list is built here.
// Usage: npm test [-- <substring> ...]   (only files whose path contains a substring)
//        TEST_CONCURRENCY=1 npm test      (one file at a time; the default is two)
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";

/**
 * Inside the repository, "tributary" resolves to the TypeScript sources (the package's
 * "tributary-source" export condition), so tests need no build. NODE_OPTIONS carries the
 * condition to every worker thread and child process the tests start.
 */
function withSourceCondition(options = "") {
  return options.includes("--conditions=tributary-source")
    ? options
    : `${options} --conditions=tributary-source`.trim();
}

const roots = ["src", "test", "examples"];
const filters = process.argv.slice(2);
const files = roots
  .flatMap((root) => {
    try {
      return readdirSync(root, { recursive: true, encoding: "utf8" }).map((f) => join(root, f));
    } catch {
      return [];
    }
  })
  .filter((f) => f.endsWith(".test.ts") && !f.includes("node_modules"))
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort();

if (files.length === 0) {
  console.error(`no test files matched ${filters.join(", ") || "(all)"}`);
  process.exit(1);
}

/**
 * Test files run two at a time (TEST_CONCURRENCY sets another number; 1 runs them one by
 * one). node:test's default is one fewer than the cores, one file at a time on a 2-core CI
 * machine, where most files spend their time waiting (replicas starting, timeouts, NATS):
 * two at once took the suite from about 16 to 12 minutes there, every test passing.
 */
const concurrency = Number(process.env.TEST_CONCURRENCY ?? 2);
if (!Number.isInteger(concurrency) || concurrency < 1) {
  console.error(
    `TEST_CONCURRENCY must be a whole number of at least 1, not ${process.env.TEST_CONCURRENCY}`,
  );
  process.exit(1);
}

const result = spawnSync(
  process.execPath,
  [
    "--import",
    "tsx",
    "--test",
    "--test-reporter=spec",
    "--test-timeout=300000",
    `--test-concurrency=${concurrency}`,
    ...files,
  ],
  {
    stdio: "inherit",
    env: { ...process.env, NODE_OPTIONS: withSourceCondition(process.env.NODE_OPTIONS) },
  },
);
process.exit(result.status ?? 1);
