import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

test("readme - the API tour runs as written", async () => {
  const readme = await readFile(join(ROOT, "README.md"), "utf8");
  const tour = /```ts\n(\/\/ tour\.ts\n[\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(tour, "README.md has a ```ts block that starts with // tour.ts");
  const run = /```ts\n(\/\/ try\.ts\n[\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(run, "README.md has a ```ts block that starts with // try.ts");
  // Inside the repository, so that `import … from "tributary"` resolves to this package.
  const dir = await mkdtemp(join(ROOT, ".tmp-readme-"));
  try {
    await writeFile(join(dir, "tour.ts"), tour);
    await writeFile(join(dir, "try.ts"), run);
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--import", "tsx", join(dir, "try.ts")],
      {
        cwd: ROOT,
        timeout: 30_000,
      },
    );
    assert.match(stdout, /\{ id: '42', score: 2 \}/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
