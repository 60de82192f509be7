// `npm pack` (prepack, postpack): the package.json in the tarball leaves out what only this
// repository uses. Its scripts would reach a user's project: npm 11 lists the `prepare`
// script of an installed tarball under "install scripts not yet covered by allowScripts"
// (it builds dist/ here, which the tarball already has). `strip` keeps the file as it is
// in a backup and writes the lean one; `restore` puts the backup back (a pack that failed
// half way is restored by the next `strip`).
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";

const manifest = new URL("../package.json", import.meta.url);
const backup = new URL("../.package.json.packing", import.meta.url);

const restore = () => {
  if (existsSync(backup)) renameSync(backup, manifest);
};

if (process.argv[2] === "strip") {
  restore();
  const text = readFileSync(manifest, "utf8");
  writeFileSync(backup, text);
  const { scripts: _scripts, workspaces: _workspaces, ...shipped } = JSON.parse(text);
  writeFileSync(manifest, `${JSON.stringify(shipped, null, 2)}\n`);
} else if (process.argv[2] === "restore") {
  restore();
} else {
  console.error("usage: node scripts/pack-manifest.mjs strip|restore");
  process.exit(2);
}
