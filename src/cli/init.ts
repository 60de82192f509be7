/**
 * `tributary init <dir>`: a small working project of the user's own. Two deployments (a
 * function and a class with a `userConfig`), `serve.yaml`, a local test that runs the
 * graph with `execute()`, and a `package.json` with `"type": "module"` and the scripts:
 * `npm install && npm test` passes and `npm start` (or `npx tributary run`) serves it.
 */
import { existsSync, readFileSync } from "node:fs";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The versions a new project starts with; `tributary` is the one running this command. */
function ownVersion(): string {
  const manifest = new URL("../../package.json", import.meta.url);
  return (JSON.parse(readFileSync(manifest, "utf8")) as { version: string }).version;
}

/**
 * Where the new project installs Tributary from. The registry's `tributary` is another
 * package, so `^version` would fail (or fetch the wrong one): until it is published, the
 * tarball `npm pack` wrote (in the checkout this command runs from), or the one the project
 * this command runs in installed (a `file:` dependency in a package.json above the working
 * directory). Undefined when neither is found: the user is told to install it by hand.
 */
export function tributarySource(cwd = process.cwd()): string | undefined {
  const root = dirname(fileURLToPath(new URL("../../package.json", import.meta.url)));
  const packed = join(root, `tributary-${ownVersion()}.tgz`);
  if (existsSync(packed)) return `file:${packed}`;
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    try {
      const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as {
        dependencies?: Record<string, string>;
        devDependencies?: Record<string, string>;
      };
      const spec = manifest.dependencies?.tributary ?? manifest.devDependencies?.tributary;
      if (spec?.startsWith("file:")) {
        const path = resolve(dir, spec.slice("file:".length));
        if (existsSync(path)) return `file:${path}`;
      }
    } catch {
      // no package.json here
    }
    if (dirname(dir) === dir) return undefined;
  }
}

function files(name: string, source: string | undefined): Record<string, string> {
  const packageJson = {
    name,
    version: "0.1.0",
    private: true,
    type: "module",
    scripts: {
      start: "tributary run serve.yaml",
      test: "node --import tsx --test app.test.ts",
      typecheck: "tsc --noEmit",
    },
    dependencies: { ...(source && { tributary: source }), zod: "^4.1.0" },
    devDependencies: {
      // The types of the Node.js that runs `init`.
      "@types/node": `^${process.versions.node.split(".")[0]}.0.0`,
      tsx: "^4.20.0",
      typescript: "^5.9.0",
    },
  };
  return {
    "package.json": JSON.stringify(packageJson, null, 2) + "\n",
    "tsconfig.json":
      JSON.stringify(
        {
          compilerOptions: {
            target: "ES2022",
            lib: ["ES2023", "ESNext.Disposable"],
            module: "NodeNext",
            moduleResolution: "NodeNext",
            types: ["node"],
            strict: true,
            skipLibCheck: true,
            noEmit: true,
          },
          include: ["*.ts"],
        },
        null,
        2,
      ) + "\n",
    "app.ts": `import { z } from "zod";
import { build, deployment, InputNode } from "tributary";

/** A function deployment: splits text into lowercase words. */
const tokenize = deployment(async function tokenize(text: string): Promise<string[]> {
  return text.toLowerCase().match(/[a-z']+/g) ?? [];
});

/** A class deployment: scores words against a lexicon that serve.yaml can change live. */
export class Sentiment {
  #positive = new Set(["good", "great", "love"]);
  #negative = new Set(["bad", "awful", "hate"]);

  reconfigure(config: { positive?: string[]; negative?: string[] }): void {
    if (config.positive) this.#positive = new Set(config.positive);
    if (config.negative) this.#negative = new Set(config.negative);
  }

  async score(words: string[]): Promise<{ words: number; score: number }> {
    let score = 0;
    for (const word of words) {
      if (this.#positive.has(word)) score += 1;
      if (this.#negative.has(word)) score -= 1;
    }
    return { words: words.length, score };
  }
}

// Build the graph at the module's top level: replicas import this module to find it.
const input = new InputNode(z.object({ text: z.string().min(1) }));
const scorer = deployment(Sentiment, { numReplicas: 2 }).bind();
export const graph = scorer.score.bind(tokenize.bind(input.text));
export const app = build(graph, { name: "sentiment", routePrefix: "/sentiment" });
`,
    "app.test.ts": `import assert from "node:assert/strict";
import { after, test } from "node:test";
import { graph } from "./app.js";

after(() => graph.dispose());

test("the graph scores a sentence, in this process", async () => {
  assert.deepEqual(await graph.execute({ text: "I love it, it is great" }), { words: 6, score: 2 });
});

test("the input is validated against its schema", async () => {
  await assert.rejects(graph.execute({ text: "" }), { code: "VALIDATION_FAILED" });
});
`,
    "serve.yaml": `# npm start serves this file; tributary deploy applies it to a running instance.
http: { host: 127.0.0.1, port: 8000 }
applications:
  - name: sentiment
    routePrefix: /sentiment
    importPath: ./app.ts:app
    deployments:
      - name: Sentiment
        numReplicas: 2
        userConfig: { positive: [good, great, love, fine], negative: [bad, awful, hate] }
`,
    ".gitignore": "node_modules/\n.tributary/\n",
    "README.md": `# ${name}

A Tributary application: \`tokenize\` → \`Sentiment.score\`, two deployments.

\`\`\`sh
${source ? "npm install" : "npm install /path/to/tributary-<version>.tgz   # npm pack in Tributary's checkout writes it"}
npm test        # runs the graph in-process (app.test.ts)
npm start       # serves serve.yaml at http://127.0.0.1:8000/sentiment
curl -X POST localhost:8000/sentiment -H 'content-type: application/json' -d '{"text":"I love it"}'
\`\`\`
`,
  };
}

/** Writes the project into `dir` (created if needed); refuses to overwrite any file. */
export async function initProject(
  dir: string,
): Promise<{ dir: string; files: string[]; source: string | undefined }> {
  const target = resolve(dir);
  const name =
    basename(target)
      .toLowerCase()
      .replace(/[^a-z0-9-._~]/g, "-")
      .replace(/^[-._]+/, "") || "tributary-app";
  const source = tributarySource();
  const contents = files(name, source);
  const clashes = Object.keys(contents).filter((file) => existsSync(join(target, file)));
  if (clashes.length > 0) {
    throw new Error(
      `${target} already has ${clashes.join(", ")}; choose a new or empty directory (nothing was written).`,
    );
  }
  await mkdir(target, { recursive: true });
  for (const [file, text] of Object.entries(contents)) await writeFile(join(target, file), text);
  return { dir: target, files: (await readdir(target)).sort(), source };
}
