import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { OptionsError } from "tributary";
import {
  ConfigError,
  parseConfig,
  resolveApplication,
  applicationToYaml,
} from "tributary/internal";
import { app } from "../fixtures/choice-app.js";

const FILE = "test/config/serve.yaml"; // importPath is resolved from here

const withSplits = (splits: string) => `applications:
  - name: choice
    importPath: ../fixtures/choice-app.ts:app
    splits:
${splits}`;

async function resolveProblems(text: string): Promise<string[]> {
  const { config, document } = parseConfig(text, FILE);
  try {
    await resolveApplication(config.applications[0]!, 0, document, FILE);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.problems.map((p) => `${p.file}:${p.line}:${p.column}: ${p.path}: ${p.message}`);
  }
  return assert.fail("expected the config to be rejected");
}

describe("serve.yaml splits", () => {
  test("splits - tributary build writes each split's weights, and they read back", async () => {
    const yaml = applicationToYaml(app, "../fixtures/choice-app.ts:app", {
      host: "127.0.0.1",
      port: 8000,
    });
    assert.match(
      yaml,
      /splits:\n\s+# Traffic of each split\(\) by arm[^\n]*\n[^\n]*\n\s+- name: even-model\n\s+weights:\n\s+stable: 90\n\s+canary: 10\n/,
    );
    const { config, document } = parseConfig(yaml, FILE);
    const resolved = await resolveApplication(config.applications[0]!, 0, document, FILE);
    assert.deepEqual(resolved.splits, { "even-model": { stable: 90, canary: 10 } });
  });

  test("splits - a config's weights override the code's", async () => {
    const { config, document } = parseConfig(
      withSplits("      - name: even-model\n        weights: { stable: 25, canary: 75 }\n"),
      FILE,
    );
    const resolved = await resolveApplication(config.applications[0]!, 0, document, FILE);
    assert.deepEqual(resolved.splits, { "even-model": { stable: 25, canary: 75 } });
    assert.deepEqual(resolved.toConfig().splits, [
      { name: "even-model", weights: { stable: 25, canary: 75 } },
    ]);
  });

  test("splits - an unknown split, a missing arm, a bad sum and a fraction point at their lines", async () => {
    assert.deepEqual(
      await resolveProblems(
        withSplits(
          "      - name: even-modle\n        weights: { stable: 50, canary: 50 }\n" +
            "      - name: even-model\n        weights: { stable: 100 }\n",
        ),
      ),
      [
        'test/config/serve.yaml:5:15: applications[0].splits[0].name: found "even-modle", but application "choice" has no such split. Did you mean "even-model"? Its splits: even-model.',
        'test/config/serve.yaml:8:18: applications[0].splits[1].weights: Split "even-model" (arms "stable", "canary"): arm "canary" has no weight. Give every arm an integer weight so that they sum to 100, such as { stable: 100, canary: 0 }.',
      ],
    );
    const sum = await resolveProblems(
      withSplits("      - name: even-model\n        weights: { stable: 50, canary: 40 }\n"),
    );
    assert.match(sum[0]!, /splits\[0\]\.weights: .*the weights sum to 90, not 100/);
    const { config } = (() => {
      try {
        return parseConfig(
          withSplits("      - name: even-model\n        weights: { stable: 50.5, canary: 49.5 }\n"),
          FILE,
        );
      } catch (error) {
        assert.ok(error instanceof ConfigError);
        assert.match(error.problems[0]!.path, /splits\[0\]\.weights\.stable/);
        return { config: undefined };
      }
    })();
    assert.equal(config, undefined, "a fractional weight is rejected when the file is read");
  });

  test("splits - withSplits checks the split's name and weights, and keeps the graph", () => {
    assert.throws(
      () => app.withSplits({ nope: { stable: 100, canary: 0 } }),
      (e: unknown) =>
        e instanceof OptionsError &&
        /has no split "nope"; its splits are "even-model"/.test(e.message),
    );
    assert.throws(
      () => app.withSplits({ "even-model": { stable: 101, canary: -1 } }),
      OptionsError,
    );
    const next = app.withSplits({ "even-model": { stable: 0, canary: 100 } });
    assert.equal(next.graph, app.graph);
    assert.deepEqual(app.splits["even-model"], { stable: 90, canary: 10 });
    assert.deepEqual(next.withOptions({ odd: { numReplicas: 2 } }).splits["even-model"], {
      stable: 0,
      canary: 100,
    });
  });
});
