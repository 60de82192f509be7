import assert from "node:assert/strict";
import { test } from "node:test";
import { checkRunOptions } from "./run-options.js";
import type { RunOptions } from "./server.js";

const refused = (options: unknown, reason: RegExp): void =>
  assert.throws(
    () => checkRunOptions(options as RunOptions),
    (error: Error & { code?: string }) => {
      assert.equal(error.code, "INVALID_OPTIONS");
      assert.match(error.message, reason);
      return true;
    },
  );

test("run options - a misspelt key, a limit of the wrong type or out of range, is refused by name", () => {
  refused(
    { bodylimit: 10 },
    /bodylimit: not an option of run\(\) \(it takes host, port, .*bodyLimit/,
  );
  refused({ bodyLimit: "1mb" }, /bodyLimit: .*expected number.*\(it is "1mb"\)/);
  refused({ bodyLimit: NaN }, /bodyLimit: .*\(it is NaN\)/);
  refused({ bodyLimit: 0 }, /bodyLimit: .*>0/);
  refused({ maxConnections: 0 }, /maxConnections: /);
  refused({ requestTimeout: 0 }, /requestTimeout: expected a duration longer than 0/);
  refused({ requestTimeout: "1000h" }, /requestTimeout: expected at most 24 days/);
  refused({ requestTimeout: { s: 1 } }, /requestTimeout: expected a duration such as/);
  refused({ readTimeout: -5 }, /readTimeout: /);
  refused({ logLevel: "verbose" }, /logLevel: .*"fatal".*\(it is "verbose"\)/);
  refused({ port: 70_000 }, /port: /);
  refused({ grpc: { prot: 1 } }, /grpc\.prot: not an option of run\(\)'s grpc \(it takes port\)/);
  refused({ http: { workers: 65 } }, /http\.workers: /);
  refused({ http: { port: 1 } }, /http option takes only workers \(it was given port\)/);
  refused({ logStream: {} }, /logStream: expected an object with a write\(line\) method/);
  refused(null, /must be an object/);
});

test("run options - what run() documents is accepted, and undefined is as good as absent", () => {
  checkRunOptions({});
  checkRunOptions({
    host: "127.0.0.1",
    port: 0,
    grpc: { port: 0 },
    requestTimeout: "2s",
    readTimeout: 30_000,
    bodyLimit: 1024,
    maxConnections: 10,
    http: { workers: 2 },
    metrics: false,
    debug: true,
    logLevel: "silent",
    logStream: { write: () => undefined },
    tracing: { otlpEndpoint: "http://127.0.0.1:4318", serviceName: "s" },
  });
  checkRunOptions({ port: undefined, requestTimeout: undefined } as unknown as RunOptions);
});
