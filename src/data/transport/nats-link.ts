/**
 * @internal Mailboxes on NATS subjects: the sibling of {@link SocketChannel} for calls
 * between machines. A mailbox subscribes on one subject and sends V8-serialized values
 * (typed arrays, Maps, Dates and Errors arrive intact) to other mailboxes; the NATS
 * message's `reply` field carries the sender's address, so the fast path has no headers.
 *
 * Wire format, one NATS message each:
 * - a whole value: the bytes of `v8.serialize(value)` as they are. V8's format always
 *   begins with its version tag, 0xFF, which is what tells a whole value from a chunk; no
 *   prefix is written, so a small value is never copied before the publish.
 * - a chunk of a value larger than the server's `max_payload`: a 17-byte head (kind 0x01,
 *   then little-endian u32s: message id, chunk index, chunk count, total bytes) and a
 *   slice of the serialized bytes. A sender publishes every chunk of a value before it
 *   returns from `send()`, and NATS keeps one connection's messages in order, so chunks
 *   from one sender arrive in order and never interleave with its other values.
 *
 * Reassembly memory is bounded: a partial value is dropped when a chunk arrives out of
 * order, when its sender starts another value, when no chunk of it has arrived for
 * `partialTimeoutMs` (30 s), when more than `maxPartial` (64) are pending (oldest first),
 * or when the pending bytes would pass `maxPendingBytes` (1 GiB). Dropped values are
 * counted in {@link NatsMailbox.dropped}. There is no flow control: `send()` hands the
 * bytes to the connection at once, so a caller bounds how much it has in flight (a NATS
 * server cuts off a subscriber more than `max_pending`, 64 MiB by default, behind).
 */
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { deserialize, serialize } from "node:v8";
import type * as Nats from "@nats-io/transport-node";
import type {
  Msg,
  NatsConnection,
  NodeConnectionOptions,
  Subscription,
} from "@nats-io/transport-node";
import { TributaryError } from "../../errors.js";
import { missingPackage, requirePackages } from "../../optional-package.js";

const CHUNK = 0x01;
const V8_VERSION_TAG = 0xff;
const HEAD_BYTES = 17;
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

/** Options of {@link NatsMailbox.open}. */
export interface MailboxOptions {
  /** A NATS queue group: one member of the group receives each message. */
  readonly queue?: string;
  /** A partial chunked value with no new chunk for this long is dropped. Default 30 000. */
  readonly partialTimeoutMs?: number;
  /** At most this many partial values are kept; the oldest is dropped. Default 64. */
  readonly maxPartial?: number;
  /** At most this many bytes of partial values are kept. Default 1 GiB. */
  readonly maxPendingBytes?: number;
}

interface Partial {
  readonly key: string;
  readonly id: number;
  readonly count: number;
  readonly bytes: Buffer;
  next: number;
  filled: number;
  touched: number;
}

/**
 * A fresh inbox subject, as nats.js's `createInbox` makes one (`NatsConnection` has no
 * method for it, and this module does not load the library): the connection's
 * `inboxPrefix` (so subject permissions written for it hold), then a random token.
 */
