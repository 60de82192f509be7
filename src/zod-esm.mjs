// zod's ES module build, for src/zod.ts to load synchronously with require(): the same
// module instance as a user's `import { z } from "zod"` (zod's CommonJS build would be a
// second copy). A plain .mjs file, so that it loads the same from src/ and dist/.
export { z } from "zod";
