// npm run check:snippets: every ```ts block of README.md, docs/*.md and examples/*/README.md
// is type-checked against the package, under the repository's strict tsconfig, so that no
// snippet goes stale. The blocks of one Markdown file are modules of one directory: a
// block whose first line is `// name.ts` is written as name.ts (so another block can
// `import … from "./name.js"`), the others as snippet-N.ts. Nothing is run here; the
// README's API tour is also run by test/readme.test.ts.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const out = join(root, ".tmp", "snippets");
const markdown = [
  "README.md",
  ...readdirSync(join(root, "docs"))
    .filter((f) => f.endsWith(".md"))
    .map((f) => join("docs", f)),
  ...readdirSync(join(root, "examples"))
    .map((d) => join("examples", d, "README.md"))
    .filter((f) => existsSync(join(root, f))),
];

rmSync(out, { recursive: true, force: true });
const files = [];
/** Where each written file came from, to point errors at the Markdown line. */
const origins = new Map();
for (const doc of markdown) {
  const text = readFileSync(join(root, doc), "utf8");
  const dir = join(out, doc.replace(/[/.]/g, "_"));
  let n = 0;
  for (const match of text.matchAll(/^```ts\n([\s\S]*?)^```$/gm)) {
    const code = match[1];
    const line = text.slice(0, match.index).split("\n").length + 1;
    const named = /^\/\/ ([\w-]+\.ts)\b/.exec(code)?.[1];
    const file = join(dir, named ?? `snippet-${++n}.ts`);
    if (origins.has(file)) {
      console.error(`${doc}:${line}: a second block is named ${named}`);
      process.exit(1);
    }
    mkdirSync(dir, { recursive: true });
    writeFileSync(file, code);
    files.push(file);
    origins.set(file, { doc, line });
  }
}
if (files.length === 0) {
  console.error("no ```ts blocks found: is the README still there?");
  process.exit(1);
}

writeFileSync(
  join(out, "tsconfig.json"),
  JSON.stringify({
    extends: "../../tsconfig.json",
    compilerOptions: { noEmit: true, noUnusedLocals: false },
    include: ["**/*.ts"],
  }),
);
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
const result = spawnSync(
  process.execPath,
  [tsc, "-p", join(out, "tsconfig.json"), "--pretty", "false"],
  {
    cwd: root,
    encoding: "utf8",
  },
);
// Point each error at the Markdown file and line of its block.
const report = (result.stdout + result.stderr).replace(
  /^(\.tmp\/snippets\/[^(]+)\((\d+),(\d+)\)/gm,
  (whole, file, row, column) => {
    const origin = origins.get(join(root, file));
    return origin ? `${origin.doc}:${origin.line + Number(row) - 1}:${column}` : whole;
  },
);
if (result.status !== 0) {
  process.stderr.write(report);
  console.error(`\n${relative(root, out)}: the snippets above do not type-check.`);
  process.exit(1);
}
rmSync(out, { recursive: true, force: true });
console.log(`${files.length} TypeScript snippets in ${markdown.length} Markdown files type-check.`);
