import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { removeSocket, sweepStaleSockets } from "./socket.js";

/** Runs `body` with the temporary folder (TMPDIR) set to a new, empty one, `dir`. */
async function inTemporaryFolder(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "tributary-sockets-"));
  const before = process.env.TMPDIR;
  process.env.TMPDIR = dir;
  try {
    await body(dir);
  } finally {
    if (before === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = before;
    await rm(dir, { recursive: true, force: true });
  }
}

/** The id of a process that has ended (and been reaped). */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
  await new Promise((resolve) => child.once("exit", resolve));
  return child.pid!;
}

test("sockets - the files of processes that no longer run, where nothing listens, are swept; the others are left", () =>
  inTemporaryFolder(async (dir) => {
    const dead = await deadPid();
    const names = {
      deadReplica: `tributary-${dead}-0.sock`,
      deadThread: `tributary-${dead}-3.sock`,
      deadBridge: `tributary-${dead}-b2.sock`,
      own: `tributary-${process.pid}-4.sock`,
      parent: `tributary-${process.ppid}-0.sock`,
      other: `${dead}.sock`,
    };
    for (const name of Object.values(names)) await writeFile(join(dir, name), "");
    // A live socket named for a process this one cannot see (another pid namespace's).
    const live = `tributary-${dead}-7.sock`;
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(join(dir, live), resolve));
    try {
      await sweepStaleSockets();
      assert.deepEqual(
        (await readdir(dir)).sort(),
        [live, names.other, names.own, names.parent].sort(),
        "only the ended process's files that nothing listens on are gone",
      );
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    // Once per process: a file that appears later is left to its owner.
    await writeFile(join(dir, names.deadReplica), "");
    await sweepStaleSockets();
    assert.ok((await readdir(dir)).includes(names.deadReplica));
  }));

test("sockets - removeSocket touches only a replica socket's own name in the temporary folder", () =>
  inTemporaryFolder(async (dir) => {
    const replica = join(dir, "tributary-123-0.sock");
    const elsewhere = join(dir, "sub");
    const strange = join(dir, "tributary-123-0.sock.bak");
    await writeFile(replica, "");
    await writeFile(strange, "");
    await writeFile(elsewhere, "");
    removeSocket(replica);
    removeSocket(strange);
    removeSocket(elsewhere);
    removeSocket(undefined);
    assert.deepEqual((await readdir(dir)).sort(), ["sub", "tributary-123-0.sock.bak"]);
  }));
