/**
 * @internal Reading request bodies within their limits: a multipart body's parts are
 * counted together against `bodyLimit` as they stream in, and JSON text is scanned for its
 * nesting depth before it is parsed.
 */
import type { FastifyRequest } from "fastify";
import { TributaryError, ValidationError } from "../errors.js";

export const tooLarge = (limit: number): TributaryError =>
  new TributaryError(
    "PAYLOAD_TOO_LARGE",
    `The request body is larger than the server's bodyLimit of ${limit} bytes.`,
  );

/**
 * Whether JSON text nests arrays and objects deeper than `limit`: one pass over the text,
 * before it is parsed, so a hostile body costs a scan and not a parse (nor a stack).
 */
export function nestsDeeperThan(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > limit) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/** Reads the request into the graph's input: JSON, raw bytes, or multipart fields. */
export async function readInput(
  request: FastifyRequest,
  bytesField: string | undefined,
  bodyLimit: number,
): Promise<unknown> {
  if (request.isMultipart()) {
    const declared = Number(request.headers["content-length"]);
    if (declared > bodyLimit) throw tooLarge(bodyLimit);
    const fields: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
    // The parts together are bounded by bodyLimit as they stream in, not after.
    let total = 0;
    const count = (bytes: number): void => {
      total += bytes;
      if (total > bodyLimit) throw tooLarge(bodyLimit);
    };
    try {
      const parts = request.parts({
        limits: { fileSize: bodyLimit, fieldSize: bodyLimit, parts: 1000 },
      });
      for await (const part of parts) {
        count(part.fieldname.length);
        // As a JSON body's: such a key is refused, not dropped.
        if (part.fieldname === "__proto__" || part.fieldname === "constructor")
          throw new TributaryError(
            "BAD_REQUEST",
            `a part is named "${part.fieldname}", which no input field can be`,
          );
        // One part per field: a second would replace the first unsaid.
        if (Object.hasOwn(fields, part.fieldname))
          throw new ValidationError([
            { path: part.fieldname, message: "given in two parts; a field takes one" },
          ]);
        if (part.type === "file") {
          const chunks: Buffer[] = [];
          for await (const chunk of part.file as AsyncIterable<Buffer>) {
            count(chunk.length);
            chunks.push(chunk);
          }
          if (part.file.truncated) throw tooLarge(bodyLimit);
          fields[part.fieldname] = new Uint8Array(Buffer.concat(chunks));
        } else {
          const value = part.value;
          count(typeof value === "string" ? Buffer.byteLength(value) : 0);
          fields[part.fieldname] = value;
        }
      }
    } catch (error) {
      const e = error as { statusCode?: number; message?: string; code?: string };
      if (e.statusCode === 413 || (error instanceof TributaryError && e.code !== "BAD_REQUEST"))
        throw error;
      throw new TributaryError(
        "BAD_REQUEST",
        `Malformed multipart body: ${e.message ?? String(error)}`,
      );
    }
    return { ...fields };
  }
  const body = request.body;
  if (body instanceof Uint8Array) return bytesField === undefined ? body : { [bytesField]: body };
  return body;
}

/** A request's header by its lower-case name (the first, when it is repeated). */
export function headerReader(request: FastifyRequest): (name: string) => string | undefined {
  return (name) => {
    const value = request.headers[name];
    return Array.isArray(value) ? value[0] : value;
  };
}
