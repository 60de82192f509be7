import assert from "node:assert/strict";
import { test } from "node:test";
import {
  elementCount,
  halfBits,
  halfValue,
  jsonText,
  oipJson,
  tensorFromJson,
  tensorToJson,
  tensorToRaw,
  toTensor,
} from "./tensors.js";

test("tensors - elementCount: a 0 anywhere is an empty tensor; past 2^31 - 1 elements is refused", () => {
  assert.equal(elementCount([2, 3], "x"), 6);
  assert.equal(elementCount([], "x"), 1);
  assert.equal(elementCount([0, 2 ** 40], "x"), 0);
  assert.equal(elementCount([2 ** 40, 0], "x"), 0, "the order of the dimensions does not matter");
  assert.throws(() => elementCount([2 ** 20, 2 ** 20], "x"), /has more than 2147483647 elements/);
  assert.throws(() => elementCount([-1], "x"), /shape\[0\] = -1 is not a non-negative integer/);
  assert.throws(() => elementCount([2 ** 40, "a", 0], "x"), /shape\[1\] is not a number/);
});

test("tensors - numbers outside a datatype's range are refused, not wrapped or rounded to infinity", () => {
  const refused = (datatype: string, v: number) =>
    assert.throws(
      () => tensorFromJson(datatype, [1], [v], "x"),
      new RegExp(
        `data\\[0\\] = ${String(v).replace(/[+.]/g, "\\$&")} is out of ${datatype}'s range`,
      ),
      `${datatype} ${v}`,
    );
  for (const [datatype, low, high] of [
    ["UINT8", 0, 255],
    ["UINT16", 0, 65535],
    ["UINT32", 0, 4294967295],
    ["INT8", -128, 127],
    ["INT16", -32768, 32767],
    ["INT32", -2147483648, 2147483647],
  ] as const) {
    const t = tensorFromJson(datatype, [2], [low, high], "x");
    assert.deepEqual(Array.from(t.data as ArrayLike<number>), [low, high], datatype);
    refused(datatype, low - 1);
    refused(datatype, high + 1);
  }
  refused("UINT64", -1);
  refused("UINT64", 2 ** 64);
  refused("INT64", 2 ** 63);
  // Exact bigints (gRPC's int64_contents) to the bounds; JSON numbers to ±(2^53 - 1).
  assert.deepEqual(
    tensorFromJson("INT64", [2], [-(2n ** 63n), 2n ** 63n - 1n], "x").data,
    BigInt64Array.of(-(2n ** 63n), 2n ** 63n - 1n),
  );
  assert.deepEqual(
    tensorFromJson("UINT64", [1], [2n ** 64n - 1n], "x").data,
    BigUint64Array.of(2n ** 64n - 1n),
  );
  assert.throws(
    () => tensorFromJson("INT64", [1], [2n ** 63n], "x"),
    /data\[0\] = 9223372036854775808 is out of INT64's range/,
  );
  assert.throws(
    () => tensorFromJson("UINT64", [1], [-1n], "x"),
    /data\[0\] = -1 is out of UINT64's range/,
  );
  assert.deepEqual(
    tensorFromJson("INT64", [2], [-(2 ** 53) + 1, 2 ** 53 - 1], "x").data,
    BigInt64Array.of(-(2n ** 53n) + 1n, 2n ** 53n - 1n),
  );
  for (const v of [2 ** 53, -(2 ** 63)])
    assert.throws(
      () => tensorFromJson("INT64", [1], [v], "x"),
      /is past ±2\^53 \(it reads as .*\), where a JSON number is not exact/,
    );
  refused("FP32", 1e39);
  refused("FP32", -1e39);
  assert.equal(
    (tensorFromJson("FP32", [1], [3.4028235e38], "x").data as Float32Array)[0],
    3.4028234663852886e38,
  );
  refused("FP16", 65520);
  assert.equal(tensorToJson(tensorFromJson("FP16", [1], [65519], "x"))[0], 65504);
});

