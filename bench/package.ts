/**
 * `npm run bench package`: what `npm install` of the packed package costs a user: the
 * tarball, and node_modules of a fresh project (in the system's temporary directory) with
 * the package and its dependencies, without and with the optional peers (sharp, gRPC, tsx).
 * Before the package was compiled and split from the examples, the same install was 434 MB
 * (with onnxruntime's CUDA download skipped), and failed without that skip.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { machine } from "./stats.js";

const exec = promisify(execFile);
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const env = Object.fromEntries(
  Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key) && key !== "NODE_OPTIONS"),
);

async function size(path: string): Promise<number> {
  const info = await stat(path);
  if (!info.isDirectory()) return info.size;
  let total = 0;
  for (const entry of await readdir(path, { withFileTypes: true, recursive: true }))
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name))).size;
  return total;
}

const mb = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MB`;

export async function main(): Promise<string> {
  console.log(`package — ${machine()}\n`);
  const work = await mkdtemp(join(tmpdir(), "tributary-bench-package-"));
  try {
    const { stdout } = await exec("npm", ["pack", "--json", "--pack-destination", work], {
      cwd: ROOT,
      env,
      maxBuffer: 16 << 20,
    });
    const [packed] = JSON.parse(stdout.slice(stdout.indexOf("["))) as [
      { filename: string; size: number; unpackedSize: number; entryCount: number },
    ];
    const project = join(work, "project");
    await exec("mkdir", [project]);
    await writeFile(
      join(project, "package.json"),
      JSON.stringify({ private: true, type: "module" }),
    );
    const install = async (...names: string[]) => {
      await exec("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", ...names], {
        cwd: project,
        env,
        maxBuffer: 16 << 20,
      });
      const modules = join(project, "node_modules");
      const entries = await readdir(modules);
      const packages = (
        await Promise.all(
          entries.map(async (name) =>
            name.startsWith("@")
              ? (await readdir(join(modules, name))).map((sub) => `${name}/${sub}`)
              : name.startsWith(".")
                ? []
                : [name],
          ),
        )
      ).flat();
      const sizes = await Promise.all(
        packages.map(async (p) => [p, await size(join(modules, p))] as const),
      );
      sizes.sort((a, b) => b[1] - a[1]);
      return { total: await size(modules), count: packages.length, largest: sizes.slice(0, 5) };
    };
    const plain = await install(join(work, packed.filename));
    const full = await install("sharp", "@grpc/grpc-js", "@grpc/proto-loader", "tsx");
    const table = [
      "### The installed package (a fresh project, `npm install <tarball>`)",
      "",
      "| what | size | target |",
      "| --- | ---: | --- |",
      `| tarball (${packed.entryCount} files) | ${mb(packed.size)} (unpacked ${mb(packed.unpackedSize)}) | — |`,
      `| node_modules: tributary and its dependencies (${plain.count} packages) | ${mb(plain.total)} | < 30 MB |`,
      `| node_modules with sharp, @grpc/grpc-js, @grpc/proto-loader, tsx (${full.count} packages) | ${mb(full.total)} | — |`,
      "",
      `Largest dependencies without the optional peers: ${plain.largest.map(([name, bytes]) => `${name} ${mb(bytes)}`).join(", ")}.`,
      "Sizes are the bytes of the files (what `npm pack` calls unpacked size), not disk blocks.",
      "",
    ].join("\n");
    console.log(table);
    return table;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
