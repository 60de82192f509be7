import { run, type Application, type RunOptions, type Server } from "tributary";

/** `run()` on a free port (so test files can run in parallel), logging only fatal errors. */
export function serve<In, Out>(
  app: Application<In, Out>,
  options: RunOptions = {},
): Promise<Server<In, Out>> {
  return run(app, { port: 0, logLevel: "fatal", ...options });
}
