import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { serve } from "../serve.js";
import { eventually } from "../runtime/eventually.js";
import { app } from "../fixtures/metrics-app.js";

const installed = spawnSync("prometheus", ["--version"]).status === 0;

/** A free TCP port on 127.0.0.1. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

describe("a real Prometheus scrapes a running server", { timeout: 120_000 }, () => {
  test(
    "prometheus - scrapes /metrics and answers a query for a deployment's series through its HTTP API",
    {
      skip:
        installed || process.env.CI
          ? false
          : "prometheus is not installed (apt-get install prometheus; .ci/run does)",
    },
    async () => {
      assert.ok(installed, "CI installs prometheus (.ci/run); it is missing");
      await using server = await serve(app);
      for (let i = 0; i < 7; i++) {
        const response = await fetch(`${server.url}/metered`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(i),
        });
        assert.equal(response.status, 200);
      }
      const dir = await mkdtemp(join(tmpdir(), "tributary-prometheus-"));
      const port = await freePort();
      const target = new URL(server.url).host;
      await writeFile(
        join(dir, "prometheus.yml"),
        `global: { scrape_interval: 1s, evaluation_interval: 1s }
scrape_configs:
  - job_name: tributary
    static_configs: [{ targets: ["${target}"] }]
`,
      );
      const child = spawn(
        "prometheus",
        [
          `--config.file=${join(dir, "prometheus.yml")}`,
          `--storage.tsdb.path=${join(dir, "data")}`,
          `--web.listen-address=127.0.0.1:${port}`,
        ],
        { stdio: ["ignore", "ignore", "pipe"] },
      );
      let log = "";
      child.stderr.on("data", (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
      const exited = new Promise((resolve) => child.once("exit", resolve));
      try {
        const query = async (
          promql: string,
        ): Promise<{ metric: Record<string, string>; value: [number, string] }[]> => {
          const response = await fetch(
            `http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(promql)}`,
          ).catch(() => undefined);
          if (!response?.ok) return [];
          const body = (await response.json()) as {
            data: { result: { metric: Record<string, string>; value: [number, string] }[] };
          };
          return body.data.result;
        };
        let result: Awaited<ReturnType<typeof query>> = [];
        await eventually(
          async () => {
            assert.equal(child.exitCode, null, `prometheus exited:\n${log}`);
            result = await query(
              'sum by (application, deployment) (tributary_deployment_requests_total{deployment="double",outcome="ok"})',
            );
            return result.length === 1 && Number(result[0]!.value[1]) === 7;
          },
          60_000,
          "Prometheus has scraped the 7 calls of deployment double",
        );
        assert.deepEqual(result[0]!.metric, { application: "metered", deployment: "double" });
        // The scrape itself was healthy.
        const up = await query('up{job="tributary"}');
        assert.equal(up[0]?.value[1], "1");
      } finally {
        child.kill("SIGTERM");
        const killer = setTimeout(() => child.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(killer);
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
});
