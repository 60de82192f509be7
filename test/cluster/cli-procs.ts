/** What the cluster tests share: CLI processes they start, and waiting for what they print. */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { BIN, ROOT } from "../cli/run-cli.js";

export interface Proc {
  readonly child: ChildProcess;
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export function spawnCli(args: string[]): Proc {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (d: Buffer) => (output = (output + d.toString()).slice(-50_000)));
  child.stderr.on("data", (d: Buffer) => (output = (output + d.toString()).slice(-50_000)));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    child,
    output: () => output,
    async stop(signal = "SIGTERM") {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

export type Truthy<T> = Exclude<T, false | null | undefined | 0 | "">;

export async function until<T>(
  what: string,
  ms: number,
  check: () => T | Promise<T>,
): Promise<Truthy<T>> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as Truthy<T>;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline)
      assert.fail(
        `timed out after ${ms} ms waiting until ${what}${last ? ` (${(last as Error).message})` : ""}`,
      );
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export interface Replica {
  id: string;
  state: string;
  node?: string;
}
export interface Status {
  url: string | null;
  nodes: {
    name: string;
    state: string;
    free: { cpus: number; custom: Record<string, number> };
    replicas: string[];
  }[];
  applications: Record<
    string,
    {
      status: string;
      deployments: Record<string, { status: string; message: string; replicas: Replica[] }>;
    }
  >;
}

export interface Where {
  node: string;
  replica: string;
}
export interface Answer {
  front: Where;
  back: Where & { sum?: number; length?: number };
}
