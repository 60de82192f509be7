import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { MAX_BATCH, MessageBatcher } from "./batch.js";
import type { Transfer } from "./transport.js";

/** A batcher whose sends are recorded; `refuse` makes a send of that message throw. */
function recorder(gather: "turn" | "microtask", refuse?: number) {
  const sends: { data: number | number[]; transfer: Transfer }[] = [];
  const undeliverable: number[] = [];
  const batcher = new MessageBatcher<number>(
    (data, transfer) => {
      if (
        refuse !== undefined &&
        (data === refuse || (Array.isArray(data) && data.includes(refuse)))
      )
        throw new Error("could not be cloned");
      sends.push({ data, transfer });
    },
    (message) => undeliverable.push(message),
    gather,
  );
  return { batcher, sends, undeliverable };
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe("MessageBatcher", () => {
  test("a turn's messages go in one send, in order; a lone message goes as itself", async () => {
    const { batcher, sends } = recorder("turn");
    batcher.push(1);
    batcher.push(2);
    batcher.push(3);
    assert.equal(sends.length, 0, "nothing is sent before the turn ends");
    await turn();
    batcher.push(4);
    await turn();
    assert.deepEqual(
      sends.map((s) => s.data),
      [[1, 2, 3], 4],
    );
  });

  test("a message sent at once schedules nothing; within() sends what its handler queued, even if it throws", () => {
    for (const gather of ["turn", "microtask"] as const) {
      // The batcher takes its scheduler from the global when it is made: count its calls.
      const name = gather === "turn" ? "setImmediate" : "queueMicrotask";
      const real = globalThis[name];
      let scheduled = 0;
      (globalThis as Record<string, unknown>)[name] = (...args: unknown[]) => {
        scheduled++;
        return (real as (...a: unknown[]) => unknown)(...args);
      };
      try {
        const { batcher, sends } = recorder(gather);
        batcher.push(1, undefined, true);
        assert.deepEqual(
          sends.map((s) => s.data),
          [1],
          "sent at once",
        );
        assert.equal(scheduled, 0, `${gather}: no flush scheduled for an empty queue`);
        batcher.within(() => {
          batcher.push(2);
          batcher.push(3);
          assert.equal(sends.length, 1, "held while the handler runs");
        });
        assert.deepEqual(
          sends.map((s) => s.data),
          [1, [2, 3]],
          "sent as the handler returned",
        );
        assert.throws(
          () =>
            batcher.within(() => {
              batcher.push(4);
              throw new Error("handler failed");
            }),
          /handler failed/,
        );
        assert.equal(sends.at(-1)!.data, 4, "sent although the handler threw");
        assert.equal(scheduled, 0, `${gather}: within() scheduled nothing`);
        batcher.push(5);
        assert.equal(scheduled, 1, "outside within(), a queued message schedules its flush");
      } finally {
        (globalThis as Record<string, unknown>)[name] = real;
      }
    }
  });

  test(`a batch goes as soon as it holds ${MAX_BATCH} messages, the rest at the end of the turn`, async () => {
    const { batcher, sends } = recorder("turn");
    const count = MAX_BATCH * 2 + 5;
    for (let i = 0; i < count; i++) {
      batcher.push(i);
      // The receiver can start on the first batch while the sender makes the next.
      if (i === MAX_BATCH - 1) assert.equal(sends.length, 1, "the first full batch left at once");
    }
    assert.equal(sends.length, 2);
    await turn();
    assert.deepEqual(
      sends.map((s) => (s.data as number[]).length),
      [MAX_BATCH, MAX_BATCH, 5],
    );
    assert.deepEqual(
      sends.flatMap((s) => s.data),
      Array.from({ length: count }, (_, i) => i),
      "every message once, in order",
    );
    await turn();
    assert.equal(sends.length, 3, "no empty send after an early one");
  });

  test("each batch carries the buffers of its own messages", async () => {
    const { batcher, sends } = recorder("microtask");
    const buffers = Array.from({ length: MAX_BATCH + 1 }, () => new ArrayBuffer(8));
    buffers.forEach((buffer, i) => batcher.push(i, [buffer]));
    await Promise.resolve();
    assert.equal(sends.length, 2);
    assert.deepEqual(sends[0]!.transfer, buffers.slice(0, MAX_BATCH));
    assert.deepEqual(sends[1]!.transfer, buffers.slice(MAX_BATCH));
  });

  test("a message that cannot be sent is handed back; the rest of its batch still goes", async () => {
    const { batcher, sends, undeliverable } = recorder("microtask", 2);
    for (const message of [1, 2, 3]) batcher.push(message);
    await Promise.resolve();
    assert.deepEqual(undeliverable, [2]);
    assert.deepEqual(
      sends.map((s) => s.data),
      [1, 3],
    );
  });

  test("a buffer moves once: a later message listing it goes as a copy, and once it has moved, is handed back", async () => {
    const sent: { data: unknown; transfer: Transfer }[] = [];
    const undeliverable: unknown[] = [];
    const make = (moves = true) =>
      new MessageBatcher<{ a: Float32Array }>(
        (data, transfer) => void sent.push({ data, transfer }),
        (message) => void undeliverable.push(message),
        "microtask",
        moves,
      );
    const [first, second] = [make(), make()];
    const data = new Float32Array([1, 2, 3]);
    first.push({ a: data }, [data.buffer]);
    second.push({ a: data }, [data.buffer]);
    first.flush();
    second.flush();
    assert.deepEqual(sent[0]!.transfer, [data.buffer], "the first message moves the original");
    assert.deepEqual(sent[1]!.transfer, [], "the second moves nothing");
    const copy = (sent[1]!.data as { a: Float32Array }).a;
    assert.notEqual(copy.buffer, data.buffer, "the second carries a copy");
    assert.deepEqual([...copy], [1, 2, 3]);
    // Moved (as a port's postMessage would): a message that lists it again cannot be sent.
    structuredClone(data.buffer, { transfer: [data.buffer] });
    first.push({ a: data }, [data.buffer]);
    assert.equal(undeliverable.length, 1);
    assert.equal(sent.length, 2);
    // A channel that copies everything (a socket) neither moves nor claims buffers.
    const copying = make(false);
    const other = new Float32Array([4]);
    copying.push({ a: other }, [other.buffer]);
    copying.flush();
    assert.deepEqual(sent[2]!.transfer, []);
    first.push({ a: other }, [other.buffer]);
    first.flush();
    assert.deepEqual(sent[3]!.transfer, [other.buffer], "a copying channel did not claim it");
  });
});
