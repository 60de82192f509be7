import assert from "node:assert/strict";
import { test } from "node:test";
import { app, type Counter } from "../fixtures/choice-app.js";
import { serve } from "../serve.js";
import { eventually } from "./eventually.js";

/** `tributary_split_requests_total` of the choice application's split, by arm. */
async function splitSeries(url: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const arms: Record<string, number> = {};
  for (const match of text.matchAll(
    /^tributary_split_requests_total\{application="choice",split="even-model",arm="(\w+)"\} (\d+)$/gm,
  ))
    arms[match[1]!] = Number(match[2]);
  return arms;
}

interface Answer {
  tag: string;
  x: number;
  replica: string;
}

test(
  "branch and split served - only the chosen side runs; 90/10 over 1,000 requests; sticky by header; 0/100 live under load",
  { timeout: 150_000 },
  async () => {
    await using server = await serve(app, { port: 0 });
    const post = async (x: number, headers: Record<string, string> = {}): Promise<Answer> => {
      const response = await fetch(`${server.url}/choice`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify(x),
      });
      assert.equal(response.status, 200, await response.clone().text());
      return (await response.json()) as Answer;
    };
    const count = (name: string) => server.getHandle<Counter>(name).count();

    // The branch: odd inputs reach "odd" only; even ones never call it.
    for (let i = 0; i < 20; i++) assert.equal((await post(2 * i + 1)).tag, "odd");
    assert.equal(await count("odd"), 20);
    assert.equal((await count("stable")) + (await count("canary")), 0);

    // The split: 1,000 even requests, 90/10.
    const tags = { stable: 0, canary: 0 } as Record<string, number>;
    for (let batch = 0; batch < 50; batch++) {
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => post(2 * i)));
      for (const a of answers) tags[a.tag] = (tags[a.tag] ?? 0) + 1;
    }
    assert.equal(tags.stable! + tags.canary!, 1000);
    // Binomial(1000, 0.1): standard deviation 9.5; the bound is 5 of them either side of 100.
    assert.ok(Math.abs(tags.canary! - 100) <= 47, `canary took ${tags.canary} of 1000`);
    assert.equal(await count("odd"), 20, "even requests never reach the odd branch");
    assert.equal(await count("canary"), tags.canary);
    // Each arm's share is a Prometheus series.
    assert.deepEqual(await splitSeries(server.url), {
      stable: tags.stable,
      canary: tags.canary,
    });

    // Sticky: one user stays on one version; many users spread over both.
    const users = Array.from({ length: 200 }, (_, i) => `user-${i}`);
    const asUsers = async (): Promise<Answer[]> => {
      const out: Answer[] = [];
      for (let i = 0; i < users.length; i += 20)
        out.push(
          ...(await Promise.all(users.slice(i, i + 20).map((u) => post(0, { "x-user": u })))),
        );
      return out;
    };
    const first = await asUsers();
    const again = await asUsers();
    assert.deepEqual(
      again.map((a) => a.tag),
      first.map((a) => a.tag),
    );
    // In code, handle.call takes the headers a front door would see.
    for (const [i, u] of users.slice(0, 10).entries()) {
      const answer = await server.handle.call(0, { headers: { "X-User": u } });
      assert.equal(answer.tag, first[i]!.tag, `${u} by handle.call`);
    }
    const onCanary = first.filter((a) => a.tag === "canary").length;
    assert.ok(onCanary > 0 && onCanary < 60, `${onCanary} of 200 users on the canary`);

    // 0/100 under load: no failure, no replica restarted, calls started after it all on the canary.
    const replicas = async () =>
      Object.values((await server.status()).applications.choice!.deployments).flatMap((d) =>
        d.replicas.map((r) => r.id),
      );
    const before = await replicas();
    let running = true;
    const answers: { answer: Answer; started: number }[] = [];
    const failures: unknown[] = [];
    const deadline = Date.now() + 60_000;
    const callers = Array.from({ length: 4 }, async () => {
      while (running && Date.now() < deadline) {
        const started = Date.now();
        try {
          answers.push({ answer: await post(2 * answers.length), started });
        } catch (error) {
          failures.push(error);
        }
      }
    });
    await eventually(async () => answers.length >= 50, 20_000, "50 answers before the change");
    const plan = await server.update(
      server.app.withSplits({ "even-model": { stable: 0, canary: 100 } }),
    );
    assert.deepEqual(
      Object.values(plan).flat(),
      [],
      `no deployment is touched: ${JSON.stringify(plan)}`,
    );
    const changed = Date.now();
    await eventually(
      async () => answers.filter((a) => a.started > changed).length >= 100,
      30_000,
      "100 answers after the change",
    );
    running = false;
    await Promise.all(callers);
    assert.deepEqual(failures, []);
    const after = answers.filter((a) => a.started > changed).map((a) => a.answer.tag);
    assert.ok(after.length >= 100);
    assert.deepEqual([...new Set(after)], ["canary"]);
    assert.deepEqual(await replicas(), before);
    assert.deepEqual(server.app.splits["even-model"], { stable: 0, canary: 100 });
  },
);

test(
  "split served by front-door worker processes - the configured weights reach them, and an update too",
  { timeout: 90_000 },
  async () => {
    const configured = app.withSplits({ "even-model": { stable: 0, canary: 100 } });
    await using server = await serve(configured, { http: { workers: 2 } });
    assert.equal(server.frontDoorPool!.pids().length, 2);
    const tags = async (): Promise<Set<string>> => {
      const answers = await Promise.all(
        Array.from({ length: 40 }, () =>
          fetch(`${server.url}/choice`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: "2",
          }).then(async (r) => {
            assert.equal(r.status, 200);
            return ((await r.json()) as Answer).tag;
          }),
        ),
      );
      return new Set(answers);
    };
    assert.deepEqual(await tags(), new Set(["canary"]));
    await server.update(server.app.withSplits({ "even-model": { stable: 100, canary: 0 } }));
    // The workers hear of it over IPC: wait until a whole round shows it.
    await eventually(
      async () => (await tags()).size === 1 && (await tags()).has("stable"),
      20_000,
      "the workers to use the new weights",
    );
    // The workers' counts of each arm reach the main process's /metrics (40 per round).
    const shares = await splitSeries(server.url);
    assert.ok(shares.canary! >= 40 && shares.stable! >= 40, JSON.stringify(shares));
    assert.equal((shares.canary! + shares.stable!) % 40, 0, JSON.stringify(shares));
  },
);
