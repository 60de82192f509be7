import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { BIN, cli, ROOT } from "./run-cli.js";
import { otlpReceiver } from "../runtime/otlp-receiver.js";

const moduleSource = `import { build, deployment, InputNode, type DeploymentHandle } from "tributary";
console.log("talker module loaded");
export class Quiet {
  hush(x: string): string {
    console.warn("hush %s", x);
    return x.toLowerCase();
  }
}
export class Talker {
  constructor(private quiet: DeploymentHandle<Quiet>) {}
  async talk(x: string): Promise<string> {
    console.log("talk", x, { n: 1 });
    console.error(new Error("not really"));
    return this.quiet.hush(x);
  }
}
const quiet = deployment(Quiet, { isolation: "process" }).bind();
const talker = deployment(Talker).bind(quiet);
export const app = build(talker.talk.bind(new InputNode<string>()), { name: "chatty", routePrefix: "/talk" });
`;

const config = (otlpEndpoint: string) => `http: { port: 0 }
tracing: { otlpEndpoint: "${otlpEndpoint}", serviceName: chatty-instance }
applications:
  - name: chatty
    importPath: ./app.ts:app
`;

interface Line {
  level: number;
  msg: string;
  application?: string;
  deployment?: string;
  replica?: string;
  requestId?: string;
}

function spawnCli(args: string[]): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr.on("data", (d: Buffer) => (output += d.toString()));
  return { child, output: () => output };
}

async function until(what: string, ms: number, check: () => boolean): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const parse = (text: string): Line[] =>
  text
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Line);

