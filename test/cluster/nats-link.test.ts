import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { serialize } from "node:v8";
import type { NatsConnection } from "@nats-io/transport-node";
import { connectNats, NatsMailbox } from "tributary/internal";
import { eventually } from "../runtime/eventually.js";
import {
  natsServerBinary,
  natsServerOrSkip,
  startNatsServer,
  type NatsServer,
} from "./nats-server.js";

/** Resolves with the first `n` values a mailbox receives, failing after `ms`. */
function collect<T>(mailbox: NatsMailbox<T>, n: number, ms = 20_000): Promise<[T, string][]> {
  const got: [T, string][] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`received ${got.length} of ${n} messages within ${ms} ms`)),
      ms,
    );
    mailbox.onMessage((message, from) => {
      got.push([message, from]);
      if (got.length === n) {
        clearTimeout(timer);
        resolve(got);
      }
    });
  });
}

describe("NatsMailbox over a real nats-server", { timeout: 120_000 }, () => {
  let server: NatsServer | undefined;
  const connections: NatsConnection[] = [];
  const connection = async (): Promise<NatsConnection> => {
    assert.ok(server);
    const nc = await connectNats(server.url);
    connections.push(nc);
    return nc;
  };

  before(async () => {
    if (natsServerBinary) server = await startNatsServer();
  });
  after(async () => {
    await Promise.all(connections.map((nc) => nc.close()));
    await server?.stop();
  });

  test("nats-link - small values round-trip intact, and each side sees the other's address as from", async (t) => {
    if (!natsServerOrSkip(t)) return;
    const [a, b] = [await connection(), await connection()];
    using echo = NatsMailbox.open<unknown, unknown>(b, "test.echo.small");
    echo.onMessage((message, from) => echo.send(from, message));
    await echo.ready();
    using caller = NatsMailbox.open<unknown, unknown>(a);
    assert.match(caller.address, /^_INBOX\./);
    const values: unknown[] = [
      42,
      "text",
      null,
      { nested: [1, { deep: true }] },
      new Map<string, number[]>([["k", [1, 2]]]),
      new Date(1_700_000_000_000),
      new Uint8Array([0, 255, 7]),
      new RangeError("out of range"),
    ];
    const received = collect(caller, values.length);
    for (const value of values) caller.send(echo.address, value);
    const got = await received;
    assert.equal(got.length, values.length);
    for (const [i, [message, from]] of got.entries()) {
      assert.equal(from, "test.echo.small");
      if (values[i] instanceof Error) {
        assert.ok(message instanceof RangeError);
        assert.equal(message.message, "out of range");
      } else assert.deepStrictEqual(message, values[i]);
    }
  });

  test("nats-link - a 16 MiB Float32Array crosses two connections in chunks, every value intact", async (t) => {
    if (!natsServerOrSkip(t)) return;
    const [a, b] = [await connection(), await connection()];
    using receiver = NatsMailbox.open<Float32Array>(b, "test.big");
    await receiver.ready();
    using sender = NatsMailbox.open<unknown, Float32Array>(a);
    const floats = (16 * 1024 * 1024) / 4;
    const sent = new Float32Array(floats);
    let checksum = 0;
    for (let i = 0; i < floats; i++) {
      sent[i] = Math.sin(i) * 1000;
      checksum += sent[i] ?? 0;
    }
    const received = collect(receiver, 1);
    sender.send(receiver.address, sent);
    const [[got, from]] = (await received) as [[Float32Array, string]];
    assert.equal(from, sender.address);
    assert.ok(got instanceof Float32Array);
    assert.equal(got.length, floats);
    let sum = 0;
    for (let i = 0; i < floats; i++) sum += got[i] ?? NaN;
    assert.equal(sum, checksum);
    for (const i of [0, 1, 262_143, 262_144, 262_145, floats / 2, floats - 1])
      assert.equal(got[i], sent[i], `value ${i}`);
    const same = Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(
      Buffer.from(sent.buffer),
    );
    assert.ok(same, "every byte of the array came back as sent");
    assert.equal(receiver.dropped, 0);
  });

  test("nats-link - large and small values interleaved from two senders arrive whole and in order per sender", async (t) => {
    if (!natsServerOrSkip(t)) return;
    const [rx, tx1, tx2] = [await connection(), await connection(), await connection()];
    type Tagged = { seq: number; body: Uint8Array };
    using receiver = NatsMailbox.open<Tagged>(rx, "test.interleaved");
    await receiver.ready();
    using one = NatsMailbox.open<unknown, Tagged>(tx1);
    using two = NatsMailbox.open<unknown, Tagged>(tx2);
    const perSender = 16;
    const sizeOf = (seq: number): number => (seq % 2 === 0 ? 1_500_000 + seq : 10 + seq);
    const received = collect(receiver, 2 * perSender, 60_000);
    for (let seq = 0; seq < perSender; seq++) {
      // the two senders' bodies differ, so a chunk delivered to the wrong value shows
      one.send(receiver.address, { seq, body: new Uint8Array(sizeOf(seq)).fill(seq) });
      two.send(receiver.address, { seq, body: new Uint8Array(sizeOf(seq)).fill(200 + seq) });
      if (seq % 4 === 3) await Promise.all([tx1.flush(), tx2.flush()]); // bounded in flight
    }
    const got = await received;
    for (const [sender, base] of [
      [one, 0],
      [two, 200],
    ] as const) {
      const mine = got.filter(([, from]) => from === sender.address).map(([m]) => m);
      assert.deepEqual(
        mine.map((m) => m.seq),
        Array.from({ length: perSender }, (_, i) => i),
      );
      for (const message of mine) {
        assert.equal(message.body.length, sizeOf(message.seq));
        assert.ok(
          message.body.every((v) => v === base + message.seq),
          `value ${message.seq} intact`,
        );
      }
    }
    assert.equal(receiver.dropped, 0);
  });

  test("nats-link - a value that cannot be serialized throws synchronously from send()", async (t) => {
    if (!natsServerOrSkip(t)) return;
    const nc = await connection();
    using mailbox = NatsMailbox.open<unknown, unknown>(nc);
    assert.throws(() => mailbox.send("test.nowhere", { f: () => 1 }), {
      name: "DataCloneError",
      message: /could not be cloned/,
    });
  });

  test("nats-link - close() stops delivery while another mailbox on the same connection still receives", async (t) => {
    if (!natsServerOrSkip(t)) return;
    const [a, b] = [await connection(), await connection()];
    const closed = NatsMailbox.open<number>(b, "test.closed");
    using witness = NatsMailbox.open<number>(b, "test.witness");
    const seen: number[] = [];
    closed.onMessage((m) => seen.push(m));
    await closed.ready();
    using sender = NatsMailbox.open<unknown, number>(a);
    sender.send(closed.address, 1);
    await eventually(() => Promise.resolve(seen.length === 1), 5_000, "the first value arrives");
    closed.close();
    closed.close(); // twice is fine
    await b.flush(); // the unsubscribe has reached the server
    const last = collect(witness, 1);
    sender.send(closed.address, 2);
    sender.send(witness.address, 3); // published after 2, on the same connection
    assert.deepEqual(
      (await last).map(([m]) => m),
      [3],
    );
    assert.deepEqual(seen, [1]);
  });

  test("nats-link - a value sent to a subject no one serves comes back as no responders; one that arrives does not", async (t) => {
    if (!natsServerOrSkip(t)) return;
    const [a, b] = [await connection(), await connection()];
    using served = NatsMailbox.open<number>(b, "test.served");
    await served.ready();
    using sender = NatsMailbox.open<unknown, number>(a);
    let noResponders = 0;
    sender.onNoResponders(() => noResponders++);
    const arrived = collect(served, 1);
    sender.send(served.address, 1);
    await arrived;
    await a.flush();
    assert.equal(noResponders, 0);
    sender.send("test.nobody-serves-this", 2);
    await eventually(
      () => Promise.resolve(noResponders === 1),
      5_000,
      "the server says no responders",
    );
    assert.equal(sender.dropped, 0, "the status message is not counted as a dropped value");
  });

  test("nats-link - past maxPartial the oldest partial value is dropped; one idle past the timeout is too", async (t) => {
    if (!natsServerOrSkip(t)) return;
    const [a, b] = [await connection(), await connection()];
    // A value in two chunks, framed by hand as send() frames values past max_payload.
    const body = serialize("chunked ".repeat(8));
    const half = Math.ceil(body.length / 2);
    const chunk = (index: number): Buffer => {
      const part = body.subarray(index * half, (index + 1) * half);
      const frame = Buffer.alloc(17 + part.length);
      frame[0] = 0x01;
      frame.writeUInt32LE(7, 1);
      frame.writeUInt32LE(index, 5);
      frame.writeUInt32LE(2, 9);
      frame.writeUInt32LE(body.length, 13);
      frame.set(part, 17);
      return frame;
    };

    using bounded = NatsMailbox.open<string>(b, "test.partial.bounded", { maxPartial: 2 });
    const seen: string[] = [];
    bounded.onMessage((m, from) => seen.push(`${from}:${m.length}`));
    await bounded.ready();
    for (const from of ["test.s1", "test.s2", "test.s3"])
      a.publish(bounded.address, chunk(0), { reply: from });
    for (const from of ["test.s1", "test.s2", "test.s3"])
      a.publish(bounded.address, chunk(1), { reply: from });
    await eventually(() => Promise.resolve(seen.length === 2), 5_000, "two values complete");
    assert.deepEqual(seen, ["test.s2:64", "test.s3:64"]);
    assert.equal(bounded.dropped, 1, "s1's partial value was dropped for s3's");

    using idle = NatsMailbox.open<string>(b, "test.partial.idle", { partialTimeoutMs: 100 });
    const late: string[] = [];
    idle.onMessage((m) => late.push(m));
    await idle.ready();
    a.publish(idle.address, chunk(0), { reply: "test.s4" });
    await eventually(() => Promise.resolve(idle.dropped === 1), 5_000, "the idle value is dropped");
    a.publish(idle.address, chunk(1), { reply: "test.s4" }); // its tail, too late
    a.publish(idle.address, serialize("after"), { reply: "test.s4" });
    await eventually(() => Promise.resolve(late.length === 1), 5_000, "the next value arrives");
    assert.deepEqual(late, ["after"]);
    assert.equal(idle.dropped, 1);
  });
});

