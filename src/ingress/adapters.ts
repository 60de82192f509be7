/**
 * Input adapters: zod schemas that turn what a client sends into what a pipeline wants.
 * They run in the ingress while the request is validated, so a failure is a 422 naming
 * the field.
 *
 * @example
 * const input = new InputNode(z.object({ image: image(), boxes: tensor({ datatype: "FP32" }) }));
 */
import { requirePackages } from "../optional-package.js";
import type { z } from "zod";
import { zod } from "../zod.js";
import { ValidationError } from "../errors.js";
import {
  DATATYPES,
  isTensor,
  isTypedArray,
  tensorFromJson,
  type Datatype,
  type Tensor,
} from "./tensors.js";

/** What the Open Inference Protocol's model metadata says of an adapted input. */
export interface TensorMeta {
  readonly datatype: Datatype;
  readonly shape: readonly number[];
}

/** Reads the tensor metadata an adapter attached to a schema (through optional/default wrappers). */
export function tensorMetaOf(schema: z.ZodType): TensorMeta | undefined {
  const { globalRegistry } = zod();
  for (let s: z.ZodType | undefined = schema; s;) {
    const meta = globalRegistry.get(s) as { tensor?: TensorMeta } | undefined;
    if (meta?.tensor) return meta.tensor;
    const def = s._zod.def as { innerType?: z.ZodType; in?: z.ZodType };
    s = def.innerType ?? def.in;
  }
  return undefined;
}

let tensorJsonSchema:
  z.ZodType<{ datatype: Datatype; shape: number[]; data: unknown[] }> | undefined;

function tensorJson(): z.ZodType<{ datatype: Datatype; shape: number[]; data: unknown[] }> {
  const z = zod();
  tensorJsonSchema ??= z.object({
    datatype: z.enum(DATATYPES),
    shape: z.array(z.number().int().nonnegative()),
    data: z.array(z.unknown()),
  });
  return tensorJsonSchema;
}

/**
 * A tensor input, sent as JSON `{ datatype, shape, data }` (data flat or nested) or, from
 * code, as a `Tensor` whose data is a typed array. Data length must match the shape; a
 * `shape` given here is enforced (its rank, and each size that is not -1).
 */
export function tensor(options: { datatype?: Datatype; shape?: readonly number[] } = {}) {
  const meta: TensorMeta = { datatype: options.datatype ?? "FP32", shape: options.shape ?? [-1] };
  const z = zod();
  return z
    .union([z.custom<Tensor>((v) => isTensor(v) && isTypedArray(v.data)), tensorJson()])
    .transform((value, ctx): Tensor => {
      try {
        const t =
          isTensor(value) && isTypedArray(value.data)
            ? value
            : tensorFromJson(value.datatype, value.shape, value.data, "");
        if (options.datatype && t.datatype !== options.datatype) {
          throw new ValidationError([
            { path: "", message: `expected datatype ${options.datatype}, got ${t.datatype}` },
          ]);
        }
        if (options.shape && !fitsShape(t.shape, options.shape)) {
          throw new ValidationError([
            {
              path: "",
              message: `expected shape [${options.shape.join(", ")}] (-1: any size), got [${t.shape.join(", ")}]`,
            },
          ]);
        }
        if (isTypedArray(t.data) && t.data.length !== t.shape.reduce((a, b) => a * b, 1)) {
          throw new ValidationError([
            {
              path: "",
              message: `shape [${t.shape.join(", ")}] does not match ${t.data.length} elements`,
            },
          ]);
        }
        return t;
      } catch (error) {
        const message =
          error instanceof ValidationError
            ? error.issues.map((i) => i.message).join("; ")
            : String(error);
        ctx.issues.push({ code: "custom", message, input: value });
        return z.NEVER;
      }
    })
    .meta({ tensor: meta });
}

/** Whether `shape` has the rank of `declared` and its size wherever that is not -1. */
function fitsShape(shape: readonly number[], declared: readonly number[]): boolean {
  return shape.length === declared.length && declared.every((d, i) => d < 0 || shape[i] === d);
}

/** Images larger than this many pixels are refused (decompression bombs). */
const MAX_PIXELS = 40_000_000;

/**
 * An encoded image (PNG, JPEG, WebP, …, as bytes) decoded to an RGB tensor:
 * `{ datatype: "UINT8", shape: [height, width, 3], data }`, rows top to bottom. The image
 * is turned upright as its EXIF orientation says, transparency is laid onto white, and
 * grayscale becomes RGB.
 */
export function image() {
  requirePackages("image()", ["sharp"]);
  const z = zod();
  return z
    .instanceof(Uint8Array)
    .transform(async (bytes, ctx): Promise<Tensor> => {
      try {
        // Loaded on first use: replicas import this module but never decode images.
        const { default: sharp } = await import("sharp");
        const { data, info } = await sharp(bytes, { limitInputPixels: MAX_PIXELS })
          .rotate() // upright, as the EXIF orientation says (phone photos)
          .flatten({ background: "#ffffff" }) // transparency onto white
          .toColourspace("srgb")
          .raw()
          .toBuffer({ resolveWithObject: true });
        const pixels = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
        return { datatype: "UINT8", shape: [info.height, info.width, info.channels], data: pixels };
      } catch (error) {
        ctx.issues.push({
          code: "custom",
          message: `not a decodable image: ${(error as Error).message}`,
          input: bytes,
        });
        return z.NEVER;
      }
    })
    .meta({ tensor: { datatype: "UINT8", shape: [-1, -1, 3] } });
}
