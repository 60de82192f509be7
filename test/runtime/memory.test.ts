import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ReplicaDiedError } from "tributary";
import { app, type Sleeper } from "../fixtures/sleepy-app.js";
import { serve } from "../serve.js";
import { eventually } from "./eventually.js";

const MiB = 1024 * 1024;

describe("resources.memory", { timeout: 90_000 }, () => {
  for (const isolation of ["thread", "process"] as const) {
    test(`memory - a ${isolation} replica past resources.memory is replaced, and the error says why`, async () => {
      await using server = await serve(
        app.withOptions({ sleeper: { isolation, resources: { memory: 256 * MiB } } }),
      );
      const sleeper = server.getHandle<Sleeper>("sleeper");
      assert.equal(await sleeper.hoard(16), 16, "within the limit it serves");
      await assert.rejects(
        sleeper.hoard(1024),
        (error: unknown) =>
          error instanceof ReplicaDiedError &&
          /exceeded its memory limit: it used \d+ MiB .* of resources\.memory 256 MiB/.test(
            error.message,
          ),
      );
      const status = async () => (await server.status()).applications.sleepy!.deployments.sleeper!;
      assert.match((await status()).message, /exceeded its memory limit/);
      await eventually(
        async () => (await status()).replicas.some((r) => r.state === "RUNNING"),
        20_000,
        "a replacement runs",
      );
      assert.equal(await sleeper.hoard(8), 8, "the replacement starts afresh");
    });
  }
});
