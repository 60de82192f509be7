/**
 * `tributary status` as a person reads it (Ray Serve's `serve status` gives the same
 * facts): each application with its status, route prefix and last deploy (when, and what
 * it changed), then each deployment with its status, replicas by state and message.
 * `--json` prints the admin API's answer instead.
 */

interface ReplicaAnswer {
  readonly state: string;
  /** In a cluster: the node it runs on. */
  readonly node?: string;
}

interface NodeAnswer {
  readonly name: string;
  readonly state: string;
  readonly resources: Readonly<Record<string, unknown>>;
  readonly free: Readonly<Record<string, unknown>>;
  readonly lastHeartbeat: number;
  readonly replicas: readonly string[];
  readonly httpUrl?: string;
}

interface DeploymentAnswer {
  readonly name: string;
  readonly status: string;
  readonly message: string;
  readonly targetReplicas: number;
  readonly ongoing?: number;
  readonly queued?: number;
  readonly replicas: readonly ReplicaAnswer[];
}

interface ApplicationAnswer {
  readonly status: string;
  readonly message: string;
  readonly routePrefix?: string;
  readonly deployments: Readonly<Record<string, DeploymentAnswer>>;
  readonly lastDeployedAt?: string;
  readonly lastDeploy?: {
    readonly at: string;
    readonly action: string;
    readonly changes: Readonly<Record<string, readonly string[]>>;
  };
  /** The last deploy of it that failed (since one that succeeded): what ran before runs on. */
  readonly lastDeployFailed?: { readonly at: string; readonly error: string };
}

export interface StatusAnswer {
  readonly applications: Readonly<Record<string, ApplicationAnswer>>;
  readonly url?: string | null;
  readonly grpcPort?: number;
  /** A cluster's head lists its nodes. */
  readonly nodes?: readonly NodeAnswer[];
  /** A configuration being applied now (at start, the restored one or the file given). */
  readonly deploying?: { readonly file: string; readonly at: string };
}

/** `cpus 2/4, gpus 0/1, memory 2.0/8.0 GiB, ocr 1/1`: free of total. */
function resourceText(free: Record<string, unknown>, total: Record<string, unknown>): string {
  const parts: string[] = [];
  for (const key of ["cpus", "gpus"] as const)
    if (typeof total[key] === "number" && total[key] > 0)
      parts.push(`${key} ${String(free[key])}/${String(total[key])}`);
  if (typeof total.memory === "number" && total.memory > 0)
    parts.push(
      `memory ${((free.memory as number) / 2 ** 30).toFixed(1)}/${(total.memory / 2 ** 30).toFixed(1)} GiB`,
    );
  const custom = (total.custom ?? {}) as Record<string, number>;
  const freeCustom = (free.custom ?? {}) as Record<string, number>;
  for (const [key, amount] of Object.entries(custom))
    parts.push(`${key} ${freeCustom[key] ?? 0}/${amount}`);
  return parts.join(", ");
}

/** The order replica states are listed in. */
const STATE_ORDER = ["RUNNING", "STARTING", "STOPPING", "STOPPED", "DEAD"];

/** `2 RUNNING, 1 STARTING`, or `none`. */
export function replicaCounts(replicas: readonly ReplicaAnswer[]): string {
  const counts = new Map<string, number>();
  for (const r of replicas) counts.set(r.state, (counts.get(r.state) ?? 0) + 1);
  const states = [...counts.keys()].sort(
    (a, b) => (STATE_ORDER.indexOf(a) + 1 || 99) - (STATE_ORDER.indexOf(b) + 1 || 99),
  );
  return states.map((s) => `${counts.get(s)} ${s}`).join(", ") || "none";
}

/** `3 min ago`, from an ISO time. */
function ago(iso: string, now: number): string {
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86_400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86_400)} days ago`;
}

/** `2026-12-01 14:31:05 UTC`. */
const when = (iso: string): string => `${iso.slice(0, 19).replace("T", " ")} UTC`;

/** What a deploy did: `started`, `updated (m1: scale; m2: reconfigure)`. */
function deployed(deploy: NonNullable<ApplicationAnswer["lastDeploy"]>): string {
  const changes = Object.entries(deploy.changes).map(
    ([name, kinds]) => `${name}: ${kinds.join(", ")}`,
  );
  const action = deploy.action === "code" ? "new code or arguments, rolled out" : deploy.action;
  return `${action}${changes.length > 0 ? ` (${changes.join("; ")})` : ""}`;
}

/** Pads the columns of `rows` (each a list of cells) to their widest cell. */
function columns(rows: readonly (readonly string[])[], indent: string): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map(
    (row) =>
      indent +
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!)))
        .join("  ")
        .trimEnd(),
  );
}

export function formatStatus(answer: StatusAnswer, now = Date.now()): string {
  const lines: string[] = [];
  if (answer.url !== undefined)
    lines.push(
      answer.url === null
        ? "Front door: not serving yet."
        : `Front door: ${answer.url}${answer.grpcPort !== undefined ? ` (gRPC on port ${answer.grpcPort})` : ""}`,
    );
  if (answer.nodes) {
    lines.push("");
    const rows: string[][] = [["NODE", "STATE", "FREE / TOTAL", "REPLICAS", "LAST HEARTBEAT"]];
    for (const n of answer.nodes)
      rows.push([
        n.name + (n.httpUrl ? ` (${n.httpUrl})` : ""),
        n.state,
        resourceText(n.free, n.resources),
        String(n.replicas.length),
        ago(new Date(n.lastHeartbeat).toISOString(), now),
      ]);
    if (answer.nodes.length === 0)
      lines.push("No nodes yet. Start one with: tributary node --cluster …");
    else lines.push(...columns(rows, ""));
  }
  if (answer.deploying)
    lines.push(`Applying ${answer.deploying.file} (started ${ago(answer.deploying.at, now)})…`);
  const apps = Object.entries(answer.applications);
  if (apps.length === 0) {
    lines.push(
      answer.deploying
        ? "No application runs yet."
        : "No applications. Deploy one with: tributary deploy serve.yaml",
    );
    return lines.join("\n");
  }
  for (const [name, app] of apps) {
    lines.push("");
    lines.push(`${name}: ${app.status}${app.routePrefix ? `  (POST ${app.routePrefix})` : ""}`);
    if (app.message) lines.push(`  ${app.message}`);
    const at = app.lastDeploy?.at ?? app.lastDeployedAt;
    if (at)
      lines.push(
        `  Last deployed ${when(at)} (${ago(at, now)})${app.lastDeploy ? `: ${deployed(app.lastDeploy)}` : ""}`,
      );
    const failed = app.lastDeployFailed;
    if (failed)
      lines.push(
        `  A deploy failed ${when(failed.at)} (${ago(failed.at, now)}); what ran before runs on: ${failed.error}`,
      );
    const rows: string[][] = [["DEPLOYMENT", "STATUS", "REPLICAS", "ONGOING", "QUEUED", "MESSAGE"]];
    for (const d of Object.values(app.deployments)) {
      const nodes = [...new Set(d.replicas.flatMap((r) => (r.node ? [r.node] : [])))];
      rows.push([
        d.name,
        d.status,
        `${replicaCounts(d.replicas)} (target ${d.targetReplicas})${nodes.length > 0 ? ` on ${nodes.join(", ")}` : ""}`,
        String(d.ongoing ?? 0),
        String(d.queued ?? 0),
        d.message,
      ]);
    }
    lines.push(...columns(rows, "  "));
  }
  return lines.join("\n").replace(/^\n/, "");
}
