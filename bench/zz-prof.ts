import { run } from "tributary";
import { app } from "./fixtures/diamond-noop.js";
const server = await run(app, { port: 0, logLevel: "silent" });
console.log(server.url);
await new Promise((r) => setTimeout(r, 12_000));
await server.close();
