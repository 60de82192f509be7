/**
 * Tensors as the Open Inference Protocol describes them: a datatype, a shape, and
 * row-major data. Converts between wire forms (JSON arrays, typed `*_contents`, raw
 * little-endian bytes) and typed arrays, checking that shape and data agree.
 */
import { randomUUID } from "node:crypto";
import { TributaryError, ValidationError } from "../errors.js";

export const DATATYPES = [
  "BOOL",
  "UINT8",
  "UINT16",
  "UINT32",
  "UINT64",
  "INT8",
  "INT16",
  "INT32",
  "INT64",
  "FP16",
  "FP32",
  "FP64",
  "BYTES",
] as const;
export type Datatype = (typeof DATATYPES)[number];

export type TypedArray =
  | Uint8Array
  | Uint16Array
  | Uint32Array
  | BigUint64Array
  | Int8Array
  | Int16Array
  | Int32Array
  | BigInt64Array
  | Float32Array
  | Float64Array;

/** A tensor: `data` holds `product(shape)` elements, row-major. */
export interface Tensor {
  readonly datatype: Datatype;
  readonly shape: readonly number[];
  /** A typed array for numeric types, booleans for BOOL, strings or bytes for BYTES. */
  readonly data: TypedArray | readonly boolean[] | readonly (string | Uint8Array)[];
}

type ArrayType = {
  new (length: number): TypedArray;
  new (buffer: ArrayBuffer, offset: number, length: number): TypedArray;
  BYTES_PER_ELEMENT: number;
};

/**
 * The typed array of each numeric datatype. FP16 is held as its raw 16-bit words (Node 20
 * has no Float16Array); in JSON it is numbers (see {@link halfBits}).
 */
const ARRAYS: Partial<Record<Datatype, ArrayType>> = {
  BOOL: Uint8Array,
  UINT8: Uint8Array,
  UINT16: Uint16Array,
  UINT32: Uint32Array,
  UINT64: BigUint64Array,
  INT8: Int8Array,
  INT16: Int16Array,
  INT32: Int32Array,
  INT64: BigInt64Array,
  FP16: Uint16Array,
  FP32: Float32Array,
  FP64: Float64Array,
};

export function isDatatype(value: unknown): value is Datatype {
  return typeof value === "string" && (DATATYPES as readonly string[]).includes(value);
}

export function isTypedArray(value: unknown): value is TypedArray {
  return ArrayBuffer.isView(value) && !(value instanceof DataView);
}

/** Node 22+'s `Float16Array` (absent on Node 20). */
const Float16 = (globalThis as { Float16Array?: abstract new (...args: never[]) => unknown })
  .Float16Array;

/** The datatype a typed array carries. */
export function datatypeOf(data: TypedArray): Datatype {
  if (data instanceof Float32Array) return "FP32";
  if (Float16 && data instanceof Float16) return "FP16";
  if (data instanceof Float64Array) return "FP64";
  if (data instanceof Int32Array) return "INT32";
  if (data instanceof BigInt64Array) return "INT64";
  if (data instanceof Int16Array) return "INT16";
  if (data instanceof Int8Array) return "INT8";
  if (data instanceof Uint32Array) return "UINT32";
  if (data instanceof BigUint64Array) return "UINT64";
  if (data instanceof Uint16Array) return "UINT16";
  return "UINT8";
}

const MAX_ELEMENTS = 2 ** 31 - 1;

/** Checks a shape and returns its element count. */
export function elementCount(shape: readonly unknown[], where: string): number {
  const dims = shape.map((dim, i) => {
    if (typeof dim !== "number" && typeof dim !== "bigint")
      invalid(where, `shape[${i}] is not a number`);
    const n = Number(dim);
    if (!Number.isSafeInteger(n) || n < 0)
      invalid(where, `shape[${i}] = ${String(dim)} is not a non-negative integer`);
    return n;
  });
  // A 0 anywhere makes the tensor empty, whatever the other dimensions are.
  if (dims.includes(0)) return 0;
  let count = 1;
  for (const n of dims) {
    count *= n;
    if (count > MAX_ELEMENTS)
      invalid(where, `shape [${shape.join(", ")}] has more than ${MAX_ELEMENTS} elements`);
  }
  return count;
}

function invalid(where: string, message: string): never {
  throw new ValidationError([{ path: where, message }]);
}

