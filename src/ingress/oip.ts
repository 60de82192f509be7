/**
 * The Open Inference Protocol (KServe v2) mapping, shared by the REST and gRPC front
 * doors: model metadata from the input schema, named input tensors onto the graph's input,
 * and results back onto output tensors.
 */
import type { z } from "zod";
import { TributaryError, ValidationError } from "../errors.js";
import { isAsyncIterable, stopStream } from "../values.js";
import { tensorMetaOf } from "./adapters.js";
import { isTypedArray, toTensor, type Datatype, type Tensor } from "./tensors.js";

export interface TensorMetadata {
  readonly name: string;
  readonly datatype: Datatype;
  readonly shape: readonly number[];
}

/** How one input tensor becomes a value of the graph's input. */
type FieldKind = "tensor" | "number" | "string" | "boolean" | "array" | "bytes" | "value";

interface InputField extends TensorMetadata {
  readonly kind: FieldKind;
}

/** The schema's shape, when the input is an object. */
export function objectShape(schema: z.ZodType | undefined): Record<string, z.ZodType> | undefined {
  const def = schema?._zod.def as { type?: string; shape?: Record<string, z.ZodType> } | undefined;
  return def?.type === "object" ? def.shape : undefined;
}

/** The innermost schema type, through optional, default, nullable and pipes (input side). */
function baseType(schema: z.ZodType): { type: string; element?: string; cls?: unknown } {
  let s = schema;
  for (;;) {
    const def = s._zod.def as {
      type: string;
      innerType?: z.ZodType;
      in?: z.ZodType;
      element?: z.ZodType;
    };
    const next = def.innerType ?? (def.type === "pipe" ? def.in : undefined);
    if (!next)
      return {
        type: def.type,
        ...(def.element && { element: baseType(def.element).type }),
        cls: classOf(s),
      };
    s = next;
  }
}

/** The class `z.instanceof(C)` keeps (`C`), else undefined. */
function classOf(schema: z.ZodType): unknown {
  return (schema._zod as unknown as { bag?: { Class?: unknown } }).bag?.Class;
}

/** The datatype of a typed array class a field takes (`z.instanceof(Float32Array)`). */
const CLASS_DATATYPES = new Map<unknown, Datatype>([
  [Float32Array, "FP32"],
  [Float64Array, "FP64"],
  [Int8Array, "INT8"],
  [Int16Array, "INT16"],
  [Int32Array, "INT32"],
  [BigInt64Array, "INT64"],
  [Uint16Array, "UINT16"],
  [Uint32Array, "UINT32"],
  [BigUint64Array, "UINT64"],
]);

function fieldOf(name: string, schema: z.ZodType): InputField {
  const meta = tensorMetaOf(schema);
  if (meta) return { name, kind: "tensor", ...meta };
  const { type, element, cls } = baseType(schema);
  switch (type) {
    case "number":
    case "int":
      return { name, kind: "number", datatype: "FP64", shape: [1] };
    case "bigint":
      return { name, kind: "number", datatype: "INT64", shape: [1] };
    case "string":
      return { name, kind: "string", datatype: "BYTES", shape: [1] };
    case "boolean":
      return { name, kind: "boolean", datatype: "BOOL", shape: [1] };
    case "array":
      return {
        name,
        kind: "array",
        datatype: element === "string" ? "BYTES" : element === "boolean" ? "BOOL" : "FP64",
        shape: [-1],
      };
    case "custom":
      return { name, kind: "bytes", datatype: CLASS_DATATYPES.get(cls) ?? "UINT8", shape: [-1] };
    default:
      return { name, kind: "value", datatype: "BYTES", shape: [-1] };
  }
}

/** The inputs a graph accepts, as named tensors; a non-object input is one tensor named `input`. */
export class OipModel {
  readonly name: string;
  readonly inputs: readonly InputField[];
  /** Whether the graph's input is an object of named fields (else the single tensor is the input). */
  readonly named: boolean;

  constructor(name: string, schema: z.ZodType | undefined) {
    this.name = name;
    const shape = objectShape(schema);
    this.named = shape !== undefined;
    this.inputs = shape
      ? Object.entries(shape).map(([key, field]) => fieldOf(key, field))
      : [
          schema
            ? fieldOf("input", schema)
            : { name: "input", kind: "value", datatype: "BYTES", shape: [-1] },
        ];
  }

  metadata(): {
    name: string;
    versions: string[];
    platform: string;
    inputs: TensorMetadata[];
    outputs: TensorMetadata[];
  } {
    return {
      name: this.name,
      versions: ["1"],
      platform: "tributary",
      inputs: this.inputs.map(({ name, datatype, shape }) => ({ name, datatype, shape })),
      outputs: [],
    };
  }

