/** @internal How the server names itself in protocol metadata. */
import { createRequire } from "node:module";

const pkg = createRequire(import.meta.url)("../../package.json") as {
  name: string;
  version: string;
};

export const SERVER_NAME = pkg.name;
export const SERVER_VERSION = pkg.version;
