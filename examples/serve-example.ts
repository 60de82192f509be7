/**
 * What each example's `main.ts` does first: print the graph, serve the application on
 * PORT (default 8000, 0 for any free port), list the deployments and their replicas, and
 * drain and exit 0 on Ctrl-C (or SIGTERM).
 */
import { run, toMermaid, type Application, type Server } from "tributary";

export async function serveExample<In, Out>(
  app: Application<In, Out>,
  graph: Parameters<typeof toMermaid>[0],
): Promise<{ server: Server<In, Out>; url: string }> {
  console.log("Graph (Mermaid):\n" + toMermaid(graph) + "\n");
  const started = Date.now();
  const server = await run(app, { port: Number(process.env.PORT ?? 8000) });
  const url = `${server.url}${app.routePrefix}`;
  console.log(`Serving "${app.name}" at ${url} (started in ${Date.now() - started} ms)`);

  const deployments = Object.values((await server.status()).applications[app.name]!.deployments);
  const width = Math.max(...deployments.map((d) => d.name.length)) + 1;
  for (const d of deployments) {
    const replicas = d.replicas.map((r) => `${r.id} (${r.host})`).join(", ");
    console.log(`  ${d.name.padEnd(width)} ${d.status.padEnd(8)} ${replicas}`);
  }

  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      console.log("\nDraining…");
      void server.close().then(() => {
        console.log("Stopped.");
        process.exit(0);
      });
    });
  }
  return { server, url };
}
