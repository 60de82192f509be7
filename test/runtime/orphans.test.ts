import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** Whether `pid` still runs (a zombie waiting to be reaped has stopped running). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const state = /^\d+ \(.*\) (\S)/.exec(readFileSync(`/proc/${pid}/stat`, "utf8"))?.[1];
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

test(
  "orphans - a process replica busy in a loop exits within a second of its parent's SIGKILL, and removes its socket file",
  { timeout: 60_000 },
  async () => {
    const parent = spawn(process.execPath, ["--import", "tsx", "test/fixtures/orphan-parent.ts"], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "inherit"],
    });
    let output = "";
    parent.stdout.on("data", (d: Buffer) => (output += d.toString()));
    let replica = 0;
    try {
      const deadline = Date.now() + 40_000;
      while (!/replica (\d+) spinning/.test(output)) {
        if (Date.now() > deadline || parent.exitCode !== null) assert.fail(output);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      replica = Number(/replica (\d+) spinning/.exec(output)![1]);
      assert.ok(alive(replica), "the replica runs");
      const exited = new Promise((resolve) => parent.once("exit", resolve));
      parent.kill("SIGKILL");
      await exited;
      const killed = Date.now();
      while (alive(replica) && Date.now() - killed < 5_000)
        await new Promise((resolve) => setTimeout(resolve, 20));
      const took = Date.now() - killed;
      assert.equal(alive(replica), false, "the orphan still runs after 5 s");
      assert.ok(took < 1_000, `the orphan ran on for ${took} ms`);
      // Its parent is gone, so the orphan removed its own socket file before it ended.
      const socket = join(tmpdir(), `tributary-${replica}-0.sock`);
      assert.equal(existsSync(socket), false, `${socket} was left behind`);
    } finally {
      parent.kill("SIGKILL");
      if (replica && alive(replica)) process.kill(replica, "SIGKILL");
    }
  },
);
