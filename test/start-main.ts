import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

/** The repository's root. */
export const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** A running example `main.ts`. */
export interface RunningMain {
  /** Everything it printed so far. */
  output(): string;
  /** Sends Ctrl-C (SIGINT) and resolves with its exit code. */
  interrupt(): Promise<number | null>;
  /** Kills it if it is still running. */
  kill(): void;
}

/**
 * Starts `node --import tsx <file>` (relative to the root) with PORT=0 and waits until its
 * output matches `ready`; fails naming `label` if it exits or `timeoutMs` passes first.
 */
export async function startMain(
  file: string,
  ready: RegExp,
  label: string,
  timeoutMs: number,
): Promise<RunningMain> {
  const child = spawn(process.execPath, ["--import", "tsx", file], {
    cwd: ROOT,
    env: { ...process.env, PORT: "0" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const running: RunningMain = {
    output: () => output,
    interrupt: () => {
      const exited = new Promise<number | null>((resolve) =>
        child.once("exit", (code) => resolve(code)),
      );
      child.kill("SIGINT");
      return exited;
    },
    kill: () => void child.kill("SIGKILL"),
  };
  try {
    const deadline = Date.now() + timeoutMs;
    while (!ready.test(output)) {
      if (Date.now() > deadline || child.exitCode !== null)
        assert.fail(`${label} did not come up:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } catch (error) {
    running.kill();
    throw error;
  }
  return running;
}