function inbox(nc: NatsConnection): string {
  const prefix = (nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix || "_INBOX";
  return `${prefix}.${randomUUID().replaceAll("-", "")}`;
}

/** One end that receives on a subject and sends to others; see the module comment. */
export class NatsMailbox<In = unknown, Out = unknown> {
  /** The subject this mailbox receives on: what a peer passes as `to`. */
  readonly address: string;
  readonly #nc: NatsConnection;
  readonly #subscription: Subscription;
  readonly #listeners: ((message: In, from: string) => void)[] = [];
  readonly #noResponders: (() => void)[] = [];
  readonly #partials = new Map<string, Partial>();
  readonly #timeoutMs: number;
  readonly #maxPartial: number;
  readonly #maxPendingBytes: number;
  #pendingBytes = 0;
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #nextId = 0;
  #dropped = 0;
  #closed = false;

  private constructor(nc: NatsConnection, subject: string, options: MailboxOptions) {
    this.#nc = nc;
    this.address = subject;
    this.#timeoutMs = options.partialTimeoutMs ?? 30_000;
    this.#maxPartial = options.maxPartial ?? 64;
    this.#maxPendingBytes = options.maxPendingBytes ?? 1024 * 1024 * 1024;
    this.#subscription = nc.subscribe(subject, {
      ...(options.queue === undefined ? {} : { queue: options.queue }),
      callback: (error, msg) => {
        if (error === null) this.#receive(msg);
      },
    });
  }

  /**
   * Subscribes on `subject`, or on a fresh inbox when it is omitted. The subscription is
   * made at once (callback style): register {@link onMessage} in the same tick, before
   * the connection next reads, and nothing sent to the address is missed.
   */
  static open<In = unknown, Out = unknown>(
    nc: NatsConnection,
    subject?: string,
    options: MailboxOptions = {},
  ): NatsMailbox<In, Out> {
    return new NatsMailbox<In, Out>(nc, subject ?? inbox(nc), options);
  }

  /**
   * Resolves once the server has this subscription (a round trip to it: `nc.flush()`).
   * A value another connection publishes to the address before then may be lost, since
   * the subscription and the publish travel on different sockets; a mailbox on the same
   * connection as the sender needs no wait.
   */
  ready(): Promise<void> {
    return this.#nc.flush();
  }

  /** Values dropped so far: partial chunked values given up, and undecodable messages. */
  get dropped(): number {
    return this.#dropped;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Sends one value to the mailbox at `to`; the receiver sees `from` as this address.
   * Throws synchronously when the value cannot be serialized (a `DataCloneError`) or the
   * connection is closed. A value larger than the server's `max_payload` goes in chunks.
   * Does nothing once this mailbox is closed.
   */
  send(to: string, message: Out): void {
    if (this.#closed) return;
    let body: Buffer;
    try {
      body = serialize(message);
    } catch (error) {
      // v8.serialize throws a plain Error; a MessagePort's postMessage, a DataCloneError.
      // Both transports throw the same, so a caller tells "cannot send this" by name.
      throw new DOMException((error as Error).message, "DataCloneError");
    }
    const maxPayload = this.#nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD;
    if (body.length <= maxPayload) {
      this.#nc.publish(to, body, { reply: this.address });
      return;
    }
    const size = maxPayload - HEAD_BYTES;
    const count = Math.ceil(body.length / size);
    const id = this.#nextId;
    this.#nextId = (this.#nextId + 1) >>> 0;
    for (let index = 0; index < count; index++) {
      const slice = body.subarray(index * size, (index + 1) * size);
      const frame = Buffer.allocUnsafe(HEAD_BYTES + slice.length);
      frame[0] = CHUNK;
      frame.writeUInt32LE(id, 1);
      frame.writeUInt32LE(index, 5);
      frame.writeUInt32LE(count, 9);
      frame.writeUInt32LE(body.length, 13);
      frame.set(slice, HEAD_BYTES);
      this.#nc.publish(to, frame, { reply: this.address });
    }
  }

  /**
   * Calls `listener` with every value that arrives and the address of the mailbox that
   * sent it (`""` for a plain NATS publish without a reply subject). A listener that
   * throws does not stop the others; its error is re-thrown on a later microtask.
   */
  onMessage(listener: (message: In, from: string) => void): void {
    this.#listeners.push(listener);
  }

  /**
   * Calls `listener` when the server says a value this mailbox sent reached no subscriber
   * (NATS's "no responders" status, 503): its receiver was away (gone, or reconnecting),
   * so the value is lost. NATS does not say which value it was.
   */
  onNoResponders(listener: () => void): void {
    this.#noResponders.push(listener);
  }

  /** Unsubscribes; partial chunked values are dropped. Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#subscription.isClosed()) this.#subscription.unsubscribe();
    this.#partials.clear();
    this.#pendingBytes = 0;
    this.#stopSweeper();
    this.#listeners.length = 0;
    this.#noResponders.length = 0;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #receive(msg: Msg): void {
    if (this.#closed) return;
    const data = msg.data;
    const from = msg.reply ?? "";
    if (data.length === 0 && msg.headers?.code === 503) {
      for (const listener of this.#noResponders) listener();
      return;
    }
    if (data[0] === V8_VERSION_TAG) {
      this.#decode(data, from);
    } else if (data[0] === CHUNK && data.length > HEAD_BYTES) {
      this.#chunk(data, from);
    } else {
      this.#dropped++;
    }
  }

  #chunk(data: Uint8Array, from: string): void {
    const view = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const id = view.readUInt32LE(1);
    const index = view.readUInt32LE(5);
    const count = view.readUInt32LE(9);
    const total = view.readUInt32LE(13);
    const key = from;
    let partial = this.#partials.get(key);
    if (partial && (partial.id !== id || partial.next !== index)) {
      this.#drop(partial); // its sender moved on, or a chunk was lost
      partial = undefined;
    }
    if (!partial) {
      if (index !== 0 || total > this.#maxPendingBytes) {
        this.#dropped += index === 0 ? 1 : 0; // a tail of a value already dropped is not counted again
        return;
      }
      while (
        this.#partials.size >= this.#maxPartial ||
        this.#pendingBytes + total > this.#maxPendingBytes
      ) {
        const oldest = this.#partials.values().next().value;
        if (!oldest) break;
        this.#drop(oldest);
      }
      partial = {
        key,
        id,
        count,
        bytes: Buffer.allocUnsafe(total),
        next: 0,
        filled: 0,
        touched: 0,
      };
      this.#partials.set(key, partial);
      this.#pendingBytes += total;
      this.#startSweeper();
    }
    const body = view.subarray(HEAD_BYTES);
    if (partial.filled + body.length > partial.bytes.length) {
      this.#drop(partial);
      return;
    }
    partial.bytes.set(body, partial.filled);
    partial.filled += body.length;
    partial.next++;
    partial.touched = performance.now();
    if (partial.next < partial.count) return;
    this.#partials.delete(key);
    this.#pendingBytes -= partial.bytes.length;
    if (this.#partials.size === 0) this.#stopSweeper();
    if (partial.filled !== partial.bytes.length) this.#dropped++;
    else this.#decode(partial.bytes, from);
  }

  #decode(bytes: Uint8Array, from: string): void {
    let message: In;
    try {
      message = deserialize(bytes) as In;
    } catch {
      this.#dropped++;
      return;
    }
    for (const listener of this.#listeners) {
      try {
        listener(message, from);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  #drop(partial: Partial): void {
    if (this.#partials.get(partial.key) !== partial) return;
    this.#partials.delete(partial.key);
    this.#pendingBytes -= partial.bytes.length;
    this.#dropped++;
    if (this.#partials.size === 0) this.#stopSweeper();
  }

  #startSweeper(): void {
    if (this.#sweeper) return;
    const every = Math.max(10, Math.min(1_000, this.#timeoutMs / 2));
    this.#sweeper = setInterval(() => {
      const now = performance.now();
      for (const partial of [...this.#partials.values()])
        if (now - partial.touched > this.#timeoutMs) this.#drop(partial);
    }, every);
    this.#sweeper.unref();
  }

  #stopSweeper(): void {
    if (this.#sweeper) clearInterval(this.#sweeper);
    this.#sweeper = undefined;
  }
}

/** Why calls in flight over a NATS connection fail when `whose` connection dropped. */
export const connectionLost = (whose: string): string =>
  `${whose} connection to NATS was lost while the call was in flight (it may have run)`;

/** Why calls to a replica on `node` fail when NATS says it has no subscriber for it. */
export const noSubscriber = (node: string): string =>
  `NATS had no subscriber for it on node ${node} when a call reached it: it stopped, its node was lost, or its connection was away`;

interface Watchers {
  readonly lost: Set<() => void>;
  readonly back: Set<() => void>;
}
const watchers = new WeakMap<NatsConnection, Watchers>();

/**
 * Runs `lost` each time `nc` loses its server, and `back` each time it is connected again.
 * NATS delivers at most once: a message sent to this connection while it was away is
 * gone, and so is one this connection published meanwhile (nats.js discards what it
 * buffered when it reconnects), so whoever waits for an answer over it should stop
 * waiting, at both. Returns a function
 * that removes both listeners. One status watch per connection, however many listeners.
 */
export function watchConnection(
  nc: NatsConnection,
  on: { readonly lost?: () => void; readonly back?: () => void },
): () => void {
  let w = watchers.get(nc);
  if (!w) {
    const sets: Watchers = { lost: new Set(), back: new Set() };
    watchers.set(nc, (w = sets));
    void (async () => {
      for await (const status of nc.status()) {
        const listeners =
          status.type === "disconnect"
            ? sets.lost
            : status.type === "reconnect"
              ? sets.back
              : undefined;
        for (const listener of [...(listeners ?? [])]) {
          try {
            listener();
          } catch (error) {
            queueMicrotask(() => {
              throw error;
            });
          }
        }
      }
    })().catch(() => undefined);
  }
  const sets = w;
  const { lost, back } = on;
  if (lost) sets.lost.add(lost);
  if (back) sets.back.add(back);
  return () => {
    if (lost) sets.lost.delete(lost);
    if (back) sets.back.delete(back);
  };
}

/** How {@link connectNats} authenticates and encrypts. */
export interface NatsConnectOptions {
  readonly user?: string | undefined;
  readonly pass?: string | undefined;
  readonly token?: string | undefined;
  /** A `.creds` file (a user JWT and its NKey seed), read once at connect. */
  readonly credsFile?: string | undefined;
  /** TLS files (`caFile`, `certFile`, `keyFile`); a `tls://` URL asks for TLS without them. */
  readonly tls?: NonNullable<NodeConnectionOptions["tls"]>;
  /** The CA (PEM file) that signed the server's certificate; implies TLS. */
  readonly caFile?: string | undefined;
  /** The client name the server shows (`nats server report connections`). */
  readonly name?: string;
}

/**
 * Connects to the NATS server at `url` (`nats://host:port`, `tls://host:port`, or several
 * separated by commas). `@nats-io/transport-node` is an optional peer dependency, loaded
 * here; without it this throws a `MISSING_PACKAGE` error that says what to install. A
 * server that refuses the credentials gives an `UNAUTHORIZED` error naming the URL.
 */
export async function connectNats(
  url: string,
  options: NatsConnectOptions = {},
): Promise<NatsConnection> {
  let nats: typeof Nats;
  try {
    nats = await import("@nats-io/transport-node");
  } catch (error) {
    if ((error as { code?: string }).code !== "ERR_MODULE_NOT_FOUND") throw error;
    // Every package the cluster needs that is missing, in one message (not one per try).
    requirePackages("The cluster", [
      "@nats-io/transport-node",
      "@nats-io/kv",
      "@nats-io/jetstream",
    ]);
    throw missingPackage("The cluster", ["@nats-io/transport-node"]);
  }
  const servers = url.split(",").map((s) => s.trim());
  const tls =
    options.caFile !== undefined
      ? { ...options.tls, caFile: options.caFile }
      : (options.tls ?? (servers.some((s) => s.startsWith("tls://")) ? {} : undefined));
  const connection: NodeConnectionOptions = {
    servers,
    name: options.name ?? `tributary-${process.pid}`,
    // A head or a node runs for months: it rides out a NATS restart, however long, and is
    // back within about half a second of NATS (nats.js waits 2 s between tries by default,
    // which a node cut off for half of nodeTimeout could not afford).
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    ...(options.user === undefined ? {} : { user: options.user }),
    ...(options.pass === undefined ? {} : { pass: options.pass }),
    ...(options.token === undefined ? {} : { token: options.token }),
    ...(tls === undefined ? {} : { tls }),
  };
  if (options.credsFile !== undefined) {
    const creds = await readFile(options.credsFile);
    connection.authenticator = nats.credsAuthenticator(new Uint8Array(creds));
  }
  try {
    return await nats.connect(connection);
  } catch (error) {
    if (error instanceof Error && /authoriz|authenticat/i.test(`${error.name} ${error.message}`))
      throw new TributaryError(
        "UNAUTHORIZED",
        `The NATS server at ${url} refused the connection (${error.message}): pass the user and pass, token or creds file it expects`,
        { cause: error },
      );
    throw error;
  }
}