describe("tributary logs", { timeout: 120_000 }, () => {
  let dir: string;
  let instance: ReturnType<typeof spawnCli>;
  let address: string;
  let url: string;
  let receiver: Awaited<ReturnType<typeof otlpReceiver>>;
  before(async () => {
    receiver = await otlpReceiver();
    dir = await mkdtemp(join(ROOT, ".tmp-logs-"));
    await writeFile(join(dir, "app.ts"), moduleSource);
    await writeFile(join(dir, "serve.yaml"), config(receiver.url));
    instance = spawnCli(["start", "--admin-port", "0", "--state-dir", join(dir, "state")]);
    await until("the instance listens", 30_000, () =>
      /Admin API at (\S+)\./.test(instance.output()),
    );
    address = /Admin API at (\S+)\./.exec(instance.output())![1]!;
    const deployed = await cli(["deploy", join(dir, "serve.yaml"), "--address", address, "--wait"]);
    assert.equal(deployed.code, 0, deployed.stderr);
    const status = JSON.parse((await cli(["status", "--json", "--address", address])).stdout) as {
      url: string;
    };
    url = `${status.url}/talk`;
  });
  after(async () => {
    instance.child.kill("SIGTERM");
    await new Promise((resolve) =>
      instance.child.exitCode !== null ? resolve(undefined) : instance.child.once("exit", resolve),
    );
    await rm(dir, { recursive: true, force: true });
    await receiver.close();
  });

  const talk = (text: string, requestId: string) =>
    fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": requestId },
      body: JSON.stringify(text),
    }).then(async (response) => {
      assert.equal(response.status, 200);
      return (await response.json()) as string;
    });

  test("logs - what replicas write with console.* is JSON tagged with application, deployment, replica and request id, read back by deployment", async () => {
    assert.equal(await talk("Hello", "req-log-1"), "hello");
    // Lines from both replicas (a thread and a process) reach the instance's log.
    let lines: Line[] = [];
    await until("the replicas' lines are in the log", 15_000, () => {
      lines = parse(instance.output()).filter((l) => l.requestId === "req-log-1");
      return lines.length >= 3;
    });
    const talker = await cli(["logs", "Talker", "--address", address]);
    assert.equal(talker.code, 0, talker.stderr);
    const read = parse(talker.stdout);
    assert.ok(read.length >= 3, talker.stdout);
    assert.ok(read.every((l) => l.deployment === "Talker" && l.application === "chatty"));
    assert.ok(
      read.every((l) => l.replica === "Talker#1"),
      talker.stdout,
    );
    // Printed at import, outside any request: tagged, with no request id.
    const loaded = read.find((l) => l.msg === "talker module loaded");
    assert.ok(loaded, talker.stdout);
    assert.equal(loaded.requestId, undefined);
    const said = read.find((l) => l.msg.startsWith("talk Hello"));
    assert.ok(said, talker.stdout);
    assert.equal(said.msg, "talk Hello { n: 1 }");
    assert.equal(said.level, 30);
    assert.equal(said.requestId, "req-log-1");
    const error = read.find((l) => l.level === 50);
    assert.ok(error, talker.stdout);
    assert.match(error.msg, /^Error: not really\n\s+at /);
    assert.equal(error.requestId, "req-log-1");

    // Every replica imports the module: Quiet's replica printed its top-level line too.
    const quietLines = parse((await cli(["logs", "Quiet", "--address", address])).stdout);
    assert.deepEqual(
      quietLines.map((l) => l.msg),
      ["talker module loaded", "hush Hello"],
    );
    const quiet = quietLines.filter((l) => l.requestId !== undefined);
    assert.deepEqual(
      { ...quiet[0], time: undefined, pid: undefined, hostname: undefined },
      {
        level: 40,
        msg: "hush Hello",
        application: "chatty",
        deployment: "Quiet",
        replica: "Quiet#1",
        requestId: "req-log-1",
        time: undefined,
        pid: undefined,
        hostname: undefined,
      },
    );
    const last = parse(
      (await cli(["logs", "Talker", "--lines", "1", "--address", address])).stdout,
    );
    assert.equal(last.length, 1);
    const unknown = await cli(["logs", "--lines", "many", "--address", address]);
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr, /--lines \(-n\) must be a whole number \(it is "many"\)/);
    // A name that does not run is said so (before: nothing printed, exit 0).
    const typo = await cli(["logs", "Talkr", "--address", address]);
    assert.notEqual(typo.code, 0);
    assert.match(typo.stderr, /no deployment "Talkr" runs here \(running: .*Talker/);
  });

  test("tracing - serve.yaml's tracing exports the spans of an instance's front door and replicas as one trace", async () => {
    const traceId = "9bf92f3577b34da6a3ce929d0e0e4739";
    const response = await fetch(url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        traceparent: `00-${traceId}-1111111111111111-01`,
      },
      body: JSON.stringify("Traced"),
    });
    assert.equal(response.status, 200);
    // Spans are sent every second.
    await until(
      "the trace's three spans arrived",
      15_000,
      () => receiver.spans.filter((s) => s.traceId === traceId).length >= 3,
    );
    const spans = receiver.spans.filter((s) => s.traceId === traceId);
    const byName = new Map(spans.map((s) => [s.name, s]));
    assert.deepEqual([...byName.keys()].sort(), ["POST /talk", "Quiet/hush", "Talker/talk"]);
    assert.equal(byName.get("POST /talk")!.parentSpanId, "1111111111111111");
    assert.equal(byName.get("Talker/talk")!.parentSpanId, byName.get("POST /talk")!.spanId);
    assert.equal(byName.get("Quiet/hush")!.parentSpanId, byName.get("Talker/talk")!.spanId);
    assert.ok(spans.every((s) => s.service === "chatty-instance"));
  });

  test("logs - --follow prints the lines logged after it started, as they come", async () => {
    const follower = spawnCli(["logs", "Quiet", "--follow", "--address", address]);
    try {
      // What was kept comes first: the follower is connected once it has printed it.
      await until("the follower printed the kept lines", 15_000, () =>
        parse(follower.output()).some((l) => l.deployment === "Quiet"),
      );
      const before = parse(follower.output()).length;
      assert.equal(await talk("Again", "req-log-2"), "again");
      await until("the new line reached the follower", 15_000, () =>
        parse(follower.output()).some((l) => l.requestId === "req-log-2"),
      );
      const lines = parse(follower.output());
      assert.ok(lines.length > before);
      assert.ok(
        lines.every((l) => l.deployment === "Quiet"),
        follower.output(),
      );
      assert.equal(follower.child.exitCode, null, "still following");
    } finally {
      follower.child.kill("SIGTERM");
    }
  });
});
