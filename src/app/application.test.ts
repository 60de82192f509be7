import assert from "node:assert/strict";
import { test } from "node:test";
import { build, deployment, GraphBuildError, InputNode, INGRESS, OptionsError } from "../index.js";

class Model {
  forward(x: number): number {
    return x;
  }
}
const add = deployment(function add(a: number, b: number): number {
  return a + b;
});
const input = new InputNode<number>();
const m1 = deployment(Model, { numReplicas: 2, userConfig: { t: 1 } }).bind();
const m2 = deployment(Model).bind();
const out = add.bind(m1.forward.bind(input), m2.forward.bind(input));

test("build - names deployments after variables, adds ingress, and resolves options", () => {
  const app = build(out, { name: "sum", names: { m1, m2 } });
  assert.equal(app.name, "sum");
  assert.equal(app.routePrefix, "/sum");
  assert.deepEqual(Object.keys(app.deployments), ["m1", "m2", "add", INGRESS]);
  assert.equal(app.deployments.m1?.numReplicas, 2);
  assert.equal(app.deployments.m2?.numReplicas, 1);
  assert.equal(app.deployments.ingress?.maxOngoingRequests, 1000);
  assert.ok(Object.isFrozen(app) && Object.isFrozen(app.deployments));
  const plain = build(out);
  assert.deepEqual([plain.name, plain.routePrefix], ["default", "/"]);
  assert.deepEqual(Object.keys(plain.deployments), ["Model", "Model_1", "add", INGRESS]);
});

test("build - withOptions returns a new application and rejects unknown deployments", () => {
  const app = build(out, { name: "sum", names: { m1, m2 } });
  const scaled = app.withOptions({ m1: { numReplicas: 4 }, ingress: { maxQueuedRequests: 5 } });
  assert.equal(scaled.deployments.m1?.numReplicas, 4);
  assert.deepEqual(scaled.deployments.m1?.userConfig, { t: 1 }, "other fields are kept");
  assert.equal(app.deployments.m1?.numReplicas, 2, "the original is unchanged");
  assert.equal(scaled.deployments.ingress?.maxQueuedRequests, 5);
  assert.throws(
    () => app.withOptions({ m3: { numReplicas: 1 } }),
    (e: unknown) =>
      e instanceof OptionsError &&
      /has no deployment "m3"; its deployments are "m1", "m2", "add", "ingress"/.test(e.message),
  );
  assert.throws(() => app.withOptions({ m1: { numReplicas: 0 } }), /numReplicas/);
  assert.throws(() => app.withOptions({ m1: { name: "other" } }), /cannot be renamed/);
});

test("build - numReplicas and autoscaling: not both in one place; a later one decides the replica count", () => {
  const scaling = { minReplicas: 0, maxReplicas: 3 };
  assert.throws(
    () => deployment(class A {}, { numReplicas: 2, autoscaling: scaling }),
    (e: unknown) =>
      e instanceof OptionsError && /numReplicas and autoscaling cannot both be set/.test(e.message),
  );
  const auto = deployment(
    function auto(x: number): number {
      return x;
    },
    { autoscaling: scaling },
  );
  const app = build(auto.bind(new InputNode<number>()), { name: "scaled" });
  const name = "auto";
  assert.equal(app.deployments[name]?.autoscaling?.maxReplicas, 3);
  // An override (YAML, withOptions) that sets numReplicas turns the code's autoscaling off.
  const fixed = app.withOptions({ [name]: { numReplicas: 4 } }).deployments[name]!;
  assert.equal(fixed.numReplicas, 4);
  assert.equal(fixed.autoscaling, undefined);
  // One that sets autoscaling replaces a numReplicas set before it.
  const again = app
    .withOptions({ [name]: { numReplicas: 4 } })
    .withOptions({ [name]: { autoscaling: { maxReplicas: 5 } } }).deployments[name]!;
  assert.equal(again.autoscaling?.maxReplicas, 5);
  assert.throws(
    () => app.withOptions({ [name]: { numReplicas: 4, autoscaling: scaling } }),
    /numReplicas and autoscaling cannot both be set/,
  );
  // .options() on a deployment follows the same rule.
  const options = build(auto.options({ numReplicas: 2 }).bind(new InputNode<number>()), {
    name: "fixed",
  }).deployments[name]!;
  assert.deepEqual([options.numReplicas, options.autoscaling], [2, undefined]);
});

test("build - toConfig lists every deployment with its options, for YAML", () => {
  const config = build(out, { name: "sum", routePrefix: "/v1/sum", names: { m1, m2 } }).toConfig();
  assert.deepEqual(config, {
    name: "sum",
    routePrefix: "/v1/sum",
    importPath: "./src/app/application.test.ts",
    deployments: [
      { name: "m1", numReplicas: 2, userConfig: { t: 1 } },
      { name: "m2" },
      { name: "add" },
      { name: "ingress", maxOngoingRequests: 1000, maxQueuedRequests: 1000 },
    ],
  });
});

test("build - bad names and route prefixes are rejected", () => {
  assert.throws(() => build(out, { name: "has space" }), OptionsError);
  assert.throws(() => build(out, { routePrefix: "sum" }), /must start with "\/"/);
  assert.throws(() => build(out, { names: { x: 42 } }), GraphBuildError);
  assert.throws(
    () => build(out, { names: { a: m1, b: m1.forward.bind(1) } }),
    /"a" and "b" name the same deployment/,
  );
});

test("build - assets are GET paths to readable files, resolved to absolute paths", () => {
  const here = new URL(import.meta.url);
  const app = build(out, { name: "sum", assets: { "/": here, "/code.ts": here.pathname } });
  assert.deepEqual(app.assets, { "/": here.pathname, "/code.ts": here.pathname });
  assert.deepEqual(app.withOptions({ add: {} }).assets, app.assets, "kept by withOptions");
  assert.throws(
    () => build(out, { assets: { "/page.html": new URL("./missing.html", here) } }),
    (e: unknown) => e instanceof OptionsError && /"\/page.html".*cannot be read/.test(e.message),
  );
  assert.throws(() => build(out, { assets: { "page.html": here } }), /not a URL path/);
  assert.throws(() => build(out, { assets: { "/../x": here } }), /not a URL path/);
  assert.throws(() => build(out, { assets: { "/x": "page.html" } }), /relative path "page.html"/);
  assert.throws(() => build(out, { assets: { "/openapi.json": here } }), /reserved/);
  assert.throws(
    () => build(out, { assets: { "/metrics": here } }),
    /\/metrics and \/v2\/… are reserved/,
  );
  const atRoot = build(out, { assets: { "/": here } });
  assert.throws(() => atRoot.withRoutePrefix("/v2"), /asset at \/v2\/ would hide/);
});