test("tensors - FP16 in JSON is numbers, held as half-precision words (rounded to nearest, ties to even)", () => {
  const cases: [number, number][] = [
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [65504, 0x7bff],
    [2 ** -14, 0x0400], // the least normal
    [2 ** -24, 0x0001], // the least subnormal
    [2 ** -25, 0x0000], // a tie: to even (0)
    [3 * 2 ** -25, 0x0002], // a tie: to even (2)
    [1 + 2 ** -11, 0x3c00], // a tie between 1 and its successor: to even
    [1 + 3 * 2 ** -11, 0x3c02],
    [0.1, 0x2e66],
    [2047.9, 0x6800], // rounds up into the next exponent (2048)
  ];
  for (const [v, bits] of cases) {
    assert.equal(halfBits(v), bits, `${v}`);
    const t = tensorFromJson("FP16", [1], [v], "x");
    assert.equal((t.data as Uint16Array)[0], bits);
  }
  assert.deepEqual(
    tensorToJson({
      datatype: "FP16",
      shape: [4],
      data: Uint16Array.of(0x3c00, 0xc000, 0x0001, 0x2e66),
    }),
    [1, -2, 2 ** -24, 0.0999755859375],
  );
  for (let h = 0; h < 0x7c00; h++) assert.equal(halfBits(halfValue(h)), h, `round trip of ${h}`);
});

test("tensors - a bigint result past 64 bits is its digits, not a wrapped INT64", () => {
  assert.deepEqual(toTensor(5n), { datatype: "INT64", shape: [1], data: BigInt64Array.of(5n) });
  assert.equal(toTensor(2n ** 63n).datatype, "UINT64");
  assert.deepEqual(toTensor(2n ** 70n), {
    datatype: "BYTES",
    shape: [1],
    data: ["1180591620717411303424"],
  });
});

test("tensors - a Float16Array result (Node 22 and later) is FP16, its JSON numbers and raw bytes its half words", (t) => {
  const Float16 = (globalThis as { Float16Array?: new (values: number[]) => ArrayLike<number> })
    .Float16Array;
  if (!Float16) {
    t.skip(`this Node.js (${process.version}) has no Float16Array`);
    return;
  }
  const data = new Float16([1, -2, 0.5]) as unknown as Uint16Array;
  const tensor = toTensor(data);
  assert.equal(tensor.datatype, "FP16");
  assert.deepEqual(tensor.shape, [3]);
  assert.deepEqual(tensorToJson(tensor), [1, -2, 0.5]);
  assert.deepEqual(
    Array.from(new Uint16Array(tensorToRaw(tensor).slice().buffer)),
    [0x3c00, 0xc000, 0x3800],
  );
});

test("tensors - INT64 past 2^53 goes to JSON as exact integers; smaller ones as numbers", () => {
  const data = tensorToJson({
    datatype: "INT64",
    shape: [3],
    data: BigInt64Array.of(-(2n ** 63n), 2n ** 53n - 1n, 2n ** 53n + 1n),
  });
  assert.deepEqual(data, [-(2n ** 63n), 2 ** 53 - 1, 2n ** 53n + 1n]);
  assert.equal(
    oipJson({ outputs: [{ name: "~bigint-", data }] }),
    '{"outputs":[{"name":"~bigint-","data":[-9223372036854775808,9007199254740991,9007199254740993]}]}',
  );
  assert.equal(oipJson({ a: [1, "x"] }), '{"a":[1,"x"]}');
});