/** Flattens nested JSON arrays (`[[1, 2], [3, 4]]` → `[1, 2, 3, 4]`), bounded in depth. */
function flatten(data: unknown, where: string): unknown[] {
  if (!Array.isArray(data)) return [data];
  const out: unknown[] = [];
  const walk = (value: unknown[], depth: number): void => {
    if (depth > 32) invalid(where, "data is nested more than 32 levels deep");
    for (const item of value) {
      if (Array.isArray(item)) walk(item, depth + 1);
      else out.push(item);
    }
  };
  walk(data, 0);
  return out;
}

/** Builds a tensor from JSON data (`inputs[i].data` of a REST request), checking every element. */
export function tensorFromJson(
  datatype: unknown,
  shape: unknown,
  data: unknown,
  where: string,
): Tensor {
  if (!isDatatype(datatype))
    invalid(
      where,
      `unknown datatype ${JSON.stringify(datatype)}; expected one of ${DATATYPES.join(", ")}`,
    );
  if (!Array.isArray(shape)) invalid(where, "shape must be an array of dimensions");
  const count = elementCount(shape, where);
  const items = flatten(data, where);
  if (items.length !== count) {
    invalid(
      where,
      `shape [${shape.join(", ")}] holds ${count} elements but data has ${items.length}`,
    );
  }
  const dims = shape.map(Number);
  if (datatype === "BYTES") {
    // Strings from JSON; bytes from gRPC's bytes_contents and raw contents.
    if (!items.every((v) => typeof v === "string" || v instanceof Uint8Array))
      invalid(where, "BYTES data must be strings (or bytes)");
    return { datatype, shape: dims, data: items };
  }
  if (datatype === "BOOL") {
    if (!items.every((v) => typeof v === "boolean"))
      invalid(where, "BOOL data must be true or false");
    return { datatype, shape: dims, data: items };
  }
  const TypedArrayType = ARRAYS[datatype]!;
  const out = new TypedArrayType(count);
  const big = datatype === "INT64" || datatype === "UINT64";
  const float = datatype === "FP16" || datatype === "FP32" || datatype === "FP64";
  const range = RANGES[datatype];
  for (let i = 0; i < count; i++) {
    const v = items[i];
    // gRPC's int64_contents and uint64_contents arrive exact, as bigints.
    if (big && typeof v === "bigint") {
      if (!BIG_RANGES[datatype].holds(v))
        invalid(
          where,
          `data[${i}] = ${v} is out of ${datatype}'s range (${RANGES[datatype]!.text})`,
        );
      (out as unknown as unknown[])[i] = v;
      continue;
    }
    if (typeof v !== "number" || !Number.isFinite(v) || (!float && !Number.isInteger(v)))
      invalid(where, `data[${i}] = ${JSON.stringify(v)} is not a valid ${datatype} value`);
    // A JSON number past 2^53 has been rounded already (9007199254740993 reads as ...992):
    // refused rather than passed on as a value the client did not send.
    if (big && !Number.isSafeInteger(v) && RANGES[datatype]!.holds(v, undefined))
      invalid(
        where,
        `data[${i}] is past ±2^53 (it reads as ${v}), where a JSON number is not exact; send ${datatype} values this large over gRPC (int64_contents, uint64_contents or raw_input_contents)`,
      );
    // A typed array would wrap or round it silently (300 as UINT8 is 44).
    const stored = big ? BigInt(v) : datatype === "FP16" ? halfBits(v) : v;
    if (range && !range.holds(v, stored))
      invalid(where, `data[${i}] = ${v} is out of ${datatype}'s range (${range.text})`);
    (out as unknown as unknown[])[i] = stored;
  }
  return { datatype, shape: dims, data: out };
}

/** What each datatype holds, for numbers from JSON or gRPC's wider `*_contents` fields. */
const RANGES: Partial<
  Record<Datatype, { holds: (v: number, stored: unknown) => boolean; text: string }>
> = {
  UINT8: inclusive(0, 255),
  UINT16: inclusive(0, 65_535),
  UINT32: inclusive(0, 4_294_967_295),
  // 2^64 - 1 and 2^63 - 1 are not doubles: the bounds are exclusive powers of two.
  UINT64: { holds: (v) => v >= 0 && v < 2 ** 64, text: "0 to 2^64 - 1" },
  INT8: inclusive(-128, 127),
  INT16: inclusive(-32_768, 32_767),
  INT32: inclusive(-2_147_483_648, 2_147_483_647),
  INT64: { holds: (v) => v >= -(2 ** 63) && v < 2 ** 63, text: "-2^63 to 2^63 - 1" },
  // `stored`: its half-precision bits, an infinity when it rounds past 65504.
  FP16: { holds: (_v, stored) => ((stored as number) & 0x7c00) !== 0x7c00, text: "±65504" },
  FP32: { holds: (v) => Number.isFinite(Math.fround(v)), text: "±3.4028235e38" },
};

