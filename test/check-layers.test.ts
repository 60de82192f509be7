import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";

/** Runs `npm run check:layers`'s script on a tree of `files` (path → source). */
async function checkLayers(
  files: Record<string, string>,
): Promise<{ status: number | null; output: string }> {
  const root = await mkdtemp(join(tmpdir(), "tributary-layers-"));
  try {
    for (const [path, text] of Object.entries(files)) {
      await mkdir(dirname(join(root, path)), { recursive: true });
      await writeFile(join(root, path), text);
    }
    const run = spawnSync(process.execPath, ["scripts/check-layers.mjs", root], {
      encoding: "utf8",
      timeout: 30_000,
    });
    return { status: run.status, output: run.stdout + run.stderr };
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

const base = {
  "errors.ts": "export class E extends Error {}\n",
  "wire/codec.ts": 'import { E } from "../errors.js";\nexport const codec = E;\n',
  "data/router.ts": 'import { codec } from "../wire/codec.js";\nexport const r = codec;\n',
  "control/controller.ts": 'import { r } from "../data/router.js";\nexport const c = r;\n',
  "index.ts": 'export { c } from "./control/controller.js";\n',
};

describe("npm run check:layers", { timeout: 60_000 }, () => {
  test("layers - imports that point down pass; an import in a string or a comment is not one", async () => {
    const { status, output } = await checkLayers({
      ...base,
      "data/template.ts":
        '// import { c } from "../control/controller.js";\n' +
        'export const page = `\nimport { c } from "../control/controller.js";\n`;\n',
    });
    assert.equal(status, 0, output);
    assert.match(output, /every import points down or sideways, and no folders form a cycle/);
  });

  for (const [kind, line] of [
    ["named", 'import { c } from "../control/controller.js";'],
    ["side-effect", 'import "../control/controller.js";'],
    ["type-only", 'import type { c } from "../control/controller.js";'],
    ["dynamic", 'void import("../control/controller.js");'],
    ["dynamic, template", "void import(`../control/controller.js`);"],
    ["the package's own name", 'import { c } from "tributary";'],
  ] as const) {
    test(`layers - an upward ${kind} import fails the check`, async () => {
      const { status, output } = await checkLayers({
        ...base,
        "data/up.ts": `${line}\nexport {};\n`,
      });
      assert.equal(status, 1, output);
      assert.match(output, /data\/up\.ts \(data\) imports \S+ \((control|api)\): data is below/);
    });
  }

  test("layers - a cycle between folders of one rank (the foundation and wire) fails the check", async () => {
    const { status, output } = await checkLayers({
      ...base,
      "errors.ts": 'import { codec } from "./wire/codec.js";\nexport class E extends Error {}\n',
    });
    assert.equal(status, 1, output);
    assert.match(
      output,
      /a cycle between folders (foundation → wire → foundation|wire → foundation → wire)/,
    );
  });
});
