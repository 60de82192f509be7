/**
 * The recent log lines of an instance, for `tributary logs`: every line the instance logs
 * (the request log, and what the replicas' code writes with `console.*`) is written to
 * standard output as before and kept in a ring buffer of the last {@link DEFAULT_LOG_LINES}
 * lines; followers get each new line as it is written.
 */

/** How many recent log lines an instance keeps by default. */
export const DEFAULT_LOG_LINES = 10_000;

/** Which lines to read: those of one deployment, of one application, or all. */
export interface LogFilter {
  readonly deployment?: string | undefined;
  readonly application?: string | undefined;
}

/** One kept line, with the application and deployment it names (parsed once, for filtering). */
interface Entry {
  readonly line: string;
  readonly application: string | undefined;
  readonly deployment: string | undefined;
}

function entryOf(line: string): Entry {
  // The replicas' lines and the applications' request logs name them; others do not.
  if (!line.includes('"application"'))
    return { line, application: undefined, deployment: undefined };
  try {
    const { application, deployment } = JSON.parse(line) as Record<string, unknown>;
    return {
      line,
      application: typeof application === "string" ? application : undefined,
      deployment: typeof deployment === "string" ? deployment : undefined,
    };
  } catch {
    return { line, application: undefined, deployment: undefined };
  }
}

const matches = (entry: Entry, filter: LogFilter): boolean =>
  (filter.deployment === undefined || entry.deployment === filter.deployment) &&
  (filter.application === undefined || entry.application === filter.application);

interface Follower {
  readonly filter: LogFilter;
  readonly listener: (line: string) => void;
  readonly end: () => void;
}

export class LogBuffer {
  readonly #capacity: number;
  readonly #entries: (Entry | undefined)[];
  /** Where the next line goes in the ring. */
  #next = 0;
  #size = 0;
  readonly #followers = new Set<Follower>();
  readonly #out: { write(text: string): unknown } | undefined;

  /** `out`: where each line is also written (standard output by default; `null`: nowhere). */
  constructor(
    capacity = DEFAULT_LOG_LINES,
    out: { write(text: string): unknown } | null = process.stdout,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError(`a log buffer holds at least 1 line (asked for ${capacity})`);
    this.#capacity = capacity;
    this.#entries = new Array<Entry | undefined>(capacity);
    this.#out = out ?? undefined;
  }

  /** Takes what a pino logger writes: one or more lines, each ending in a newline. */
  write(text: string): void {
    this.#out?.write(text.endsWith("\n") ? text : `${text}\n`);
    for (const line of text.split("\n")) {
      if (line.length === 0) continue;
      const entry = entryOf(line);
      this.#entries[this.#next] = entry;
      this.#next = (this.#next + 1) % this.#capacity;
      this.#size = Math.min(this.#size + 1, this.#capacity);
      for (const follower of this.#followers)
        if (matches(entry, follower.filter)) follower.listener(line);
    }
  }

  /** The last `count` kept lines that match `filter` (all by default), oldest first. */
  recent(filter: LogFilter = {}, count = this.#capacity): string[] {
    const out: string[] = [];
    const start = (this.#next - this.#size + this.#capacity) % this.#capacity;
    for (let i = 0; i < this.#size; i++) {
      const entry = this.#entries[(start + i) % this.#capacity]!;
      if (matches(entry, filter)) out.push(entry.line);
    }
    return count >= out.length ? out : out.slice(out.length - count);
  }

  /**
   * Calls `listener` with each new line that matches `filter`, until the returned function
   * is called; `end` runs instead when the buffer closes (the instance stops).
   */
  follow(filter: LogFilter, listener: (line: string) => void, end: () => void): () => void {
    const follower = { filter, listener, end };
    this.#followers.add(follower);
    return () => this.#followers.delete(follower);
  }

  /** Ends every follower. */
  close(): void {
    const followers = [...this.#followers];
    this.#followers.clear();
    for (const follower of followers) follower.end();
  }
}
