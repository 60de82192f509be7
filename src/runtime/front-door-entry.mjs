// Every front-door worker process starts here, as replicas start at replica-entry.mjs.
import { loadHost } from "../data/load-host.mjs";

await loadHost(import.meta.url, "front-door-worker");
