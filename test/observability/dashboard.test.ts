import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { Instance } from "tributary/internal";
import { cli, ROOT } from "../cli/run-cli.js";
import { eventually } from "../runtime/eventually.js";
import { scrape, total } from "./scrape.js";

const FIXTURES = fileURLToPath(new URL("../fixtures/", import.meta.url));

const config = (replicas: number) => `http: { port: 0 }
applications:
  - name: metered
    importPath: ${join(FIXTURES, "metrics-app.ts")}:app
    deployments:
      - name: double
        numReplicas: ${replicas}
`;

const chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser", process.env.CHROMIUM_PATH]
  .filter((p): p is string => !!p)
  .find((p) => existsSync(p));

describe(
  "an instance's admin API: /metrics, the dashboard and tributary status",
  { timeout: 180_000 },
  () => {
    let dir: string;
    let instance: Instance;
    let admin: string;
    let front: string;
    const deploy = (replicas: number) => instance.deploy(config(replicas), join(dir, "serve.yaml"));
    const post = (x: number) =>
      fetch(`${front}/metered`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(x),
      });

    before(async () => {
      dir = await mkdtemp(join(ROOT, ".tmp-observability-"));
      instance = new Instance({
        adminHost: "127.0.0.1",
        adminPort: 0,
        adminToken: undefined,
        stateDir: undefined,
        imports: { projectDir: dir, allowedDirs: [FIXTURES] },
      });
      admin = await instance.listen();
      await deploy(1);
      front = ((await instance.status()) as { url: string }).url;
    });
    after(async () => {
      await instance.close();
      await rm(dir, { recursive: true, force: true });
    });

    test("status - tributary status prints applications, deployments and replica counts by state; --json prints the JSON", async () => {
      const text = await cli(["status", "--address", admin]);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, /^metered: RUNNING {2}\(POST \/metered\)$/m);
      assert.match(
        text.stdout,
        /Last deployed \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(\d+ s ago\): started/,
      );
      assert.match(
        text.stdout,
        /^ {2}DEPLOYMENT\s+STATUS\s+REPLICAS\s+ONGOING\s+QUEUED\s+MESSAGE$/m,
      );
      assert.match(text.stdout, /^ {2}double\s+HEALTHY\s+1 RUNNING \(target 1\)\s+0\s+0/m);
      assert.match(text.stdout, /^ {2}model\s+HEALTHY\s+1 RUNNING \(target 1\)/m);
      const json = await cli(["status", "--json", "--address", admin]);
      const answer = JSON.parse(json.stdout) as {
        applications: Record<string, { status: string; lastDeploy: { action: string } }>;
      };
      assert.equal(answer.applications.metered!.status, "RUNNING");
      assert.equal(answer.applications.metered!.lastDeploy.action, "started");
    });

    test("metrics - the admin API and the front door both answer /metrics with the instance's series", async () => {
      for (let i = 0; i < 5; i++) assert.equal((await post(i)).status, 200);
      for (const url of [admin, front]) {
        await eventually(
          async () => {
            const { samples } = await scrape(url);
            return (
              total(samples, "tributary_http_requests_total", {
                application: "metered",
                code: "200",
              }) >= 5 &&
              total(samples, "tributary_deployment_requests_total", {
                application: "metered",
                deployment: "double",
              }) >= 5
            );
          },
          5_000,
          `${url}/metrics has the application's requests`,
        );
      }
    });

    test(
      "dashboard - in headless Chromium the numbers change under load, and a scaled deployment shows its new replica count",
      {
        skip:
          chromium || process.env.CI
            ? false
            : "no Chromium here (apt-get install chromium; .ci/run does)",
      },
      async () => {
        assert.ok(chromium, "CI installs Chromium (.ci/run); it is missing");
        const { chromium: launcher } = await import("playwright-core");
        const browser = await launcher.launch({ executablePath: chromium, args: ["--no-sandbox"] });
        let loading = true;
        const load = (async () => {
          while (loading)
            await post(1)
              .then((r) => r.arrayBuffer())
              .catch(() => undefined);
        })();
        try {
          const page = await browser.newPage();
          await page.goto(`${admin}/`, { timeout: 15_000 });
          const row = page.locator('tr[data-deployment="double"]');
          await row.waitFor({ timeout: 15_000 });
          // The graph: the ingress and both deployments drawn, with the edges between them.
          assert.equal(await page.locator('svg [data-node="double"]').count(), 1);
          assert.equal(await page.locator('svg [data-node="model"]').count(), 1);
          assert.equal(await page.locator('svg [data-node="ingress"]').count(), 1);
          assert.ok((await page.locator("svg path.edge").count()) >= 2);
          // Under load the rate is above zero, and it changes from one update to the next.
          const rates: string[] = [];
          await eventually(
            async () => {
              const rate = (await row.locator(".rate").textContent()) ?? "";
              if (rates.at(-1) !== rate) rates.push(rate);
              return Number(rate) > 0 && new Set(rates.filter((r) => Number(r) > 0)).size >= 2;
            },
            20_000,
            "the dashboard shows a request rate that changes",
          );
          assert.match((await row.locator(".p50").textContent()) ?? "", /\d ms$/);
          assert.match((await row.locator(".p99").textContent()) ?? "", /\d ms$/);
          assert.equal(await row.locator(".replicas").getAttribute("data-running"), "1");
          // Scaling double to 3 replicas: the page shows them.
          await deploy(3);
          await eventually(
            async () => (await row.locator(".replicas").getAttribute("data-running")) === "3",
            30_000,
            "the dashboard shows 3 running replicas of double",
          );
          assert.match(
            (await row.locator(".replicas").textContent()) ?? "",
            /3 RUNNING \(target 3\)/,
          );
        } finally {
          loading = false;
          await load;
          await browser.close();
        }
      },
    );
  },
);