  /** The graph input for the request's named tensors (each already checked against its shape). */
  toGraphInput(tensors: readonly (Tensor & { name: string })[]): unknown {
    const byName = new Map<string, InputField>(this.inputs.map((f) => [f.name, f]));
    const values: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
    for (const t of tensors) {
      const field = byName.get(t.name);
      if (!field) {
        throw new ValidationError([
          {
            path: t.name,
            message: `model "${this.name}" has no input "${t.name}"; its inputs are ${this.inputs.map((f) => f.name).join(", ")}`,
          },
        ]);
      }
      if (t.name in values)
        throw new ValidationError([{ path: t.name, message: "input given twice" }]);
      values[t.name] = valueFor(field, t);
    }
    return this.named ? { ...values } : values.input;
  }
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });

function single(field: InputField, t: Tensor): unknown {
  const data = t.data as ArrayLike<unknown>;
  if (data.length !== 1) {
    throw new ValidationError([
      {
        path: field.name,
        message: `expected one element (shape [1]), got shape [${t.shape.join(", ")}]`,
      },
    ]);
  }
  const v = data[0];
  return typeof v === "bigint" ? Number(v) : v;
}

function valueFor(field: InputField, t: Tensor): unknown {
  switch (field.kind) {
    case "tensor":
      // The tensor alone: the request's name for it is the field it arrives in.
      return { datatype: t.datatype, shape: t.shape, data: t.data };
    case "number":
    case "boolean":
      return single(field, t);
    case "string": {
      const v = single(field, t);
      if (!(v instanceof Uint8Array)) return v;
      try {
        return UTF8.decode(v);
      } catch {
        // As the HTTP body's check does: U+FFFD in place of the bytes would change the text.
        throw new ValidationError([
          { path: field.name, message: "expected text: the BYTES element is not valid UTF-8" },
        ]);
      }
    }
    case "array":
      return isTypedArray(t.data)
        ? Array.from(t.data as ArrayLike<number | bigint>, (v) =>
            typeof v === "bigint" ? Number(v) : v,
          )
        : [...t.data];
    case "bytes":
      if (t.datatype === "BYTES" && t.data.length === 1) {
        const v = t.data[0];
        return typeof v === "string" ? new TextEncoder().encode(v) : v;
      }
      return t.data;
    case "value":
      return t.data.length === 1 ? single(field, t) : t.data;
  }
}

/** Output tensors for a graph result: one per field of an object result, else `output`. */
export function resultToTensors(result: unknown): (Tensor & { name: string })[] {
  if (
    typeof result === "object" &&
    result !== null &&
    !Array.isArray(result) &&
    !isTypedArray(result) &&
    !("datatype" in result)
  ) {
    return Object.entries(result).map(([name, value]) => named(name, toTensor(value)));
  }
  return [named("output", toTensor(result))];
}

/**
 * An output tensor named for its field: a tensor the graph passed on from its input keeps
 * nothing of it but its datatype, shape and data (not the input's name).
 */
function named(name: string, { datatype, shape, data }: Tensor): Tensor & { name: string } {
  return { name, datatype, shape, data };
}

/**
 * The output tensors a request asked for (all, when `wanted` is absent). An output the
 * result does not have is refused, as Triton does, instead of being left out unsaid.
 */
export function requestedTensors(
  result: unknown,
  wanted: ReadonlySet<string> | undefined,
  model: string,
): (Tensor & { name: string })[] {
  const tensors = resultToTensors(result);
  if (!wanted) return tensors;
  const names = new Set(tensors.map((t) => t.name));
  const unknown = [...wanted].filter((name) => !names.has(name));
  if (unknown.length > 0)
    throw new ValidationError([
      {
        path: "outputs",
        message: `model "${model}" has no output ${unknown.map((n) => JSON.stringify(n)).join(", ")}; its outputs are ${[...names].join(", ") || "none"}`,
      },
    ]);
  return tensors.filter((t) => wanted.has(t.name));
}

/** An OIP request `id`: at most 128 printable ASCII characters (HTTP's `x-request-id` too). */
export const OIP_ID = /^[\x20-\x7e]{0,128}$/;

/**
 * Refuses a streamed result where one response must carry it: the stream is stopped (its
 * replica's slot frees) and the error says where it can be read (`readIt`).
 */
export function refuseStream(result: unknown, model: string, readIt: string): void {
  if (!isAsyncIterable(result) || isTypedArray(result)) return;
  stopStream(result);
  throw new TributaryError(
    "BAD_REQUEST",
    `Model "${model}" streams its result; read it ${readIt}.`,
  );
}

/** The one field of an object input that takes raw bytes, where a raw body goes; else none. */
export function bytesFieldOf(schema: z.ZodType | undefined): string | undefined {
  const shape = objectShape(schema);
  if (!shape) return undefined;
  const fields = Object.entries(shape).filter(([, field]) => baseType(field).type === "custom");
  return fields.length === 1 ? fields[0]![0] : undefined;
}
