import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import {
  ConfigError,
  codeMismatch,
  parseConfig,
  moduleVersion,
  resolveApplication,
  applicationToYaml,
} from "tributary/internal";
import { app } from "../fixtures/config-app.js";

const FILE = "test/config/serve.yaml"; // importPath is resolved from here

function problems(text: string): string[] {
  try {
    parseConfig(text, FILE);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    assert.equal(error.code, "INVALID_CONFIG");
    return error.problems.map((p) => `${p.file}:${p.line}:${p.column}: ${p.path}: ${p.message}`);
  }
  return assert.fail("expected the config to be rejected");
}

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

const valid = (deployments: string) => `applications:
  - name: gate
    importPath: ../fixtures/config-app.ts:app
    deployments:
${deployments}`;

describe("serve.yaml", () => {
  test("config - a YAML syntax error gives the line and column", () => {
    const [problem] = problems("applications:\n  - name: [gate\n");
    assert.match(problem!, /^test\/config\/serve\.yaml:\d+:\d+: : YAML syntax error/);
  });

  test("config - wrong types and bad values name the field, what was found and what is allowed", () => {
    const found = problems(
      valid(
        "      - name: thresholder\n        numReplicas: two\n        maxQueuedRequests: -1\n        isolation: vm\n",
      ),
    );
    assert.deepEqual(found, [
      'test/config/serve.yaml:6:22: applications[0].deployments[0].numReplicas: found string "two"; expected number, received string',
      "test/config/serve.yaml:7:28: applications[0].deployments[0].maxQueuedRequests: found number -1; Too small: expected number to be >=0",
      'test/config/serve.yaml:8:20: applications[0].deployments[0].isolation: found string "vm"; expected one of "thread"|"process"',
    ]);
  });

  test("config - tracing takes an http(s) otlpEndpoint and an optional serviceName; anything else names the field", () => {
    const ok = parseConfig(
      `tracing: { otlpEndpoint: "http://127.0.0.1:4318", serviceName: shop }\n${valid("      []\n")}`,
      FILE,
    );
    assert.deepEqual(ok.config.tracing, {
      otlpEndpoint: "http://127.0.0.1:4318",
      serviceName: "shop",
    });
    const found = problems(
      `tracing:\n  otlpEndpoint: collector:4318\n  sampler: always\n${valid("      []\n")}`,
    );
    assert.equal(found.length, 2, found.join("\n"));
    assert.match(
      found[0]!,
      /^test\/config\/serve\.yaml:2:17: tracing\.otlpEndpoint: .*expected an http\(s\) URL/,
    );
    assert.match(found[1]!, /^test\/config\/serve\.yaml:3:3: tracing\.sampler: unknown field/);
  });

  test("config - an unknown field is rejected with a did-you-mean", () => {
    const [problem] = problems(valid("      - name: thresholder\n        nmReplicas: 2\n"));
    assert.equal(
      problem,
      'test/config/serve.yaml:6:9: applications[0].deployments[0].nmReplicas: unknown field "nmReplicas". Did you mean "numReplicas"? Allowed: name, numReplicas, maxOngoingRequests, maxQueuedRequests, maxQueueWait, autoscaling, userConfig, isolation, resources, healthCheckPeriod, healthCheckTimeout, gracefulShutdownTimeout.',
    );
    const typo = problems("applicatons: []\n");
    assert.ok(
      typo.some((p) =>
        /^test\/config\/serve\.yaml:1:1: applicatons: unknown field "applicatons"\. Did you mean "applications"\?/.test(
          p,
        ),
      ),
      typo.join("\n"),
    );
    assert.ok(typo.some((p) => /applications: found nothing; expected array/.test(p)));
    // Ray Serve's names: a near spelling, or the field that does the same here.
    const ray = problems(
      `http_options: { port: 8000 }\n${valid(
        "      - name: thresholder\n        num_replicas: 2\n        autoscaling_config: {}\n        ray_actor_options: {}\n",
      )}`,
    );
    for (const expected of [
      /:1:1: http_options: unknown field "http_options"\. Did you mean "http" \(Ray Serve's http_options\)\?/,
      /num_replicas: unknown field "num_replicas"\. Did you mean "numReplicas"\?/,
      /autoscaling_config: .*Did you mean "autoscaling" \(Ray Serve's autoscaling_config\)\?/,
      /ray_actor_options: .*Did you mean "resources" \(Ray Serve's ray_actor_options\)\?/,
    ])
      assert.ok(
        ray.some((p) => expected.test(p)),
        `${String(expected)} in:\n${ray.join("\n")}`,
      );
  });

  test("config - negative replicas and minReplicas > maxReplicas are rejected", () => {
    assert.match(
      problems(valid("      - name: thresholder\n        numReplicas: -2\n"))[0]!,
      /numReplicas: found number -2; Too small/,
    );
    assert.match(
      problems(
        valid(
          "      - name: thresholder\n        autoscaling: { minReplicas: 3, maxReplicas: 1 }\n",
        ),
      )[0]!,
      /:6:37: applications\[0\]\.deployments\[0\]\.autoscaling\.minReplicas: found number 3; minReplicas must not be greater than maxReplicas/,
    );
  });

  test("config - an unknown deployment, a missing module and a module that throws point at their lines", async () => {
    assert.deepEqual(
      await resolveProblems(valid("      - name: threshold\n        numReplicas: 2\n")),
      [
        'test/config/serve.yaml:5:15: applications[0].deployments[0].name: found "threshold", but application "gate" has no such deployment. Did you mean "thresholder"? Its deployments: thresholder, ingress.',
      ],
    );
    // The ingress takes its queue limits only: anything else would be ignored.
    const ingress = await resolveProblems(
      valid("      - name: ingress\n        maxOngoingRequests: 50\n        numReplicas: 3\n"),
    );
    assert.equal(ingress.length, 1, ingress.join("\n"));
    assert.match(
      ingress[0]!,
      /:5:9: applications\[0\]\.deployments\[0\]: the ingress takes only maxOngoingRequests, maxQueuedRequests, maxQueueWait, not numReplicas/,
    );
    assert.throws(() => app.withOptions({ ingress: { isolation: "process" } }), {
      code: "INVALID_OPTIONS",
      message: /the ingress takes only .*not isolation/,
    });
    const missing = await resolveProblems(
      "applications:\n  - name: gate\n    importPath: ../fixtures/nowhere.ts:app\n",
    );
    assert.match(
      missing[0]!,
      /^test\/config\/serve\.yaml:3:17: applications\[0\]\.importPath: the module \.\.\/fixtures\/nowhere\.ts does not exist/,
    );
    const throwing = await resolveProblems(
      "applications:\n  - name: gate\n    importPath: ../fixtures/throws-on-import.ts\n",
    );
    assert.match(
      throwing[0]!,
      /:3:17: applications\[0\]\.importPath: importing \.\.\/fixtures\/throws-on-import\.ts failed: the model registry is unreachable/,
    );
  });

  test("config - YAML alias bombs and names inherited from Object.prototype are rejected", async () => {
    const bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]"];
    for (let i = 1; i < 8; i++)
      bomb.push(
        `${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(10)
          .fill(`*${String.fromCharCode(96 + i)}`)
          .join(", ")}]`,
      );
    assert.match(
      problems(bomb.join("\n") + "\n")[0]!,
      /YAML could not be read: it uses more than 1,000 aliases/,
    );
    // Exactly 1,000 aliases (the documented limit) are read; 1,001 are not.
    const aliases = (n: number) =>
      `${valid("      - name: thresholder\n")}x-anchor: &v 1\nx-list: [${Array(n).fill("*v").join(", ")}]\n`;
    assert.match(problems(aliases(1_000))[0]!, /x-anchor: /, "only the unknown keys are refused");
    assert.match(problems(aliases(1_001))[0]!, /more than 1,000 aliases/);
    assert.match(
      (await resolveProblems(valid("      - name: constructor\n        numReplicas: 2\n")))[0]!,
      /found "constructor", but application "gate" has no such deployment/,
    );
  });

  test("config - a valid file applies its overrides over the code's options", async () => {
    const { config, document } = parseConfig(
      `http: { port: 0, requestTimeout: 5s }\n${valid("      - name: thresholder\n        numReplicas: 3\n        userConfig: { threshold: 0.9 }\n")}`,
      FILE,
    );
    const resolved = await resolveApplication(config.applications[0]!, 0, document, FILE);
    assert.equal(resolved.deployments.thresholder?.numReplicas, 3);
    assert.deepEqual(resolved.deployments.thresholder?.userConfig, { threshold: 0.9 });
    assert.equal(resolved.routePrefix, "/gate");
  });

  test("config - maxQueueWait takes a duration, or off (YAML 1.2: a string, not false)", async () => {
    const resolve = async (value: string) => {
      const { config, document } = parseConfig(
        valid(`      - name: thresholder\n        maxQueueWait: ${value}\n`),
        FILE,
      );
      return (await resolveApplication(config.applications[0]!, 0, document, FILE)).deployments
        .thresholder?.maxQueueWaitMs;
    };
    assert.equal(await resolve("250ms"), 250);
    assert.equal(await resolve("2s"), 2000);
    assert.equal(await resolve("off"), undefined);
    const [problem] = problems(valid("      - name: thresholder\n        maxQueueWait: soon\n"));
    assert.equal(
      problem,
      'test/config/serve.yaml:6:23: applications[0].deployments[0].maxQueueWait: found string "soon"; expected a duration such as "250ms" or "2s", or "off"',
    );
  });

  test("config - durations are longer than 0 where 0 would refuse or spin, and at most 24 days (what a timer waits)", () => {
    const http = (line: string) => `http:\n  ${line}\n${valid("      - name: thresholder\n")}`;
    assert.match(
      problems(http("requestTimeout: 1000h"))[0]!,
      /http\.requestTimeout: .*at most 24 days/,
    );
    assert.match(problems(http("requestTimeout: 0"))[0]!, /http\.requestTimeout: .*longer than 0/);
    assert.match(problems(http("readTimeout: 0"))[0]!, /http\.readTimeout: .*longer than 0/);
    assert.match(
      problems(valid("      - name: thresholder\n        healthCheckPeriod: 0\n"))[0]!,
      /healthCheckPeriod: .*longer than 0/,
    );
    assert.match(
      problems(valid("      - name: thresholder\n        maxQueueWait: 1000h\n"))[0]!,
      /maxQueueWait: .*at most 24 days/,
    );
    assert.deepEqual(
      parseConfig(http("requestTimeout: 24h"), FILE).config.http?.requestTimeout,
      "24h",
    );
    // A size with a unit is not what it takes: it says what it does take.
    assert.match(problems(http("bodyLimit: 1MB"))[0]!, /http\.bodyLimit: .*a number of bytes/);
  });

  test("build - writes every deployment with the defaults as comments, deterministically, and reads back", async () => {
    const yaml = applicationToYaml(app, "../fixtures/config-app.ts:app", {
      host: "127.0.0.1",
      port: 8000,
    });
    assert.equal(
      yaml,
      applicationToYaml(app, "../fixtures/config-app.ts:app", { host: "127.0.0.1", port: 8000 }),
    );
    assert.match(
      yaml,
      /- name: thresholder\n\s+userConfig:\n\s+threshold: 0\.5\n\s+# numReplicas: 1\n\s+# maxOngoingRequests: 5/,
    );
    const { config, document } = parseConfig(yaml, FILE);
    const resolved = await resolveApplication(config.applications[0]!, 0, document, FILE);
    assert.deepEqual(resolved.deployments, app.deployments);
    // An autoscaled deployment is not offered numReplicas (they exclude each other), and one
    // with numReplicas is offered autoscaling in its place.
    const scaled = applicationToYaml(
      app.withOptions({ thresholder: { autoscaling: { maxReplicas: 3 } } }),
      "../fixtures/config-app.ts:app",
      { host: "127.0.0.1", port: 8000 },
    );
    assert.match(scaled, /- name: thresholder\n(\s+[^#\s].*\n)*\s+# maxOngoingRequests: 5/);
    assert.doesNotMatch(
      scaled.split("- name: thresholder")[1]!.split("- name:")[0]!,
      /numReplicas/,
    );
    const fixed = applicationToYaml(
      app.withOptions({ thresholder: { numReplicas: 2 } }),
      "../fixtures/config-app.ts:app",
      { host: "127.0.0.1", port: 8000 },
    );
    assert.match(fixed, /# autoscaling: \{ .* \} {2}# in place of numReplicas\n/);
  });
});

test("config - the code version changes when a module the app imports changes, and not when another application beside it does", async () => {
  const dir = await mkdtemp(join(tmpdir(), "tributary-version-"));
  try {
    await mkdir(join(dir, "model"));
    await writeFile(join(dir, "app.ts"), 'import { w } from "./model/weights.js";\n');
    await writeFile(join(dir, "model", "weights.ts"), 'export * from "../shared";');
    await writeFile(join(dir, "shared.ts"), "export const w = [1];");
    await writeFile(join(dir, "other.ts"), "export const other = 1;");
    const before = moduleVersion("./app.ts:app", dir);
    const other = moduleVersion("./other.ts:app", dir);
    assert.equal(moduleVersion("./app.ts:app", dir), before, "stable");
    await writeFile(join(dir, "shared.ts"), "export const w = [2];");
    const after = moduleVersion("./app.ts:app", dir);
    assert.notEqual(after, before, "a module imported two steps away changed");
    assert.equal(moduleVersion("./other.ts:app", dir), other, "an application beside it did not");
    await writeFile(join(dir, "other.ts"), "export const other = 2;");
    await writeFile(join(dir, "unrelated.mjs"), "export {};");
    assert.equal(
      moduleVersion("./app.ts:app", dir),
      after,
      "files it does not import do not count",
    );
    // A cluster node checks its copy against the version the head applied.
    const file = join(dir, "app.ts");
    assert.equal(codeMismatch({ file, version: after }, "node n1"), undefined);
    assert.equal(codeMismatch(undefined, "node n1"), undefined, "run() in code names none");
    assert.match(
      codeMismatch({ file, version: before }, "node n1")!,
      new RegExp(
        `^node n1 has other code than the head for .*app\\.ts .*version ${after} here, ${before} on the head`,
      ),
    );
    assert.match(
      codeMismatch({ file: join(dir, "gone.ts"), version: after }, "node n1")!,
      /^node n1 has no .*gone\.ts: every node needs the application's code/,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