test("tensors - a nested array result is a tensor only where a shape describes it", () => {
  const json = (text: string) => ({ datatype: "BYTES", shape: [1], data: [text] });
  // Rows of one typed array kind; bigints; byte strings (BYTES, as a request's arrive).
  assert.deepEqual(toTensor([Float32Array.of(1, 2), Float32Array.of(3, 4)]), {
    datatype: "FP32",
    shape: [2, 2],
    data: Float32Array.of(1, 2, 3, 4),
  });
  assert.deepEqual(toTensor([[1n], [-2n]]), {
    datatype: "INT64",
    shape: [2, 1],
    data: BigInt64Array.of(1n, -2n),
  });
  const bytes = toTensor([Uint8Array.of(1, 2), Buffer.from([3, 4])]);
  assert.equal(bytes.datatype, "BYTES");
  assert.deepEqual(bytes.shape, [2]);
  assert.deepEqual(
    (bytes.data as Uint8Array[]).map((b) => [b.constructor.name, ...b]),
    [
      ["Uint8Array", 1, 2],
      ["Uint8Array", 3, 4],
    ],
  );
  assert.deepEqual(toTensor([]), { datatype: "FP64", shape: [0], data: new Float64Array(0) });
  // No shape fits these: JSON text, not a shape that does not match the data.
  assert.deepEqual(toTensor([[1, 2, 3], [4]]), json("[[1,2,3],[4]]"));
  // eslint-disable-next-line no-sparse-arrays
  assert.deepEqual(toTensor([1, , 3]), json("[1,null,3]"));
  assert.deepEqual(toTensor([Float32Array.of(1, 2), ["a", "b"]]), json('[[1,2],["a","b"]]'));
  assert.deepEqual(toTensor([BigInt64Array.of(1n, 2n), [1, 2]]).datatype, "BYTES");
  assert.deepEqual(toTensor([Float32Array.of(1), Float64Array.of(2)]), json("[[1],[2]]"));
});

test("jsonText - typed arrays, bigints and toJSON wherever they are, the same with the fast path or without", () => {
  assert.equal(jsonText({ sum: 5 }), '{"sum":5}');
  assert.equal(jsonText([1, "a", null, { b: [true] }]), '[1,"a",null,{"b":[true]}]');
  assert.equal(jsonText({ a: [{ v: new Float32Array([0.5, 2]) }] }), '{"a":[{"v":[0.5,2]}]}');
  assert.equal(jsonText([1n, 2n ** 64n]), '[1,"18446744073709551616"]');
  assert.equal(jsonText({ when: new Date(0) }), '{"when":"1970-01-01T00:00:00.000Z"}');
  assert.equal(jsonText(new BigInt64Array([3n])), "[3]");
  // Deeper than the fast path looks: the replacer still writes what lies at the bottom.
  let deep: unknown = { v: new Uint8Array([7]) };
  for (let i = 0; i < 40; i++) deep = [deep];
  assert.equal(jsonText(deep), `${"[".repeat(40)}{"v":[7]}${"]".repeat(40)}`);
  const cycle: Record<string, unknown> = {};
  cycle.self = cycle;
  assert.throws(() => jsonText(cycle), /could not be written as JSON: .*circular/i);
  // What the fast path must not miss or add: toJSON on arrays and functions, an array's own
  // iterator, an inherited property (JSON.stringify reads own keys only).
  class Vec extends Array<number> {
    toJSON() {
      return Float64Array.from(this);
    }
  }
  assert.equal(jsonText({ v: Vec.from([1, 2]) }), '{"v":[1,2]}');
  const withToJSON = Object.assign(() => 0, { toJSON: () => 5n });
  assert.equal(jsonText({ f: withToJSON }), '{"f":5}');
  const iterated = [1n];
  Object.defineProperty(iterated, Symbol.iterator, { value: function* () {} });
  assert.equal(jsonText(iterated), "[1]");
  const inherited = Object.create({
    get boom(): never {
      throw new Error("never read");
    },
  }) as Record<string, unknown>;
  Object.defineProperty(Object.getPrototypeOf(inherited), "boom", { enumerable: true });
  inherited.x = 1;
  assert.equal(jsonText(inherited), '{"x":1}');
  // A sparse array 2³² − 1 long costs nothing to clone: it is refused at once, not walked.
  assert.throws(() => jsonText({ r: new Array(2 ** 32 - 1) }), /could not be written as JSON/);
});
