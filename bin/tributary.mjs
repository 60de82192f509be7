#!/usr/bin/env node
// The tributary command: TypeScript (the package and the user's modules) runs through tsx.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../src/cli/main.ts");
process.exitCode = await main(process.argv);
