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
