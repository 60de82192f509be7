/**
 * @internal zod, loaded on first use instead of when the package is imported. Replicas
 * import the package (through the user's module) but validate nothing, so a replica of an
 * application that does not use zod itself never loads it (about 6 MiB and tens of
 * milliseconds per replica). Loaded with `require()` of an ES module (Node ^20.19 or ≥ 22.12), so
 * the instance is the same as the user's `import { z } from "zod"`.
 */
import { createRequire } from "node:module";
import type { z as Zod } from "zod";
import { TributaryError } from "./errors.js";

let loaded: typeof Zod | undefined;

export function zod(): typeof Zod {
  try {
    loaded ??= (createRequire(import.meta.url)("./zod-esm.mjs") as { z: typeof Zod }).z;
  } catch (error) {
    if ((error as { code?: string }).code !== "ERR_REQUIRE_ESM") throw error;
    throw new TributaryError(
      "INTERNAL",
      `Tributary needs Node.js ^20.19.0 or >= 22.12.0 (require() of ES modules); this is ${process.version}.`,
      { cause: error },
    );
  }
  return loaded;
}