describe("connectNats with credentials", { timeout: 60_000 }, () => {
  test("nats-link - a server started with --user and --pass accepts them and rejects a client without", async (t) => {
    if (!natsServerOrSkip(t)) return;
    const server = await startNatsServer({ args: ["--user", "u", "--pass", "p"] });
    try {
      const nc = await connectNats(server.url, { user: "u", pass: "p" });
      try {
        using mailbox = NatsMailbox.open<string, string>(nc);
        const got = collect(mailbox, 1, 5_000);
        mailbox.send(mailbox.address, "hello");
        assert.deepEqual(await got, [["hello", mailbox.address]]);
      } finally {
        await nc.close();
      }
      for (const options of [{}, { user: "u", pass: "wrong" }]) {
        await assert.rejects(connectNats(server.url, options), (error: Error) => {
          assert.equal((error as { code?: string }).code, "UNAUTHORIZED");
          assert.match(error.message, new RegExp(`NATS server at ${server.url} refused`));
          return true;
        });
      }
    } finally {
      await server.stop();
    }
  });

  test("nats-link - a server started with --auth accepts the token", async (t) => {
    if (!natsServerOrSkip(t)) return;
    const server = await startNatsServer({ args: ["--auth", "s3cret"] });
    try {
      const nc = await connectNats(server.url, { token: "s3cret" });
      assert.equal(nc.isClosed(), false);
      await nc.close();
      await assert.rejects(connectNats(server.url, { token: "nope" }), { code: "UNAUTHORIZED" });
    } finally {
      await server.stop();
    }
  });
});
