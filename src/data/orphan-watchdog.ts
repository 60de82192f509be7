/**
 * @internal A process replica ends itself within about `intervalMs` of its parent's death,
 * even while its own event loop is busy (a model in a loop, a long synchronous step): a
 * worker thread, which has its own event loop, polls `process.ppid` and kills the process
 * when the replica has been re-parented. IPC's `disconnect` event alone would wait for the
 * replica's event loop.
 */
import { Worker } from "node:worker_threads";

/** How often the watchdog looks at the parent process id. */
export const ORPHAN_CHECK_INTERVAL_MS = 100;

const WATCHDOG = `
const { workerData } = require("node:worker_threads");
const { rmSync } = require("node:fs");
const check = () => {
  if (process.ppid === workerData.parent) return;
  try {
    rmSync(workerData.socket, { force: true });
  } finally {
    process.kill(process.pid, "SIGKILL");
  }
};
setInterval(check, workerData.intervalMs);
check();
`;

/** `socket`: the replica's socket file, removed before the process ends itself. */
export function watchParent(socket: string, intervalMs = ORPHAN_CHECK_INTERVAL_MS): void {
  const worker = new Worker(WATCHDOG, {
    eval: true,
    workerData: { parent: process.ppid, intervalMs, socket },
    // The watchdog needs almost nothing; it must not hold the process open either.
    resourceLimits: { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 2 },
  });
  worker.unref();
}
