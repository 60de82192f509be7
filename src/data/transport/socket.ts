/**
 * @internal A message channel over a Unix domain socket, for calls that a `MessagePort`
 * cannot carry: to or from a replica in another process. Each frame is a 4-byte length and
 * a value in V8's serialization format (what Node's "advanced" IPC uses: typed arrays,
 * Maps and Dates arrive intact; buffers are copied). A replica listens on its own socket,
 * and a caller connects to it directly: the runtime's thread is not on the path.
 */
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { threadId } from "node:worker_threads";
import { deserialize, serialize } from "node:v8";

/** One end of a framed connection. */
export class SocketChannel<In, Out> {
  readonly #socket: Socket;
  readonly #frames = new FrameReader();
  #closed = false;
  readonly #onClose: (() => void)[] = [];

  constructor(socket: Socket, onMessage: (message: In | In[]) => void) {
    this.#socket = socket;
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) =>
      this.#frames.push(chunk, (frame) => onMessage(deserialize(frame) as In | In[])),
    );
    socket.on("error", () => undefined); // "close" follows
    socket.on("close", () => {
      this.#closed = true;
      for (const listener of this.#onClose.splice(0)) listener();
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Sends one message or a batch; throws when a value cannot be serialized. */
  send(message: Out | Out[]): void {
    if (this.#closed) return;
    const body = serialize(message);
    const head = Buffer.allocUnsafe(4);
    head.writeUInt32LE(body.length, 0);
    this.#socket.cork();
    this.#socket.write(head);
    this.#socket.write(body);
    this.#socket.uncork();
  }

  onClose(listener: () => void): void {
    if (this.#closed) listener();
    else this.#onClose.push(listener);
  }

  close(): void {
    this.#socket.destroy();
  }
}

/**
 * Splits a byte stream into frames (a 4-byte little-endian length, then that many bytes).
 * A frame's body is copied at most once: one that arrives whole in one chunk is handed on
 * as a view of it, and one spread over chunks is gathered into a buffer of its own size,
 * allocated when its length is known (joining the chunks so far on each new one made a
 * 64 MB frame take 45 s). Only a length split over two chunks joins it with the rest of its
 * chunk.
 */
export class FrameReader {
  /** The start of a length that came split over chunks (fewer than 4 bytes). */
  #head: Buffer | undefined;
  /** The frame being gathered, and how much of it has arrived. */
  #frame: Buffer | undefined;
  #filled = 0;

  push(chunk: Buffer, onFrame: (frame: Buffer) => void): void {
    let data = chunk;
    let offset = 0;
    while (offset < data.length) {
      if (this.#frame) {
        const n = Math.min(this.#frame.length - this.#filled, data.length - offset);
        data.copy(this.#frame, this.#filled, offset, offset + n);
        this.#filled += n;
        offset += n;
        if (this.#filled < this.#frame.length) return;
        const frame = this.#frame;
        this.#frame = undefined;
        onFrame(frame);
        continue;
      }
      if (this.#head) {
        data = Buffer.concat([this.#head, data.subarray(offset)]);
        offset = 0;
        this.#head = undefined;
      }
      if (data.length - offset < 4) {
        this.#head = Buffer.from(data.subarray(offset));
        return;
      }
      const length = data.readUInt32LE(offset);
      offset += 4;
      if (data.length - offset >= length) {
        const frame = data.subarray(offset, offset + length);
        offset += length;
        onFrame(frame);
      } else {
        this.#frame = Buffer.allocUnsafe(length);
        this.#filled = 0;
      }
    }
  }
}

/**
 * The socket path of a replica host (this thread's, by default), short enough for the
 * 107-byte limit.
 */
export function socketPath(pid = process.pid, thread = threadId): string {
  return join(tmpdir(), `tributary-${pid}-${thread}.sock`);
}

/**
 * Removes the socket file of a replica that has ended (its transport does, on the exit):
 * its own exit handler does not run when its thread is terminated or its process killed,
 * and the file would stay in the temporary folder. Only a path {@link socketPath} makes is
 * touched, and a file that cannot be removed is left.
 */
export function removeSocket(path: string | undefined): void {
  if (path === undefined || dirname(path) !== tmpdir() || !SOCKET_NAME.test(basename(path))) return;
  try {
    rmSync(path, { force: true });
  } catch {
    // Not ours to remove after all (another user's), or in use: left as it is.
  }
}

const SOCKET_NAME = /^tributary-\d+-\d+\.sock$/;

/** A replica's socket or a cluster node's bridge socket, named with its process id. */
const ANY_SOCKET = /^tributary-(\d+)-b?\d+\.sock$/;
let sweep: Promise<void> | undefined;

/**
 * Once per process: removes the socket files of processes that no longer run. A process
 * killed with SIGKILL cleans up neither its own thread replicas' sockets nor its bridges;
 * the next runtime on the machine does. A file is removed only when the process its name
 * gives is not running here and nothing answers on it (a connection is refused): a
 * temporary folder shared with another process id namespace (a container's) may hold a
 * live socket whose process this one cannot see. Another user's files stay (EPERM).
 */
export function sweepStaleSockets(): Promise<void> {
  sweep ??= (async () => {
    const dir = tmpdir();
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    const stale = names.filter((name) => {
      const pid = Number(ANY_SOCKET.exec(name)?.[1]);
      return pid > 0 && pid !== process.pid && !running(pid);
    });
    await Promise.all(
      stale.map(async (name) => {
        const path = join(dir, name);
        if (!(await refused(path))) return;
        try {
          rmSync(path, { force: true });
        } catch {
          // Another user's, or gone already.
        }
      }),
    );
  })();
  return sweep;
}

/** Whether a connection to the socket at `path` is refused (nothing listens there). */
function refused(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection(path);
    socket.once("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", (error: Error & { code?: string }) =>
      resolve(error.code === "ECONNREFUSED"),
    );
  });
}

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: string }).code === "EPERM";
  }
}

/** Listens on this thread's socket; each connection is handed to `accept`. */
export function listen(
  accept: (socket: Socket) => void,
): Promise<{ path: string; server: Server }> {
  const path = socketPath();
  rmSync(path, { force: true }); // left by a process with the same pid that crashed
  const server = createServer(accept);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => {
      server.off("error", reject);
      server.unref();
      process.once("exit", () => rmSync(path, { force: true }));
      resolve({ path, server });
    });
  });
}

/** Connects to a replica's socket. */
export function connectTo(path: string): Socket {
  return createConnection(path);
}
