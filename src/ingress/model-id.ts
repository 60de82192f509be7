/**
 * @internal How a request names its model (multiplexing): the `x-tributary-model-id`
 * header (HTTP, and gRPC metadata), or the OIP model version (`/v2/models/{app}/versions/
 * {version}/infer`, gRPC `model_version`). The id reaches `requestContext().multiplexedModelId`.
 */
import { ValidationError } from "../errors.js";
import { isModelId, MAX_MODEL_ID_LENGTH } from "../values.js";

export const MODEL_ID_HEADER = "x-tributary-model-id";

/**
 * The model id of a request: the first of `candidates` that is set (a header may arrive as
 * a list: its first value). Throws `ValidationError` (422 / INVALID_ARGUMENT) for an id that
 * is not 1 to 128 printable ASCII characters.
 */
export function modelIdOf(...candidates: unknown[]): string | undefined {
  for (const candidate of candidates) {
    const value = Array.isArray(candidate) ? (candidate[0] as unknown) : candidate;
    if (value === undefined || value === "") continue;
    if (!isModelId(value)) {
      throw new ValidationError(
        [
          {
            path: MODEL_ID_HEADER,
            message: `expected at most ${MAX_MODEL_ID_LENGTH} printable ASCII characters`,
          },
        ],
        "The model id is malformed",
      );
    }
    return value;
  }
  return undefined;
}
