/**
 * @internal `resources.memory` inside a replica. V8's heap limit (`resourceLimits` for a
 * thread, `--max-old-space-size` for a process) does not count Buffers and typed arrays,
 * which is where models keep their data, so the replica also measures itself: a thread its
 * isolate's heap plus external memory, a process its resident set. Past the limit it says
 * why and ends; the controller replaces it.
 */
import { getHeapStatistics } from "node:v8";

/** How often a replica with a memory limit measures itself. */
export const MEMORY_CHECK_INTERVAL_MS = 250;

const MiB = 1024 * 1024;

/** Megabytes of V8 heap for a limit in bytes (what `--max-old-space-size` takes). */
export const heapMegabytes = (bytes: number): number => Math.max(16, Math.floor(bytes / MiB));

/** Bytes this replica uses: its isolate's heap and external memory, or its process's RSS. */
function used(isThread: boolean): number {
  if (!isThread) return process.memoryUsage.rss();
  const heap = getHeapStatistics() as ReturnType<typeof getHeapStatistics> & {
    external_memory?: number;
  };
  return heap.used_heap_size + (heap.external_memory ?? process.memoryUsage().arrayBuffers);
}

/** Calls `exceeded(message)` once the replica uses more than `limit` bytes. */
export function watchMemory(
  limit: number,
  isThread: boolean,
  exceeded: (message: string) => void,
): void {
  const timer = setInterval(() => {
    const bytes = used(isThread);
    if (bytes <= limit) return;
    clearInterval(timer);
    exceeded(
      `exceeded its memory limit: it used ${Math.round(bytes / MiB)} MiB ${isThread ? "(heap and buffers)" : "(resident)"} of resources.memory ${Math.round(limit / MiB)} MiB`,
    );
  }, MEMORY_CHECK_INTERVAL_MS);
  timer.unref();
}
