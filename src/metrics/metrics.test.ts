import assert from "node:assert/strict";
import { test } from "node:test";
import { Counter, Gauge, Registry } from "prom-client";
import { Metrics, type MetricsJson } from "./metrics.js";

/** A registry's series with one counter at `value`. */
async function counted(value: number): Promise<MetricsJson> {
  const registry = new Registry();
  const counter = new Counter({
    name: "tributary_http_requests_total",
    help: "requests",
    labelNames: ["code"],
    registers: [registry],
  });
  counter.inc({ code: "200" }, value);
  return registry.getMetricsAsJSON();
}

test("metrics - what gone sources counted stays in every scrape, summed; their gauges go", async () => {
  const metrics = new Metrics({ enabled: true });
  let collected = 0;
  const unlist = metrics.addRemote(async () => {
    collected++;
    return [];
  });
  unlist();
  metrics.keepCounted(await counted(3));
  metrics.keepCounted(await counted(4));
  for (let scrape = 0; scrape < 2; scrape++) {
    const { text } = await metrics.exposition();
    assert.match(text, /^tributary_http_requests_total\{code="200"\} 7$/m);
  }
  assert.equal(collected, 0, "an unlisted source is not asked");
  // Gauges are a source's state, not its history: they go with it.
  const registry = new Registry();
  new Gauge({ name: "gone_gauge", help: "g", registers: [registry] }).set(1);
  metrics.keepCounted(await registry.getMetricsAsJSON());
  assert.doesNotMatch((await metrics.exposition()).text, /gone_gauge/);
});
