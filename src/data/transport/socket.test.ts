import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createConnection, createServer } from "node:net";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { serialize, deserialize } from "node:v8";
import { FrameReader, removeSocket, SocketChannel, sweepStaleSockets } from "./socket.js";

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

/** `messages` framed as SocketChannel sends them, in one buffer. */
const framed = (messages: unknown[]): Buffer =>
  Buffer.concat(
    messages.flatMap((m) => {
      const body = serialize(m);
      const head = Buffer.alloc(4);
      head.writeUInt32LE(body.length, 0);
      return [head, body];
    }),
  );

test("sockets - frames come out whole however the stream is cut (a length split over chunks, several frames in one)", () => {
  const messages = [{ t: "call", id: 1, a: [new Float32Array([1, 2, 3])] }, "x", [1, 2, 3]];
  const bytes = framed(messages);
  for (let size = 1; size <= bytes.length; size++) {
    const reader = new FrameReader();
    const out: unknown[] = [];
    for (let at = 0; at < bytes.length; at += size)
      reader.push(bytes.subarray(at, at + size), (frame) => out.push(deserialize(frame)));
    assert.deepEqual(out, messages, `cut every ${size} bytes`);
  }
});

test("sockets - a large frame over many chunks is copied once, not once per chunk", (t) => {
  const payload = new Uint8Array(16 * 1024 * 1024).fill(7);
  const bytes = framed([payload]);
  let copied = 0;
  const copy = Reflect.get(Buffer.prototype, "copy") as (
    this: Buffer,
    ...args: Parameters<Buffer["copy"]>
  ) => number;
  t.mock.method(
    Buffer.prototype,
    "copy",
    function (this: Buffer, ...args: Parameters<Buffer["copy"]>) {
      const n = copy.apply(this, args);
      copied += n;
      return n;
    },
  );
  const concat = Buffer.concat.bind(Buffer);
  t.mock.method(Buffer, "concat", (list: readonly Uint8Array[], length?: number): Buffer => {
    const joined = concat(list, length);
    copied += joined.length;
    return joined;
  });
  const reader = new FrameReader();
  let received: Uint8Array | undefined;
  const CHUNK = 64 * 1024;
  for (let at = 0; at < bytes.length; at += CHUNK)
    reader.push(
      bytes.subarray(at, at + CHUNK),
      (frame) => (received = deserialize(frame) as Uint8Array),
    );
  t.mock.restoreAll();
  assert.ok(received instanceof Uint8Array && received.length === payload.length);
  assert.equal(received[payload.length - 1], 7);
  assert.ok(copied <= bytes.length, `${copied} bytes copied for a frame of ${bytes.length}`);
});

test("sockets - a 64 MB message crosses a SocketChannel intact", async () => {
  const dir = await mkdtemp(join(tmpdir(), "tributary-frames-"));
  const path = join(dir, "s.sock");
  let arrived: (message: Uint8Array) => void = () => undefined;
  const received = new Promise<Uint8Array>((resolve) => (arrived = resolve));
  const server = createServer((socket) => {
    new SocketChannel<Uint8Array, never>(socket, (m) => arrived(m as Uint8Array));
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const client = new SocketChannel<never, Uint8Array>(createConnection(path), () => undefined);
  try {
    const payload = new Uint8Array(64 * 1024 * 1024);
    payload[payload.length - 1] = 9;
    client.send(payload);
    const got = await received;
    assert.equal(got.length, payload.length);
    assert.equal(got[got.length - 1], 9);
  } finally {
    client.close();
    await new Promise((resolve) => server.close(resolve));
    await rm(dir, { recursive: true, force: true });
  }
});
