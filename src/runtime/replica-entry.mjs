// Every replica thread or process starts here. Workers do not inherit the parent's
// loaders, so TypeScript support (tsx) is registered before the host and the user's
// module are imported.
import { register } from "tsx/esm/api";

register();
await import("./replica-host.ts");