/** The same bounds for exact 64-bit integers (gRPC's `int64_contents`, `uint64_contents`). */
const BIG_RANGES: Record<"INT64" | "UINT64", { holds: (v: bigint) => boolean }> = {
  UINT64: { holds: (v) => v >= 0n && v < 2n ** 64n },
  INT64: { holds: (v) => v >= -(2n ** 63n) && v < 2n ** 63n },
};

function inclusive(min: number, max: number): { holds: (v: number) => boolean; text: string } {
  return { holds: (v) => v >= min && v <= max, text: `${min} to ${max}` };
}

/**
 * The IEEE 754 half-precision bits of `v`, rounded to the nearest (ties to even), as the
 * Open Inference Protocol carries FP16 (JSON numbers here; raw 16-bit words in raw
 * contents and in the typed array a graph receives).
 */
export function halfBits(v: number): number {
  if (Number.isNaN(v)) return 0x7e00;
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a >= 65_520) return sign | 0x7c00; // rounds to infinity
  if (a < 2 ** -14) return sign | roundEven(a * 2 ** 24); // subnormal (1024 is the least normal)
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  const m = roundEven((a / 2 ** e - 1) * 1024);
  // A mantissa that rounds up to 1024 carries into the exponent: the bits add up the same.
  return sign | (((e + 15) << 10) + m);
}

/** The number that half-precision bits `h` stand for. */
export function halfValue(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m === 0 ? sign * Infinity : NaN;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** `x` (≥ 0) rounded to the nearest integer, ties to even. */
function roundEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 === 1 ? r - 1 : r;
}

/** Builds a tensor from raw little-endian bytes (`raw_input_contents`). */
export function tensorFromRaw(
  datatype: unknown,
  shape: unknown,
  raw: Uint8Array,
  where: string,
): Tensor {
  if (!isDatatype(datatype)) invalid(where, `unknown datatype ${JSON.stringify(datatype)}`);
  if (!Array.isArray(shape)) invalid(where, "shape must be an array of dimensions");
  const count = elementCount(shape, where);
  const dims = shape.map(Number);
  if (datatype === "BYTES") {
    const items: Uint8Array[] = [];
    let offset = 0;
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    while (offset < raw.byteLength) {
      if (offset + 4 > raw.byteLength) invalid(where, "raw BYTES contents are truncated");
      const length = view.getUint32(offset, true);
      offset += 4;
      if (offset + length > raw.byteLength) invalid(where, "raw BYTES contents are truncated");
      items.push(raw.slice(offset, offset + length));
      offset += length;
    }
    if (items.length !== count)
      invalid(where, `shape holds ${count} elements but raw contents have ${items.length}`);
    return { datatype, shape: dims, data: items };
  }
  const TypedArrayType = ARRAYS[datatype]!;
  const expected = count * TypedArrayType.BYTES_PER_ELEMENT;
  if (raw.byteLength !== expected) {
    invalid(
      where,
      `shape [${dims.join(", ")}] of ${datatype} needs ${expected} bytes but raw contents have ${raw.byteLength}`,
    );
  }
  const copy = raw.slice(); // aligned, owned
  const data = new TypedArrayType(copy.buffer, 0, count);
  return {
    datatype,
    shape: dims,
    data: datatype === "BOOL" ? [...data].map((v) => v !== 0) : data,
  };
}

