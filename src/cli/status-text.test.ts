import assert from "node:assert/strict";
import { test } from "node:test";
import { formatStatus } from "./status-text.js";

test("status - a summary: applications, deployments with replicas by state and messages, the last deploy and what it changed", () => {
  const text = formatStatus(
    {
      url: "http://127.0.0.1:8000",
      applications: {
        classify: {
          status: "DEPLOYING",
          message: "",
          routePrefix: "/classify",
          lastDeploy: {
            at: "2026-12-01T14:31:05.000Z",
            action: "updated",
            changes: { m1: ["scale"], m2: ["reconfigure"] },
          },
          deployments: {
            m1: {
              name: "m1",
              status: "UPDATING",
              message: "Scaling to 3 replicas.",
              targetReplicas: 3,
              ongoing: 2,
              queued: 1,
              replicas: [{ state: "RUNNING" }, { state: "STARTING" }, { state: "RUNNING" }],
            },
            m2: {
              name: "m2",
              status: "HEALTHY",
              message: "",
              targetReplicas: 1,
              replicas: [{ state: "RUNNING" }],
            },
          },
        },
      },
    },
    Date.parse("2026-12-01T14:34:05.000Z"),
  );
  assert.equal(
    text,
    [
      "Front door: http://127.0.0.1:8000",
      "",
      "classify: DEPLOYING  (POST /classify)",
      "  Last deployed 2026-12-01 14:31:05 UTC (3 min ago): updated (m1: scale; m2: reconfigure)",
      "  DEPLOYMENT  STATUS    REPLICAS                          ONGOING  QUEUED  MESSAGE",
      "  m1          UPDATING  2 RUNNING, 1 STARTING (target 3)  2        1       Scaling to 3 replicas.",
      "  m2          HEALTHY   1 RUNNING (target 1)              0        0",
    ].join("\n"),
  );
});

test("status - an instance with nothing deployed says how to deploy", () => {
  assert.equal(
    formatStatus({ url: null, applications: {} }),
    "Front door: not serving yet.\nNo applications. Deploy one with: tributary deploy serve.yaml",
  );
});

test("status - a configuration being applied says so, not that nothing is deployed", () => {
  const now = Date.parse("2026-12-07T05:00:10Z");
  assert.equal(
    formatStatus(
      {
        url: null,
        applications: {},
        deploying: { file: "/srv/serve.yaml", at: "2026-12-07T05:00:07Z" },
      },
      now,
    ),
    "Front door: not serving yet.\nApplying /srv/serve.yaml (started 3 s ago)…\nNo application runs yet.",
  );
});

test("status - a cluster's head lists its nodes (free of total resources) and where each deployment runs", () => {
  const text = formatStatus(
    {
      url: "http://127.0.0.1:8000",
      nodes: [
        {
          name: "gpu-1",
          state: "ALIVE",
          resources: { cpus: 4, gpus: 1, memory: 8 * 2 ** 30, custom: { ocr: 1 } },
          free: { cpus: 3, gpus: 0, memory: 6 * 2 ** 30, custom: { ocr: 0 } },
          lastHeartbeat: Date.parse("2026-12-01T12:00:00Z"),
          replicas: ["ocr#1"],
          httpUrl: "http://10.0.0.7:8000",
        },
        {
          name: "cpu-1",
          state: "DEAD",
          resources: { cpus: 2, gpus: 0, memory: 0, custom: {} },
          free: { cpus: 2, gpus: 0, memory: 0, custom: {} },
          lastHeartbeat: Date.parse("2026-12-01T11:58:00Z"),
          replicas: [],
        },
      ],
      applications: {
        ocr: {
          status: "RUNNING",
          message: "",
          deployments: {
            ocr: {
              name: "ocr",
              status: "HEALTHY",
              message: "",
              targetReplicas: 1,
              replicas: [{ state: "RUNNING", node: "gpu-1" }],
            },
          },
        },
      },
    },
    Date.parse("2026-12-01T12:00:05Z"),
  );
  assert.match(
    text,
    /^gpu-1 \(http:\/\/10\.0\.0\.7:8000\)\s+ALIVE\s+cpus 3\/4, gpus 0\/1, memory 6\.0\/8\.0 GiB, ocr 0\/1\s+1\s+5 s ago$/m,
  );
  assert.match(text, /^cpu-1\s+DEAD\s+cpus 2\/2\s+0\s+2 min ago$/m);
  assert.match(text, /ocr\s+HEALTHY\s+1 RUNNING \(target 1\) on gpu-1/);
});

test("status - a failed deploy of a running application is shown under it, with why", () => {
  const text = formatStatus(
    {
      url: "http://127.0.0.1:8000",
      applications: {
        ocr: {
          status: "RUNNING",
          message: "",
          lastDeployFailed: { at: "2026-12-01T14:33:05.000Z", error: "ocr#2: no model file" },
          deployments: {},
        },
      },
    },
    Date.parse("2026-12-01T14:34:05.000Z"),
  );
  assert.match(
    text,
    /\n {2}A deploy failed 2026-12-01 14:33:05 UTC \(1 min ago\); what ran before runs on: ocr#2: no model file\n/,
  );
});
