import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { ConfigError, Instance, loadInferenceService } from "tributary/internal";
import { ROOT } from "./run-cli.js";
import { type Client, rpc } from "../ingress/grpc-client.js";
import { scrape, total } from "../observability/scrape.js";

/** An application whose answers say which version of its code served them. */
const moduleSource = (
  name: string,
  version: string,
) => `import { build, deployment, InputNode } from "tributary";
export class Answer {
  async answer(x: number): Promise<string> {
    if (x >= 1000) await new Promise((resolve) => setTimeout(resolve, x)); // a slow request
    return "${name}:${version}:" + x;
  }
}
const answer = deployment(Answer).bind();
export const app = build(answer.answer.bind(new InputNode<number>()), { name: "${name}", names: { answer } });
`;

const entry = (name: string, prefix: string) => `  - name: ${name}
    routePrefix: ${prefix}
    importPath: ./${name}/app.ts:app
`;
const configWith = (workers: number, ...entries: string[]) =>
  `http: { port: 0, workers: ${workers} }\ngrpc: { port: 0 }\napplications:\n${entries.join("")}`;
const config = (...entries: string[]) => configWith(1, ...entries);

/** Callers that keep posting to `url` and record every answer and failure. */
function load(url: string, callers = 3) {
  let running = true;
  const answers: { answer: string; started: number }[] = [];
  const failures: string[] = [];
  const done = Promise.all(
    Array.from({ length: callers }, async () => {
      while (running) {
        const started = Date.now();
        const response = await fetch(url, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: "1",
        }).catch((e: Error) => e);
        if (response instanceof Error) failures.push(response.message);
        else if (!response.ok) failures.push(`${response.status} ${await response.text()}`);
        else answers.push({ answer: (await response.json()) as string, started });
      }
    }),
  );
  return {
    answers,
    failures,
    /** At least `count` answers to calls started after `since` (waited for). */
    async after(since: number, count = 10): Promise<string[]> {
      const until = Date.now() + 20_000;
      while (answers.filter((a) => a.started > since).length < count) {
        if (Date.now() > until)
          assert.fail(`fewer than ${count} answers; failures: ${failures.join()}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      return [...new Set(answers.filter((a) => a.started > since).map((a) => a.answer))];
    },
    stop: async () => {
      running = false;
      await done;
    },
  };
}

/**
 * Two applications of one file served together; a code change of one rolls it alone, under
 * load; a removed one drains. `workers`: the front doors' `http.workers`.
 */
async function rollAndRemove(instance: Instance, dir: string, workers: number): Promise<void> {
  const file = join(dir, "serve.yaml");
  const config = (...entries: string[]) => configWith(workers, ...entries);
  const both = config(entry("alpha", "/a"), entry("beta", "/b"));
  const first = await instance.deploy(both, file);
  assert.deepEqual(
    first.applications.map((a) => [a.application, a.action]),
    [
      ["alpha", "started"],
      ["beta", "started"],
    ],
  );
  const status = (await instance.status()) as {
    url: string;
    grpcPort: number;
    applications: Record<string, { status: string; routePrefix: string }>;
  };
  assert.deepEqual(Object.keys(status.applications), ["alpha", "beta"]);
  assert.equal(status.applications.beta?.routePrefix, "/b");
  const url = status.url;

  // The Open Inference Protocol addresses each application as a model, by name.
  for (const name of ["alpha", "beta"]) {
    const model = await fetch(`${url}/v2/models/${name}`);
    assert.equal(model.status, 200, name);
    assert.equal(((await model.json()) as { name: string }).name, name);
  }
  const unknown = await fetch(`${url}/v2/models/gamma`);
  assert.equal(unknown.status, 404);
  assert.match(((await unknown.json()) as { error: string }).error, /serves "alpha", "beta"/);
  // gRPC too: each application is a model, by name.
  const Service = loadInferenceService();
  const client = new Service(
    `127.0.0.1:${status.grpcPort}`,
    grpc.credentials.createInsecure(),
  ) as unknown as Client;
  try {
    for (const name of ["alpha", "beta"]) {
      const metadata = await rpc<{ name: string }>(client, "ModelMetadata", { name });
      assert.equal(metadata.name, name);
      assert.deepEqual(await rpc(client, "ModelReady", { name }), { ready: true });
    }
    assert.deepEqual(await rpc(client, "ModelReady", { name: "gamma" }), { ready: false });
    await assert.rejects(
      rpc(client, "ModelMetadata", { name: "gamma" }),
      (error: grpc.ServiceError) => error.code === grpc.status.NOT_FOUND,
    );
  } finally {
    client.close();
  }
  const openapi = (await (await fetch(`${url}/openapi.json`)).json()) as {
    paths: Record<string, unknown>;
  };
  assert.ok(openapi.paths["/a"] && openapi.paths["/b"], "both applications' routes");

  const alpha = load(`${url}/a`);
  const beta = load(`${url}/b`);
  try {
    assert.deepEqual(await alpha.after(0), ["alpha:v1:1"]);
    assert.deepEqual(await beta.after(0), ["beta:v1:1"]);

    // New code for alpha: alpha rolls, beta is not touched and answers throughout.
    const alphaSeries = { application: "alpha", deployment: "answer" };
    const before = (await scrape(url)).samples;
    const startsBefore = total(before, "tributary_replica_starts_total", alphaSeries);
    assert.equal(startsBefore, 1);
    await writeFile(join(dir, "alpha", "app.ts"), moduleSource("alpha", "v2"));
    const second = await instance.deploy(both, file);
    assert.deepEqual(
      second.applications.map((a) => [a.application, a.action]),
      [
        ["alpha", "code"],
        ["beta", "unchanged"],
      ],
    );
    const changed = Date.now();
    assert.deepEqual(await alpha.after(changed), ["alpha:v2:1"]);
    assert.deepEqual(await beta.after(changed), ["beta:v1:1"]);
    assert.deepEqual(alpha.failures, [], "alpha lost no request while it rolled");
    // The old code's counts carry on in the same series: Prometheus sees no reset. The new
    // version's replicas have labels of their own (numbered on from the old one's).
    const rolled = (await scrape(url)).samples;
    assert.equal(total(rolled, "tributary_replica_starts_total", alphaSeries), startsBefore + 1);
    const replicasOf = (samples: typeof before): string[] => [
      ...new Set(
        samples
          .filter((x) => x.name === "tributary_deployment_ongoing_requests")
          .filter((x) => x.labels.application === "alpha")
          .map((x) => x.labels.replica!),
      ),
    ];
    assert.deepEqual(replicasOf(before), ["answer#1"]);
    assert.deepEqual(replicasOf(rolled), ["answer#2"]);

    // alpha leaves the file: it is drained and removed; beta goes on.
    await alpha.stop();
    const slow = fetch(`${url}/a`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "1500",
    });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const third = await instance.deploy(config(entry("beta", "/b")), file);
    const drained = await slow;
    assert.equal(drained.status, 200, "a request in flight on a removed application finishes");
    assert.equal(await drained.json(), "alpha:v2:1500");
    assert.deepEqual(
      third.applications.map((a) => [a.application, a.action]),
      [
        ["beta", "unchanged"],
        ["alpha", "removed"],
      ],
    );
    const gone = await fetch(`${url}/a`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "1",
    });
    assert.equal(gone.status, 404);
    assert.equal((await fetch(`${url}/v2/models/alpha`)).status, 404);
    const after = (await instance.status()) as { applications: Record<string, unknown> };
    assert.deepEqual(Object.keys(after.applications), ["beta"]);
    assert.deepEqual(await beta.after(Date.now()), ["beta:v1:1"]);
    assert.ok(beta.answers.length > 30, `beta answered ${beta.answers.length} calls`);
    assert.deepEqual(beta.failures, [], "beta failed no request through every deploy");
  } finally {
    await alpha.stop();
    await beta.stop();
  }
}

/** Writes applications alpha and beta (v1) under `dir`; an instance that may import them. */
async function alphaAndBeta(dir: string, stateDir: string | undefined): Promise<Instance> {
  for (const name of ["alpha", "beta"]) {
    await mkdir(join(dir, name));
    await writeFile(join(dir, name, "app.ts"), moduleSource(name, "v1"));
  }
  return instanceWith(stateDir);
}

/** An instance on loopback with `stateDir`, that may import the files under the repository. */
function instanceWith(stateDir: string | undefined): Instance {
  return new Instance({
    adminHost: "127.0.0.1",
    adminPort: 0,
    adminToken: undefined,
    stateDir,
    imports: { projectDir: ROOT },
  });
}

test("multi-app - an instance is not ready until every application of its first file serves", async () => {
  const dir = await mkdtemp(join(ROOT, ".tmp-multi-app-"));
  const instance = instanceWith(undefined);
  try {
    await mkdir(join(dir, "alpha"));
    await writeFile(join(dir, "alpha", "app.ts"), moduleSource("alpha", "v1"));
    await mkdir(join(dir, "slow"));
    await writeFile(
      join(dir, "slow", "app.ts"),
      `import { build, deployment, InputNode } from "tributary";
export class Slow {
  static ready = new Promise((resolve) => setTimeout(resolve, 2_000));
  async answer(x: number): Promise<number> { await Slow.ready; return x; }
  async checkHealth(): Promise<void> { await Slow.ready; }
}
await new Promise((resolve) => setTimeout(resolve, 2_000)); // a module that loads slowly
const slow = deployment(Slow).bind();
export const app = build(slow.answer.bind(new InputNode<number>()), { name: "slow" });
`,
    );
    const file = join(dir, "serve.yaml");
    const deployed = instance.deploy(config(entry("alpha", "/a"), entry("slow", "/s")), file);
    let failed: unknown;
    deployed.catch((error: unknown) => (failed = error));
    // alpha serves while slow still loads: the instance says it is not ready.
    let seen = 0;
    const deadline = Date.now() + 30_000;
    let settled = false;
    void deployed.finally(() => (settled = true)).catch(() => undefined);
    while (!settled && Date.now() < deadline) {
      // The status first: the fetches after it take long enough for the end of the deploy
      // to be seen here, so "still starting" below held when the status was read.
      const status = (await instance.status()) as {
        url: string | null;
        deploying?: { file: string };
      };
      if (status.url) {
        const ready = await fetch(`${status.url}/v2/health/ready`);
        const alpha = await fetch(`${status.url}/a`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: "1",
        });
        if (alpha.ok && !settled) {
          assert.equal(ready.status, 400, "not ready while slow starts");
          assert.deepEqual(await ready.json(), { ready: false });
          // tributary status says what is being applied.
          assert.equal(status.deploying?.file, file);
          seen++;
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await deployed;
    assert.equal(failed, undefined);
    assert.ok(seen > 0, "alpha served before slow did");
    const url = ((await instance.status()) as { url: string }).url;
    assert.deepEqual(await (await fetch(`${url}/v2/health/ready`)).json(), { ready: true });
  } finally {
    await instance.close();
    await rm(dir, { recursive: true, force: true });
  }
});

describe("several applications in one instance", { timeout: 180_000 }, () => {
  let dir: string;
  let instance: Instance;
  before(async () => {
    dir = await mkdtemp(join(ROOT, ".tmp-multi-app-"));
    instance = await alphaAndBeta(dir, join(dir, "state"));
  });
  after(async () => {
    await instance.close();
    await rm(dir, { recursive: true, force: true });
  });

  test("multi-app - two applications of one file are served together; a code change of one rolls it alone, under load, and a removed one drains", async () => {
    await rollAndRemove(instance, dir, 1);
  });

  test("multi-app - two applications at one route prefix, or with one name, are rejected whole with positions", async () => {
    const file = join(dir, "serve.yaml");
    const before = JSON.stringify(
      Object.keys(((await instance.status()) as { applications: object }).applications),
    );
    await assert.rejects(
      instance.deploy(config(entry("alpha", "/b"), entry("beta", "/b")), file),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(
          error.problems[0]!.path,
          /applications\[1\]\.routePrefix|applications\[0\]\.routePrefix/,
        );
        assert.match(error.message, /routePrefix of its own/);
        return true;
      },
    );
    const twice = config(entry("beta", "/a"), entry("beta", "/b"));
    const secondLine = twice.split("\n").lastIndexOf("  - name: beta") + 1;
    await assert.rejects(instance.deploy(twice, file), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.problems[0]!.path, "applications[1].name");
      assert.equal(error.problems[0]!.line, secondLine);
      return true;
    });
    const after = JSON.stringify(
      Object.keys(((await instance.status()) as { applications: object }).applications),
    );
    assert.equal(after, before, "a rejected file changed nothing");
  });

  test("multi-app - an application that fails to start fails the deploy alone: the others run on", async () => {
    const file = join(dir, "serve.yaml");
    await mkdir(join(dir, "broken"), { recursive: true });
    await writeFile(
      join(dir, "broken", "app.ts"),
      `import { build, deployment, InputNode } from "tributary";
export class Broken {
  constructor() {
    throw new Error("no model file");
  }
  answer(x: number): number {
    return x;
  }
}
export const app = build(deployment(Broken).bind().answer.bind(new InputNode<number>()), { name: "broken" });
`,
    );
    const kept = config(entry("beta", "/b"));
    await instance.deploy(kept, file);
    await assert.rejects(
      instance.deploy(config(entry("beta", "/b"), entry("broken", "/broken")), file),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, "DEPLOY_FAILED");
        assert.match(error.message, /broken: .*no model file/);
        return true;
      },
    );
    const status = (await instance.status()) as {
      url: string;
      applications: Record<string, { status: string }>;
    };
    assert.deepEqual(Object.keys(status.applications), ["beta"]);
    assert.equal(status.applications.beta?.status, "RUNNING");
    const answer = await fetch(`${status.url}/b`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "1",
    });
    assert.equal(await answer.json(), "beta:v1:1");
    // The config saved is what runs: beta, and not the application that failed.
    const saved = instance.config()?.text ?? "";
    assert.match(saved, /name: beta/);
    assert.doesNotMatch(saved, /broken/);

    // New code for a running application that fails to start: the old code serves on, and
    // status and the metrics say what failed.
    await writeFile(
      join(dir, "beta", "app.ts"),
      (await readFile(join(dir, "broken", "app.ts"), "utf8")).replace(
        'name: "broken"',
        'name: "beta"',
      ),
    );
    // alpha comes back in the same deploy, and starts: that part of the file applies.
    const withAlpha = config(entry("beta", "/b"), entry("alpha", "/a"));
    await assert.rejects(instance.deploy(withAlpha, file), /beta: .*no model file/);
    const after = (await instance.status()) as {
      applications: Record<string, { status: string; lastDeployFailed?: { error: string } }>;
    };
    assert.equal(after.applications.beta?.status, "RUNNING");
    assert.match(after.applications.beta?.lastDeployFailed?.error ?? "", /no model file/);
    const again = await fetch(`${status.url}/b`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "1",
    });
    assert.equal(await again.json(), "beta:v1:1");
    const { samples } = await scrape(status.url);
    assert.ok(
      total(samples, "tributary_replica_failures_total", {
        application: "beta",
        reason: "start_failed",
      }) >= 1,
    );
    // What runs is what is saved, and what a restart brings back: alpha too.
    assert.deepEqual(Object.keys(after.applications).sort(), ["alpha", "beta"]);
    const saved2 = instance.config()?.text ?? "";
    assert.match(saved2, /name: alpha/);
    const restarted = instanceWith(join(dir, "state"));
    try {
      // beta's code on disk is the broken one: it fails again, and alpha is back.
      await assert.rejects(restarted.restore(), /beta: .*no model file/);
      const back = (await restarted.status()) as { applications: Record<string, unknown> };
      assert.deepEqual(Object.keys(back.applications), ["alpha"]);
    } finally {
      await restarted.close();
    }
  });
});

describe(
  "several applications served by front-door workers (http.workers: 2)",
  { timeout: 180_000 },
  () => {
    let dir: string;
    let instance: Instance;
    before(async () => {
      dir = await mkdtemp(join(ROOT, ".tmp-multi-app-workers-"));
      instance = await alphaAndBeta(dir, undefined);
    });
    after(async () => {
      await instance.close();
      await rm(dir, { recursive: true, force: true });
    });

    test("multi-app workers - the same deploys (code roll under load, removal with a drain) through two worker processes; a worker that dies is replaced with every application", async () => {
      await rollAndRemove(instance, dir, 2);
      const status = (await instance.status()) as { url: string; grpcPort: number };
      const pids = instance.frontDoorPids();
      assert.equal(pids.length, 2);
      process.kill(pids[0]!, "SIGKILL");
      const until = Date.now() + 30_000;
      while (!(
        instance.frontDoorPids().length === 2 && !instance.frontDoorPids().includes(pids[0]!)
      )) {
        if (Date.now() > until) assert.fail("the dead front-door worker was not replaced");
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const answers = await Promise.all(
        Array.from({ length: 20 }, async () => {
          const response = await fetch(`${status.url}/b`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: "1",
          });
          return `${response.status} ${await response.text()}`;
        }),
      );
      assert.deepEqual([...new Set(answers)], ['200 "beta:v1:1"']);

      // A new body limit reaches every worker in place; a new worker count restarts them.
      const file = join(dir, "serve.yaml");
      const beta = entry("beta", "/b");
      const pidsBefore = instance.frontDoorPids().sort();
      const limited = await instance.deploy(
        `http: { port: 0, workers: 2, bodyLimit: 64 }\ngrpc: { port: 0 }\napplications:\n${beta}`,
        file,
      );
      assert.deepEqual(limited.http, ["bodyLimit"]);
      assert.deepEqual(instance.frontDoorPids().sort(), pidsBefore, "no worker was restarted");
      const big = await Promise.all(
        Array.from({ length: 8 }, () =>
          fetch(`${status.url}/b`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify("x".repeat(100)),
          }).then((r) => r.status),
        ),
      );
      assert.deepEqual([...new Set(big)], [413], "every worker applies the new limit");
      // gRPC too, on the same listener (it is not made anew: in a worker process that would
      // be a second bind of its port, EADDRINUSE). Each client has a connection of its own.
      const { grpcPort } = (await instance.status()) as { grpcPort: number };
      assert.equal(grpcPort, status.grpcPort, "the gRPC port stays");
      const Service = loadInferenceService();
      const clients = Array.from(
        { length: 6 },
        () =>
          new Service(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure(), {
            "grpc.use_local_subchannel_pool": 1,
          }) as unknown as Client,
      );
      try {
        for (const client of clients) {
          await assert.rejects(
            rpc(client, "ModelMetadata", { name: "x".repeat(100) }),
            (error: grpc.ServiceError) => error.code === grpc.status.RESOURCE_EXHAUSTED,
          );
          assert.deepEqual(await rpc(client, "ModelReady", { name: "beta" }), { ready: true });
        }
      } finally {
        for (const client of clients) client.close();
      }
      assert.deepEqual(instance.frontDoorPids().sort(), pidsBefore, "no worker died");
      const requests = async (at: string): Promise<number> =>
        total((await scrape(at)).samples, "tributary_http_requests_total", {
          application: "beta",
        });
      const counted = await requests(status.url);
      assert.ok(counted >= 28, `${counted} requests counted`);
      // Another number of workers is a new pool, on the same port (0 stays pinned), and what
      // the old one counted stays counted: no reset.
      const three = await instance.deploy(configWith(3, beta), file);
      assert.deepEqual(three.http, ["workers"]);
      assert.equal(instance.frontDoorPids().length, 3);
      assert.equal(((await instance.status()) as { url: string }).url, status.url);
      assert.ok((await requests(status.url)) >= counted, "the old pool's requests are counted");
      const single = await instance.deploy(configWith(1, beta), file);
      assert.deepEqual(single.http, ["workers"]);
      assert.deepEqual(instance.frontDoorPids(), []);
      const { url } = (await instance.status()) as { url: string };
      // What the workers counted stays counted after they are gone: no reset.
      assert.ok((await requests(url)) >= counted, "the workers' requests are still counted");
      const answer = await fetch(`${url}/b`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "1",
      });
      assert.equal(await answer.json(), "beta:v1:1");
    });
  },
);
