// Every replica thread or process starts here (see load-host.mjs).
import { loadHost } from "./load-host.mjs";

await loadHost(import.meta.url, "replica-host");
