/**
 * @internal The dashboard page the admin API serves at `GET /`: one self-contained HTML
 * file (no external script or style) that draws each application's graph as SVG and
 * updates it and a table per deployment from the server-sent events of
 * `GET /api/dashboard/events`.
 */
export const DASHBOARD_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Tributary</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 1.5rem; color: #1d2430; background: #f7f8fa; }
  h1 { font-size: 1.3rem; margin: 0 0 .25rem; }
  h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
  .muted { color: #6a7282; }
  .app { background: #fff; border: 1px solid #dde1e8; border-radius: 8px; padding: 1rem; margin-bottom: 1rem; }
  table { border-collapse: collapse; width: 100%; margin-top: .5rem; }
  th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #eef0f4; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  .status { font-weight: 600; }
  .HEALTHY, .RUNNING { color: #1a7f37; } .UPDATING, .DEPLOYING, .STARTING { color: #9a6700; }
  .UNHEALTHY, .DEPLOY_FAILED, .DEAD { color: #cf222e; }
  svg { display: block; max-width: 100%; }
  svg .node rect { fill: #eef4ff; stroke: #4f6bed; rx: 6; }
  svg .node.ingress rect { fill: #f1f1f1; stroke: #888; }
  svg .node text { font-size: 12px; fill: #1d2430; }
  svg .edge { stroke: #8892a6; fill: none; marker-end: url(#arrow); }
  svg .edge.handle { stroke-dasharray: 4 3; }
</style>
</head>
<body>
<h1>Tributary</h1>
<div class="muted">Live: <span id="updated">connecting…</span></div>
<div id="apps"></div>
<script>
"use strict";
const appsEl = document.getElementById("apps");
const fmt = (v, digits) => (v === null || v === undefined ? "–" : v.toFixed(digits));
const ms = (s) => (s === null ? "–" : (s * 1000).toFixed(s < 0.01 ? 2 : 1) + " ms");
const states = (d) => Object.entries(d.replicaStates).map(([s, n]) => n + " " + s).join(", ") || "none";
function el(tag, attrs, text) {
  const e = document.createElementNS(tag === "svg" || attrs.svg ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml", tag);
  for (const [k, v] of Object.entries(attrs)) if (k !== "svg") e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
/**
 * Columns by longest path from the ingress along data edges (they form no cycle; handle
 * edges may point back); rows in order within a column.
 */
function layout(graph) {
  const depth = new Map([["ingress", 0]]);
  const data = graph.edges.filter((e) => e.kind === "data");
  for (let changed = true, rounds = 0; changed && rounds <= graph.nodes.length; rounds++) {
    changed = false;
    for (const e of data) {
      const d = (depth.get(e.from) ?? 0) + 1;
      if (depth.has(e.from) && (depth.get(e.to) ?? -1) < d) { depth.set(e.to, d); changed = true; }
    }
  }
  const columns = [];
  for (const n of graph.nodes) {
    const c = depth.get(n.id) ?? 1;
    (columns[c] ??= []).push(n);
  }
  const pos = new Map();
  columns.forEach((col, c) => (col ?? []).forEach((n, r) => pos.set(n.id, { x: 20 + c * 200, y: 20 + r * 70 })));
  const rows = Math.max(...columns.map((c) => (c ?? []).length));
  return { pos, width: 40 + columns.length * 200, height: 40 + rows * 70 };
}
function drawGraph(app, view) {
  const { pos, width, height } = layout(app.graph);
  const svg = el("svg", { width, height, viewBox: "0 0 " + width + " " + height, "data-graph": app.name });
  const defs = el("defs", { svg: true });
  const marker = el("marker", { svg: true, id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: "auto" });
  marker.append(el("path", { svg: true, d: "M0,0 L10,5 L0,10 z", fill: "#8892a6" }));
  defs.append(marker);
  svg.append(defs);
  for (const e of app.graph.edges) {
    const a = pos.get(e.from), b = pos.get(e.to);
    if (!a || !b) continue;
    // Forward: right side to left side. A handle back to an earlier column: an arc below.
    const d = b.x > a.x
      ? "M" + (a.x + 150) + "," + (a.y + 24) + " C" + (a.x + 175) + "," + (a.y + 24) + " " + (b.x - 25) + "," + (b.y + 24) + " " + b.x + "," + (b.y + 24)
      : "M" + (a.x + 50) + "," + (a.y + 48) + " C" + (a.x + 50) + "," + (a.y + 68) + " " + (b.x + 100) + "," + (b.y + 68) + " " + (b.x + 100) + "," + (b.y + 48);
    svg.append(el("path", { svg: true, class: "edge " + e.kind, d }));
  }
  const byName = new Map(view.deployments.map((d) => [d.name, d]));
  for (const n of app.graph.nodes) {
    const p = pos.get(n.id);
    const g = el("g", { svg: true, class: "node " + n.kind, "data-node": n.id, transform: "translate(" + p.x + "," + p.y + ")" });
    g.append(el("rect", { svg: true, width: 150, height: 48 }));
    g.append(el("text", { svg: true, x: 8, y: 19 }, n.id));
    const d = byName.get(n.id);
    if (d) g.append(el("text", { svg: true, x: 8, y: 37, class: "node-replicas" }, (d.replicaStates.RUNNING ?? 0) + "/" + d.targetReplicas + " replicas · " + fmt(d.requestRate, 1) + "/s"));
    svg.append(g);
  }
  return svg;
}
function render(view) {
  document.getElementById("updated").textContent = new Date(view.at).toLocaleTimeString();
  appsEl.replaceChildren();
  for (const app of view.applications) {
    const box = el("section", { class: "app", "data-application": app.name });
    const h = el("h2", {}, app.name + " ");
    h.append(el("span", { class: "status " + app.status }, app.status));
    box.append(h);
    if (app.graph) box.append(drawGraph(app, app));
    const table = el("table", {});
    const head = el("tr", {});
    for (const [label, num] of [["deployment"], ["status"], ["replicas"], ["requests/s", 1], ["p50", 1], ["p99", 1], ["errors", 1], ["ongoing", 1], ["queued", 1]])
      head.append(el("th", num ? { class: "num" } : {}, label));
    table.append(head);
    for (const d of app.deployments) {
      const row = el("tr", { "data-deployment": d.name });
      row.append(el("td", {}, d.name));
      row.append(el("td", { class: "status " + d.status }, d.status));
      row.append(el("td", { class: "replicas", "data-running": String(d.replicaStates.RUNNING ?? 0) }, states(d) + " (target " + d.targetReplicas + ")"));
      row.append(el("td", { class: "num rate" }, fmt(d.requestRate, 1)));
      row.append(el("td", { class: "num p50" }, ms(d.p50)));
      row.append(el("td", { class: "num p99" }, ms(d.p99)));
      row.append(el("td", { class: "num errors" }, d.errorRate === null ? "–" : (d.errorRate * 100).toFixed(1) + "%"));
      row.append(el("td", { class: "num ongoing" }, String(d.ongoing)));
      row.append(el("td", { class: "num queued" }, String(d.queued)));
      table.append(row);
    }
    box.append(table);
    appsEl.append(box);
  }
  if (view.applications.length === 0) appsEl.append(el("p", { class: "muted" }, "Nothing is deployed yet."));
}
const events = new EventSource("/api/dashboard/events");
events.onmessage = (event) => render(JSON.parse(event.data));
events.onerror = () => (document.getElementById("updated").textContent = "disconnected; retrying…");
</script>
</body>
</html>
`;