/** Raw little-endian bytes of a tensor (`raw_output_contents`). */
export function tensorToRaw(tensor: Tensor): Uint8Array {
  if (tensor.datatype === "BYTES") {
    const parts = (tensor.data as readonly (string | Uint8Array)[]).map((v) =>
      typeof v === "string" ? new TextEncoder().encode(v) : v,
    );
    const out = new Uint8Array(parts.reduce((n, p) => n + 4 + p.byteLength, 0));
    const view = new DataView(out.buffer);
    let offset = 0;
    for (const part of parts) {
      view.setUint32(offset, part.byteLength, true);
      out.set(part, offset + 4);
      offset += 4 + part.byteLength;
    }
    return out;
  }
  if (tensor.datatype === "BOOL")
    return Uint8Array.from(tensor.data as readonly boolean[], (b) => (b ? 1 : 0));
  const data = tensor.data as TypedArray;
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * JSON-ready data of a tensor (numbers, booleans or strings). INT64 and UINT64 values are
 * numbers where a double holds them exactly and bigints past 2^53, which {@link oipJson}
 * writes as exact JSON integers.
 */
export function tensorToJson(tensor: Tensor): unknown[] {
  if (tensor.datatype === "BYTES") {
    return (tensor.data as readonly (string | Uint8Array)[]).map((v) =>
      typeof v === "string" ? v : new TextDecoder().decode(v),
    );
  }
  // FP16 words (a Float16Array, on Node 22+, reads as numbers below).
  if (tensor.datatype === "FP16" && tensor.data instanceof Uint16Array)
    return Array.from(tensor.data, halfValue);
  if (isTypedArray(tensor.data))
    return Array.from(tensor.data as ArrayLike<number | bigint>, (v) =>
      typeof v === "bigint" && v >= -MAX_SAFE && v <= MAX_SAFE ? Number(v) : v,
    );
  return [...tensor.data];
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Stands in for a bigint while JSON.stringify runs; random, so no string in the data matches. */
const BIGINT_MARK = `~bigint-${randomUUID()}~`;
const MARKED = new RegExp(`"${BIGINT_MARK}(-?\\d+)"`, "g");

/**
 * JSON text of a value whose tensors may hold bigints ({@link tensorToJson}): each as an
 * exact JSON integer, as Triton writes INT64 (JSON.stringify refuses bigints).
 */
export function oipJson(value: unknown): string {
  let marked = false;
  const text = JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v !== "bigint") return v;
    marked = true;
    return `${BIGINT_MARK}${v}`;
  });
  return marked ? text.replace(MARKED, "$1") : text;
}

/** Describes a result value as a tensor (numbers, arrays, typed arrays, strings, tensors). */
export function toTensor(value: unknown): Tensor {
  if (isTensor(value)) return value;
  if (isTypedArray(value))
    return { datatype: datatypeOf(value), shape: [value.length], data: value };
  if (typeof value === "number")
    return { datatype: "FP64", shape: [1], data: Float64Array.of(value) };
  if (typeof value === "bigint") {
    // A typed array would wrap one past 64 bits (2^70 was 0): it goes as its digits.
    if (value >= -(2n ** 63n) && value < 2n ** 63n)
      return { datatype: "INT64", shape: [1], data: BigInt64Array.of(value) };
    if (value >= 0n && value < 2n ** 64n)
      return { datatype: "UINT64", shape: [1], data: BigUint64Array.of(value) };
    return { datatype: "BYTES", shape: [1], data: [value.toString()] };
  }
  if (typeof value === "boolean") return { datatype: "BOOL", shape: [1], data: [value] };
  if (typeof value === "string") return { datatype: "BYTES", shape: [1], data: [value] };
  if (Array.isArray(value)) {
    const tensor = arrayTensor(value);
    if (tensor) return tensor;
  }
  return { datatype: "BYTES", shape: [1], data: [jsonText(value) ?? "null"] };
}

/**
 * A nested array as a tensor: numbers (FP64), booleans, strings or bytes (`Uint8Array`s,
 * BYTES, as a request's BYTES elements arrive), bigints (INT64, else UINT64), or rows that
 * are all typed arrays of one other kind (`Float32Array[]` is FP32 `[n, m]`). Undefined
 * for a ragged array (rows of different lengths), a sparse one, or mixed elements: no
 * shape describes it, and it goes as JSON text instead.
 */
