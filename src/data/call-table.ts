/**
 * @internal Calls in flight by id, kept in arrays rather than a `Map`.
 *
 * Why not a `Map`: a long-lived `Map` that takes one entry and drops one per call rebuilds
 * its hash table every few dozen calls, and each table it leaves keeps a pointer to its
 * successor (for iterators still walking it). Once one of those tables has been promoted to
 * V8's old generation (an idle moment before the load is enough), it is dead but still
 * scanned as a root by every young-generation collection, so the next table survives and is
 * promoted in turn, with every call it held and what those calls reference: a chain that
 * lasts until the next full collection. Measured on the main thread under 32 callers
 * (handle calls, and the HTTP diamond): scavenges took 4–6 ms instead of 0.2 ms, the old
 * generation grew by about 2.5 MB per scavenge, and full collections ran every second or
 * two (the p99 latency). The same loop with this table: 0.2 ms scavenges, nothing promoted.
 *
 * An id is an index into the arrays plus a generation times {@link INDEX_SPAN}: an index is
 * reused as soon as its call is over, under a new id, so a late answer to a call that was
 * given up (cancelled, timed out) never matches the call that took its index.
 *
 * A table either gives the ids ({@link CallTable.add}: a caller's calls) or holds ids
 * another table gave ({@link CallTable.set}: the calls a replica runs for a caller), not both.
 */

/** The id of a free index: NaN equals nothing, so no id (0, a stale one) finds a free index. */
const FREE = NaN;

/** Indexes per generation: at most this many calls in flight on one table. */
export const INDEX_SPAN = 2 ** 21;

/**
 * The last generation before an index's ids start again at 1: ids stay below 2^53, exact
 * as numbers, and an id comes back only after 2^32 calls took its index since.
 */
export const MAX_GENERATION = 2 ** 32;

export class CallTable<T> {
  #values: (T | undefined)[] = [];
  /** The id held at each index now ({@link FREE}: none; no id equals it, 0 included). */
  #ids: number[] = [];
  /** The generation each index will give its next id. */
  #generations: number[] = [];
  /** Free indexes, the most recently freed last. */
  #free: number[] = [];
  /** Entries whose index was taken (by {@link set} with an id from elsewhere). */
  #overflow: Map<number, T> | undefined;
  #size = 0;
  /** Set by the first `add` or `set`: whether this table gives ids or holds others'. */
  #role: "gives" | "holds" | undefined;
  readonly #maxGeneration: number;

  /** `maxGeneration`: see {@link MAX_GENERATION} (smaller only in tests). */
  constructor(maxGeneration = MAX_GENERATION) {
    this.#maxGeneration = maxGeneration;
  }

  get size(): number {
    return this.#size;
  }

  /** Holds `value` under a new id, which this table gives (never 0). */
  add(value: T): number {
    if (this.#role === "holds")
      throw new Error("CallTable: a table that holds ids from elsewhere (set) gives none");
    this.#role = "gives";
    let index = this.#free.pop();
    if (index === undefined) {
      index = this.#values.length;
      if (index >= INDEX_SPAN)
        throw new RangeError(`more than ${INDEX_SPAN} calls in flight on one channel`);
      this.#values.push(undefined);
      this.#ids.push(FREE);
      this.#generations.push(1);
    }
    const generation = this.#generations[index]!;
    this.#generations[index] = generation >= this.#maxGeneration ? 1 : generation + 1;
    const id = generation * INDEX_SPAN + index;
    this.#values[index] = value;
    this.#ids[index] = id;
    this.#size++;
    return id;
  }

  /**
   * Holds `value` under `id`, an id another table gave (a caller's): at its index when
   * that is free, else (a call the caller gave up on still runs there) beside.
   */
  set(id: number, value: T): void {
    if (this.#role === "gives")
      throw new Error("CallTable: a table that gives ids (add) holds no others");
    this.#role = "holds";
    const index = id % INDEX_SPAN;
    if (this.#ids[index] === id) {
      this.#values[index] = value;
      return;
    }
    if (this.#overflow?.has(id)) {
      this.#overflow.set(id, value);
      return;
    }
    this.#size++;
    const held = this.#ids[index];
    // (An index far past the end would make the arrays sparse: such ids go beside.)
    if (
      Number.isInteger(index) &&
      index >= 0 &&
      index < this.#values.length + 1024 &&
      (held === undefined || Number.isNaN(held))
    ) {
      while (this.#values.length <= index) {
        this.#values.push(undefined);
        this.#ids.push(FREE);
      }
      this.#values[index] = value;
      this.#ids[index] = id;
      return;
    }
    (this.#overflow ??= new Map()).set(id, value);
  }

  get(id: number): T | undefined {
    const index = id % INDEX_SPAN;
    if (this.#ids[index] === id) return this.#values[index];
    return this.#overflow?.get(id);
  }

  has(id: number): boolean {
    return this.#ids[id % INDEX_SPAN] === id || this.#overflow?.has(id) === true;
  }

  /** Removes the entry under `id` and returns it (`undefined` if there was none). */
  take(id: number): T | undefined {
    const index = id % INDEX_SPAN;
    if (this.#ids[index] === id) {
      const value = this.#values[index];
      this.#values[index] = undefined;
      this.#ids[index] = FREE;
      // Only a table that gives ids gives its indexes again.
      if (this.#role === "gives") this.#free.push(index);
      this.#size--;
      return value;
    }
    const overflow = this.#overflow;
    if (!overflow) return undefined;
    const value = overflow.get(id);
    if (overflow.delete(id)) this.#size--;
    return value;
  }

  delete(id: number): boolean {
    const had = this.has(id);
    this.take(id);
    return had;
  }

  /** The ids held now. */
  ids(): number[] {
    const ids = this.#ids.filter((id) => !Number.isNaN(id));
    if (this.#overflow) ids.push(...this.#overflow.keys());
    return ids;
  }

  /** The values held now. */
  values(): T[] {
    return this.ids().map((id) => this.get(id)!);
  }

  /** Forgets everything held (ids given so far are not given again). */
  clear(): void {
    for (const id of this.ids()) this.take(id);
  }
}