function arrayTensor(value: unknown[]): Tensor | undefined {
  const isRow = (v: unknown): v is TypedArray => isTypedArray(v) && !(v instanceof Uint8Array);
  const shape: number[] = [];
  for (let level: unknown = value; ;) {
    if (isRow(level)) {
      shape.push(level.length);
      break;
    }
    if (!Array.isArray(level)) break;
    shape.push(level.length);
    level = level[0];
  }
  const leaves: unknown[] = [];
  let rows: TypedArray | undefined;
  let rowCount = 0;
  const regular = (v: unknown, depth: number): boolean => {
    if (depth === shape.length) {
      leaves.push(v);
      return !Array.isArray(v) && !isRow(v);
    }
    if (isRow(v)) {
      if (depth !== shape.length - 1 || v.length !== shape[depth]) return false;
      if (rows !== undefined && rows.constructor !== v.constructor) return false;
      rows = v;
      rowCount++;
      for (let i = 0; i < v.length; i++) leaves.push(v[i]);
      return true;
    }
    if (!Array.isArray(v) || v.length !== shape[depth] || depth > 32) return false;
    // By index: a hole (a sparse array) is an element too (undefined), not skipped.
    for (let i = 0; i < v.length; i++) if (!regular(v[i], depth + 1)) return false;
    return true;
  };
  if (!regular(value, 0)) return undefined;
  if (rows) {
    // Every row a typed array of that kind: a plain array among them would be coerced.
    const outer = shape.slice(0, -1).reduce((n, d) => n * d, 1);
    if (rowCount !== outer) return undefined;
    const Rows = rows.constructor as new (values: unknown[]) => TypedArray;
    return { datatype: datatypeOf(rows), shape, data: new Rows(leaves) };
  }
  if (leaves.every((v) => typeof v === "number"))
    return { datatype: "FP64", shape, data: Float64Array.from(leaves) };
  if (leaves.every((v) => typeof v === "boolean")) return { datatype: "BOOL", shape, data: leaves };
  if (leaves.every((v) => typeof v === "string" || v instanceof Uint8Array))
    return {
      datatype: "BYTES",
      shape,
      // A Buffer goes as the bytes it views.
      data: leaves.map((v) =>
        v instanceof Uint8Array && v.constructor !== Uint8Array
          ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength)
          : v,
      ),
    };
  if (leaves.every((v) => typeof v === "bigint")) {
    if (leaves.every((v) => BIG_RANGES.INT64.holds(v)))
      return { datatype: "INT64", shape, data: BigInt64Array.from(leaves) };
    if (leaves.every((v) => BIG_RANGES.UINT64.holds(v)))
      return { datatype: "UINT64", shape, data: BigUint64Array.from(leaves) };
  }
  return undefined;
}

export function isTensor(value: unknown): value is Tensor {
  if (typeof value !== "object" || value === null) return false;
  const t = value as Partial<Tensor>;
  return (
    isDatatype(t.datatype) &&
    Array.isArray(t.shape) &&
    (isTypedArray(t.data) || Array.isArray(t.data))
  );
}

/**
 * A result as JSON text (see {@link jsonReplacer}); one that cannot be (a cycle, which
 * structured clone carries) fails saying why, not as an unnamed 500.
 */
export function jsonText(value: unknown): string | undefined {
  try {
    // A replacer makes V8 take its slow path for the whole value (2 µs of every request for
    // `{ "sum": 5 }`); most results have nothing for it to replace.
    return JSON.stringify(value, plainJson(value) ? undefined : jsonReplacer);
  } catch (error) {
    throw new TributaryError(
      "EXECUTION_FAILED",
      `The result could not be written as JSON: ${(error as Error).message.split("\n")[0]}`,
    );
  }
}

/** How deep, and over how many values, {@link plainJson} looks before it leaves a value to the replacer. */
const PLAIN_DEPTH = 32;
const PLAIN_VALUES = 10_000;

/**
 * Whether JSON.stringify writes `value` as {@link jsonReplacer} would without it: no typed
 * array, bigint or `toJSON` in it, looking as JSON.stringify does (own enumerable keys,
 * array indices) to a depth of 32 and over at most 10,000 values: past that (a large or
 * sparse array, a cycle) the replacer decides, as it did for every value before.
 */
function plainJson(value: unknown): boolean {
  budget = PLAIN_VALUES;
  return plain(value, 0);
}

/** What {@link plain} may still look at, in the value {@link plainJson} was given. */
let budget = 0;

function plain(value: unknown, depth: number): boolean {
  if (--budget < 0 || typeof value === "bigint") return false;
  if ((typeof value !== "object" && typeof value !== "function") || value === null) return true;
  if (typeof (value as { toJSON?: unknown }).toJSON === "function") return false;
  if (typeof value === "function") return true; // left out, as JSON.stringify does
  if (depth > PLAIN_DEPTH || ArrayBuffer.isView(value)) return false;
  if (Array.isArray(value)) {
    if (value.length > budget) return false;
    for (let i = 0; i < value.length; i++) if (!plain(value[i], depth + 1)) return false;
    return true;
  }
  for (const key of Object.keys(value))
    if (!plain((value as Record<string, unknown>)[key], depth + 1)) return false;
  return true;
}

/** JSON for results: typed arrays as arrays, bigints as numbers or strings. */
export function jsonReplacer(_key: string, value: unknown): unknown {
  if (isTypedArray(value))
    return Array.from(value as ArrayLike<number | bigint>, (v) =>
      typeof v === "bigint" ? Number(v) : v,
    );
  if (typeof value === "bigint")
    return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
  return value;
}
