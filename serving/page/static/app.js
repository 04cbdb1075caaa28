// salesml planner: draws the views from /ui/api/* (the same functions as the HTTP API); no library, no CDN.
"use strict";

const state = { tree: null, byId: new Map(), kids: new Map(), selected: "total", plan: null, churnLoaded: false };
const num = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const pct = new Intl.NumberFormat("en-US", { style: "percent", maximumFractionDigits: 1 });
const fmt = (v) => (v === null || v === undefined || Number.isNaN(v) ? "–" : num.format(v));
const fmtPct = (v) => (v === null || v === undefined ? "–" : pct.format(v));

// A DOM builder: text is always set as text, never parsed as HTML.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}
const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) el.setAttribute(k, v);
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

class Unavailable extends Error {}  // the model behind a view is not being served: said on the view, not an error

async function api(path, options) {
  const answer = await fetch("/ui/api/" + path, { credentials: "same-origin", ...(options || {}) });
  if (answer.status === 401) { window.location.assign("/ui/login"); throw new Error("sign in first"); }
  const body = await answer.json().catch(() => ({ error: `HTTP ${answer.status}` }));
  if (!answer.ok) throw new Error(body.error || `HTTP ${answer.status}`);
  if (body.unavailable) throw new Unavailable(body.unavailable);
  return body;
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function table(columns, rows, rowAttrs) {
  return h("table", {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)))),
    h("tbody", {}, rows.map((r, i) => h("tr", rowAttrs ? rowAttrs(r, i) : {},
      columns.map((c) => h("td", { class: c.num ? "num" : null }, c.cell(r, i)))))));
}

function failure(err) {
  return err instanceof Unavailable ? h("p", { class: "notice", role: "status" }, err.message)
    : h("p", { class: "error", role: "alert" }, err.message);
}

// ---------------------------------------------------------------- forecast: tree ---------------------------------
function indexTree(tree) {
  state.tree = tree;
  for (const n of tree.nodes) {
    state.byId.set(n.id, n);
    if (n.parent) { if (!state.kids.has(n.parent)) state.kids.set(n.parent, []); state.kids.get(n.parent).push(n); }
  }
  for (const list of state.kids.values()) list.sort((a, b) => (a.hierarchy - b.hierarchy) || ((b.next || 0) - (a.next || 0)));
  const datalist = document.getElementById("node-ids");
  datalist.replaceChildren(...tree.nodes.map((n) => h("option", { value: n.id })));
}

function treeItem(node, depth) {
  const kids = state.kids.get(node.id) || [];
  const li = h("li", { "data-level": depth, "data-open": kids.length ? "false" : null, "data-id": node.id });
  const toggle = kids.length
    ? h("button", { class: "toggle", type: "button", "aria-label": `Children of ${node.label}`, "aria-expanded": "false", tabindex: "-1",
        onclick: () => toggleNode(li, node, depth) }, "▸")
    : h("span", { class: "toggle", "aria-hidden": "true" }, "");
  const name = h("button", { class: "name", type: "button", "data-node": node.id, "aria-current": node.id === state.selected ? "true" : null,
      onclick: () => { selectNode(node.id); if (kids.length && li.dataset.open === "false") toggleNode(li, node, depth); },
      onkeydown: (e) => treeKeys(e, li, node, depth) },
    h("span", {}, node.label), h("span", { class: "amt" }, fmt(node.next)));
  li.append(h("div", { class: "row" }, toggle, name));
  return li;
}

function toggleNode(li, node, depth) {
  const open = li.dataset.open === "true";
  const existing = li.querySelector(":scope > ul");
  const toggle = li.querySelector(":scope > .row > .toggle");
  li.dataset.open = String(!open);
  toggle.setAttribute("aria-expanded", String(!open));
  toggle.textContent = open ? "▸" : "▾";
  if (open) { if (existing) existing.hidden = true; return; }
  if (existing) { existing.hidden = false; return; }
  const kids = state.kids.get(node.id) || [];
  const ul = h("ul", {});
  const levels = [...new Set(kids.map((k) => k.level))];
  for (const level of levels) {
    if (levels.length > 1) ul.append(h("li", { class: "group" }, level));
    for (const k of kids.filter((x) => x.level === level)) ul.append(treeItem(k, depth + 1));
  }
  li.append(ul);
}

function treeKeys(event, li, node, depth) {
  const buttons = [...document.querySelectorAll("#tree button.name")].filter((b) => b.offsetParent !== null);
  const at = buttons.indexOf(event.currentTarget);
  const open = li.dataset.open;
  if (event.key === "ArrowDown" && at + 1 < buttons.length) { buttons[at + 1].focus(); event.preventDefault(); }
  else if (event.key === "ArrowUp" && at > 0) { buttons[at - 1].focus(); event.preventDefault(); }
  else if (event.key === "ArrowRight" && open === "false") { toggleNode(li, node, depth); event.preventDefault(); }
  else if (event.key === "ArrowLeft") {
    if (open === "true") toggleNode(li, node, depth);
    else { const up = li.parentElement.closest("li[data-id]"); if (up) up.querySelector("button.name").focus(); }
    event.preventDefault();
  }
}

function pathTo(id) {
  const path = [];
  for (let n = state.byId.get(id); n; n = n.parent ? state.byId.get(n.parent) : null) path.unshift(n);
  return path;
}

function reveal(id) {
  // Open every ancestor's branch so that the node's row exists, then mark it.
  for (const n of pathTo(id).slice(0, -1)) {
    const li = document.querySelector(`#tree li[data-id="${CSS.escape(n.id)}"]`);
    if (li && li.dataset.open === "false") toggleNode(li, n, Number(li.dataset.level));
  }
  for (const b of document.querySelectorAll("#tree button.name")) {
    if (b.dataset.node === id) b.setAttribute("aria-current", "true"); else b.removeAttribute("aria-current");
  }
  const row = document.querySelector(`#tree button.name[data-node="${CSS.escape(id)}"]`);
  if (row) row.scrollIntoView({ block: "nearest" });
}

function search(query) {
  const box = document.getElementById("search-results");
  const q = query.trim().toLowerCase();
  if (!q) { box.hidden = true; box.replaceChildren(); return; }
  const hits = [];
  for (const n of state.tree.nodes) {
    if (n.label.toLowerCase().includes(q) || n.id.toLowerCase().includes(q)) { hits.push(n); if (hits.length >= 50) break; }
  }
  box.replaceChildren(...(hits.length ? hits.map((n) => h("li", {}, h("button", { type: "button", "data-node": n.id,
      onclick: () => { selectNode(n.id); document.getElementById("tree-search").value = ""; search(""); } },
      n.label, h("small", {}, `${n.level} · ${n.id}`)))) : [h("li", { class: "muted" }, "No node matches.")]));
  box.hidden = false;
}

// ---------------------------------------------------------------- forecast: one node -----------------------------
async function selectNode(id) {
  state.selected = id;
  reveal(id);
  const detail = document.getElementById("node-detail");
  detail.setAttribute("aria-busy", "true");
  try {
    const view = await api("node?id=" + encodeURIComponent(id));
    if (state.selected === id) drawNode(view);
  } catch (err) { detail.replaceChildren(h("p", { class: "error", role: "alert" }, err.message)); }
  detail.removeAttribute("aria-busy");
}

function quarterCard(q) {
  return h("div", { class: "card", "data-quarter": q.quarter },
    h("div", { class: "k" }, `${q.quarter} quarter · ${q.period}`),
    h("div", { class: "v" }, fmt(q.mean)),
    h("div", { class: "r" }, `80 % ${fmt(q.lo_80)} – ${fmt(q.hi_80)}`),
    h("div", { class: "r" }, `95 % ${fmt(q.lo_95)} – ${fmt(q.hi_95)}`),
    q.quarter === "current" ? h("div", { class: "r" }, `actual to date ${fmt(q.actual_to_date)}`) : null);
}

function drawNode(view) {
  const f = view.forecast;
  const detail = document.getElementById("node-detail");
  const crumbs = h("nav", { class: "crumbs", "aria-label": "Path" },
    pathTo(f.node).map((n, i, all) => i < all.length - 1
      ? [h("button", { type: "button", onclick: () => selectNode(n.id) }, n.label), " › "] : h("span", {}, n.label)));
  const parts = [
    crumbs,
    h("h1", {}, view.label),
    h("p", { class: "sub" }, `${f.level} · ${f.node}`),
    h("div", { class: "cards" }, f.quarters.map(quarterCard),
      view.last_quarter ? h("div", { class: "card", "data-quarter": "last" },
        h("div", { class: "k" }, `last quarter · ${view.last_quarter.period}`),
        h("div", { class: "v" }, fmt(view.last_quarter.actual)),
        h("div", { class: "r" }, `forecast from ${view.last_quarter.cutoff}: ${fmt(view.last_quarter.forecast)}`),
        h("div", { class: "r" }, `miss ${fmtPct((view.last_quarter.forecast - view.last_quarter.actual) / Math.max(Math.abs(view.last_quarter.actual), 1e-9))}`)) : null),
    fanChart(view.history, f.periods, f.as_of, view.label),
    h("div", { class: "legend", "aria-hidden": "true" },
      h("span", {}, h("i", { style: "background:#2f3a4a;height:2px" }), "actual"),
      h("span", {}, h("i", { style: "background:#1f5fbf;height:2px" }), "forecast mean"),
      h("span", {}, h("i", { style: "background:#8fb6ea" }), "80 % range"),
      h("span", {}, h("i", { style: "background:#c9dcf5" }), "95 % range")),
  ];
  if (view.children.length) {
    parts.push(h("h2", {}, `Children (${view.children.length})`), table([
      { label: "node", cell: (c) => h("button", { type: "button", class: "link", onclick: () => selectNode(c.node) }, c.label) },
      { label: "level", cell: (c) => c.level },
      ...["current", "next"].flatMap((which) => [
        { label: `${which} quarter`, num: true, cell: (c) => fmt((c.quarters.find((q) => q.quarter === which) || {}).mean) },
        { label: "80 % range", num: true, cell: (c) => { const q = c.quarters.find((x) => x.quarter === which) || {}; return `${fmt(q.lo_80)} – ${fmt(q.hi_80)}`; } },
      ]),
    ], view.children, (c) => ({ "data-node": c.node })));
  }
  const levels = [...new Set(view.accuracy.map((a) => a.level))];
  if (levels.length) {
    parts.push(h("h2", {}, "Accuracy on the backtest's evaluation windows"),
      h("p", { class: "hint" }, `WAPE of the served forecast against each statistical baseline, per level; the served model was chosen on ${view.accuracy[0].chosen_on} cutoffs. Lower is better; a ratio below 1 beats the best baseline.`),
      table([
        { label: "level", cell: (r) => r.level },
        { label: "model", cell: (r) => (r.role === "served" ? h("b", {}, `served (${r.made_of})`) : r.model) },
        { label: "WAPE", num: true, cell: (r) => (r.wape === null ? "–" : r.wape.toFixed(3)) },
        { label: "ratio to best baseline", num: true, cell: (r) => (r.ratio_to_best_baseline === null ? "–" : r.ratio_to_best_baseline.toFixed(3)) },
        { label: "bias", num: true, cell: (r) => fmtPct(r.bias) },
        { label: "80 % coverage", num: true, cell: (r) => fmtPct(r.cov_80) },
      ], view.accuracy.filter((r) => r.level === f.level || r.level === "total" || levels.length <= 3)));
  }
  detail.replaceChildren(...parts);
}

// The fan chart: every drawn point carries the value it was drawn from (data-*), and the axis maps back (data-y*).
function fanChart(history, periods, asOf, label) {
  const W = 900, H = 320, L = 70, R = 16, T = 14, B = 34;
  const xs = [...history.map((p) => Date.parse(p.ds)), ...periods.map((p) => Date.parse(p.ds))];
  const ys = [...history.map((p) => p.y), ...periods.flatMap((p) => [p.lo_95, p.hi_95, p.mean])];
  if (!xs.length) return h("p", { class: "muted" }, "No periods to draw.");
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  let y0 = Math.min(0, ...ys), y1 = Math.max(...ys);
  if (y1 <= y0) y1 = y0 + 1;
  const X = (t) => L + ((t - x0) / Math.max(x1 - x0, 1)) * (W - L - R);
  const Y = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
  const line = (pts) => pts.map((p, i) => `${i ? "L" : "M"}${p[0].toFixed(2)},${p[1].toFixed(2)}`).join("");
  const band = (lo, hi) => line([...periods.map((p) => [X(Date.parse(p.ds)), Y(p[hi])]),
    ...[...periods].reverse().map((p) => [X(Date.parse(p.ds)), Y(p[lo])])]) + "Z";
  const svg = s("svg", { class: "fan", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `Fan chart of ${label}: actuals, forecast mean and 80 and 95 percent ranges`,
    "data-y0": y0, "data-y1": y1, "data-top": T, "data-bottom": H - B });
  const ticks = 4;
  for (let i = 0; i <= ticks; i++) {
    const v = y0 + ((y1 - y0) * i) / ticks;
    svg.append(s("line", { class: "qline", x1: L, x2: W - R, y1: Y(v), y2: Y(v) }),
      s("text", { x: L - 6, y: Y(v) + 4, "text-anchor": "end" }, num.format(v)));
  }
  // Quarter starts on the time axis.
  const start = new Date(x0), end = new Date(x1);
  for (let d = new Date(Date.UTC(start.getUTCFullYear(), Math.floor(start.getUTCMonth() / 3) * 3 + 3, 1)); d <= end; d = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 3, 1))) {
    svg.append(s("line", { class: "axis", x1: X(d.getTime()), x2: X(d.getTime()), y1: H - B, y2: H - B + 5 }),
      s("text", { x: X(d.getTime()), y: H - B + 18, "text-anchor": "middle" }, `${d.getUTCFullYear()} Q${d.getUTCMonth() / 3 + 1}`));
  }
  svg.append(s("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  if (periods.length) {
    svg.append(s("path", { class: "band95", d: band("lo_95", "hi_95") }), s("path", { class: "band80", d: band("lo_80", "hi_80") }));
  }
  if (history.length) svg.append(s("path", { class: "hist", d: line(history.map((p) => [X(Date.parse(p.ds)), Y(p.y)])) }));
  if (periods.length) {
    svg.append(s("path", { class: "mean", d: line(periods.map((p) => [X(Date.parse(p.ds)), Y(p.mean)])) }));
    for (const p of periods) {
      svg.append(s("circle", { class: "pt", r: 2.6, cx: X(Date.parse(p.ds)).toFixed(2), cy: Y(p.mean).toFixed(3),
        "data-ds": p.ds, "data-mean": p.mean, "data-lo-80": p.lo_80, "data-hi-80": p.hi_80, "data-lo-95": p.lo_95, "data-hi-95": p.hi_95 },
        s("title", {}, `${p.ds}: ${fmt(p.mean)} (80 % ${fmt(p.lo_80)} – ${fmt(p.hi_80)})`)));
    }
  }
  if (asOf) {
    const cx = X(Date.parse(asOf));
    svg.append(s("line", { class: "cut", x1: cx, x2: cx, y1: T, y2: H - B }), s("text", { x: cx + 4, y: T + 10 }, `data to ${asOf}`));
  }
  return svg;
}

// ---------------------------------------------------------------- targets ----------------------------------------
async function submitPlan(event) {
  event.preventDefault();
  const box = document.getElementById("plan-error");
  box.hidden = true;
  const node = document.getElementById("plan-node").value.trim();
  const quarter = document.getElementById("plan-quarter").value;
  const raw = document.getElementById("plan-target").value;
  const target = Number(raw);
  const problem = !node ? "Node: choose a node (e.g. total)." : !state.byId.has(node) ? `Node: ${node} is not in the hierarchy.`
    : raw === "" || !Number.isFinite(target) || target <= 0 ? "Target: enter a positive amount." : "";
  if (problem) { box.textContent = problem; box.hidden = false; return; }
  try {
    const [plan, view] = await Promise.all([
      api("plan", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ node, target, quarter }) }),
      api("node?id=" + encodeURIComponent(node)),
    ]);
    state.plan = plan;
    drawPlan(plan, view);
    document.getElementById("plan-csv").disabled = false;
  } catch (err) { box.textContent = err.message; box.hidden = false; }
}

function drawPlan(plan, view) {
  const q = view.forecast.quarters.find((x) => x.quarter === plan.quarter);
  const parts = [h("h2", {}, `${plan.quarter} quarter ${q ? q.period : ""} · target ${fmt(plan.target)} for ${(state.byId.get(plan.node) || { label: plan.node }).label}`)];
  if (q && plan.quarter === "current") {
    const rest = q.mean - q.actual_to_date;
    parts.push(h("div", { class: "cards" },
      h("div", { class: "card", "data-k": "actual" }, h("div", { class: "k" }, "actual to date"), h("div", { class: "v" }, fmt(q.actual_to_date))),
      h("div", { class: "card", "data-k": "rest" }, h("div", { class: "k" }, "forecast of the rest"), h("div", { class: "v" }, fmt(rest))),
      h("div", { class: "card", "data-k": "landing" }, h("div", { class: "k" }, "expected landing"), h("div", { class: "v" }, fmt(q.mean)),
        h("div", { class: "r" }, `${fmtPct(q.mean / plan.target)} of target · gap ${fmt(q.mean - plan.target)}`))));
  }
  parts.push(table([
    { label: "node", cell: (r) => (state.byId.get(r.node) || { label: r.node }).label },
    { label: "role", cell: (r) => r.role },
    { label: "share", num: true, cell: (r) => fmtPct(r.share) },
    { label: "target", num: true, cell: (r) => fmt(r.target) },
    { label: "median forecast", num: true, cell: (r) => fmt(r.median) },
    { label: "P(reach target)", num: true, cell: (r) => h("span", { class: r.probability >= 0.6 ? "prob-hi" : r.probability < 0.4 ? "prob-lo" : null }, fmtPct(r.probability)) },
  ], plan.rows, (r) => ({ class: r.role === "node" ? "node-row" : null, "data-node": r.node, "data-probability": r.probability, "data-target": r.target, "data-median": r.median })),
  h("p", { class: "sub" }, `${plan.model_name} v${plan.model_version} · data to ${plan.as_of}`));
  document.getElementById("plan-result").replaceChildren(...parts);
}

function downloadPlan() {
  const plan = state.plan;
  if (!plan) return;
  const quote = (v) => (/[",\n]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v));
  const lines = [["node", "level", "role", "share", "target", "median", "probability", "quarter", "model_name", "model_version", "as_of"].join(",")];
  for (const r of plan.rows) lines.push([r.node, r.level, r.role, r.share, r.target, r.median, r.probability, plan.quarter, plan.model_name, plan.model_version, plan.as_of].map(quote).join(","));
  const link = h("a", { href: URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" })), download: `plan-${plan.quarter}.csv` });
  document.body.append(link); link.click(); link.remove();
}

// A score's top contributions: "feature = value" and whether it raises or lowers the score.
function reasons(list, what) {
  return h("ul", { class: "reasons" }, list.map((x) => h("li", {},
    h("span", { class: (x.contribution > 0) === (what === "risk") ? "worse" : "better", "aria-hidden": "true" }, x.contribution > 0 ? "▲ " : "▼ "),
    h("b", {}, x.feature), ` = ${x.value}`,
    h("span", { class: "visually-hidden" }, x.contribution > 0 ? ` raises the ${what}` : ` lowers the ${what}`))));
}

// ---------------------------------------------------------------- churn -----------------------------------------
async function loadChurn() {
  const tier = document.getElementById("churn-tier").value;
  const node = document.getElementById("churn-node").value;
  const out = document.getElementById("churn-result");
  out.setAttribute("aria-busy", "true");
  try {
    const q = new URLSearchParams({ limit: "50" });
    if (tier) q.set("tier", tier);
    if (node) q.set("node", node);
    const c = await api("churn?" + q);
    if (!state.churnLoaded) {
      state.churnLoaded = true;
      document.getElementById("churn-tier").append(...c.tiers.map((t) => h("option", { value: t }, t)));
      if (c.by_node && state.tree) {
        document.getElementById("churn-node-box").hidden = false;
        document.getElementById("churn-node").append(...state.tree.nodes.filter((n) => n.hierarchy === 0)
          .map((n) => h("option", { value: n.id }, `${"  ".repeat(Math.max(pathTo(n.id).length - 2, 0))}${n.label} (${n.level})`)));
      }
    }
    out.replaceChildren(
      h("p", { class: "hint" }, `${fmt(c.matching)} of ${fmt(c.customers)} customers match; revenue at risk among them ${fmt(c.at_risk_total)}. `
        + `Probability of no purchase within ${c.horizon_days} days, from ${c.model_name} v${c.model_version} (features as of ${c.as_of}).`),
      table([
        { label: "#", num: true, cell: (r) => r.rank },
        { label: "customer", cell: (r) => r.customer_id },
        { label: "revenue at risk", num: true, cell: (r) => fmt(r.expected_value) },
        { label: "12-month revenue", num: true, cell: (r) => fmt(r.value) },
        { label: "probability", num: true, cell: (r) => fmtPct(r.probability) },
        { label: "tier", cell: (r) => h("span", { class: `tier tier-${r.band}` }, r.band) },
        { label: "top reasons", cell: (r) => reasons(r.reasons, "risk") },
      ], c.rows, (r) => ({ "data-customer": r.customer_id, "data-probability": r.probability })));
  } catch (err) { out.replaceChildren(failure(err)); }
  out.removeAttribute("aria-busy");
}

// ---------------------------------------------------------------- leads ------------------------------------------
async function loadLeads() {
  const out = document.getElementById("leads-result");
  try {
    const l = await api("leads");
    const maxEv = Math.max(1, ...l.grades.map((g) => g.expected_value || g.count));
    out.replaceChildren(
      h("p", { class: "hint" }, `${fmt(l.total)} leads scored, ${l.what}, by ${l.model_name} v${l.model_version}`
        + (/^\d{4}-\d{2}-\d{2}$/.test(l.as_of) ? `, as of ${l.as_of}.` : ".")),
      h("h2", {}, "By grade"),
      table([
        { label: "grade", cell: (g) => h("span", { class: "grade" }, g.grade) },
        { label: "leads", num: true, cell: (g) => fmt(g.count) },
        { label: "mean probability", num: true, cell: (g) => fmtPct(g.mean_probability) },
        ...(l.has_value ? [
          { label: "pipeline value", num: true, cell: (g) => fmt(g.value) },
          { label: "expected value", num: true, cell: (g) => fmt(g.expected_value) },
        ] : []),
        { label: h("span", { class: "visually-hidden" }, "share"), cell: (g) => h("span", { class: "bar", style: `width:${Math.round(160 * ((l.has_value ? g.expected_value : g.count) || 0) / maxEv)}px`, "aria-hidden": "true" }) },
      ], l.grades, (g) => ({ "data-grade": g.grade })),
      h("h2", {}, `Top ${l.top.length} ${l.has_value ? "by expected value" : "by probability"}`),
      table([
        { label: "lead", cell: (r) => r.lead_id },
        { label: "grade", cell: (r) => h("span", { class: "grade" }, r.band) },
        { label: "probability", num: true, cell: (r) => fmtPct(r.probability) },
        ...(l.has_value ? [{ label: "value", num: true, cell: (r) => fmt(r.value) }, { label: "expected value", num: true, cell: (r) => fmt(r.expected_value) }] : []),
        { label: "factors", cell: (r) => reasons(r.factors, "chance") },
      ], l.top, (r) => ({ "data-lead": r.lead_id })));
  } catch (err) { out.replaceChildren(failure(err)); }
}

// ---------------------------------------------------------------- models -----------------------------------------
async function loadModels() {
  const out = document.getElementById("models-result");
  try {
    const m = await api("models");
    const parts = [h("h2", {}, "Champions being served"), table([
      { label: "product", cell: (c) => c.product },
      { label: "model", cell: (c) => c.name },
      { label: "version", num: true, cell: (c) => c.version },
      { label: "data to", cell: (c) => c.as_of },
      { label: "trained", cell: (c) => c.trained_at },
      { label: "source", cell: (c) => (c.stale ? "cache (STALE: registry unreachable)" : c.source) },
      { label: "headline metrics", cell: (c) => Object.entries(c.metrics || {}).slice(0, 6).map(([k, v]) => `${k} ${typeof v === "number" ? v.toFixed(3) : v}`).join(" · ") },
    ], m.champions, (c) => ({ "data-model": c.name }))];
    for (const [name, problem] of Object.entries(m.missing || {})) parts.push(h("p", { class: "error" }, `${name}: ${problem}`));
    for (const c of m.champions) {
      const hist = m.history[c.name];
      parts.push(h("h2", {}, `History of ${c.name}`));
      if (!Array.isArray(hist)) { parts.push(h("p", { class: "muted" }, hist.error)); continue; }
      parts.push(table([
        { label: "when (UTC)", cell: (r) => r.at.replace("T", " ").slice(0, 19) },
        { label: "action", cell: (r) => r.action },
        { label: "version", num: true, cell: (r) => r.version },
        { label: "by", cell: (r) => r.by || "" },
        { label: "why", cell: (r) => r.reason || r.summary || "" },
      ], [...hist].reverse()));
    }
    out.replaceChildren(...parts);
  } catch (err) { out.replaceChildren(failure(err)); }
}

// ---------------------------------------------------------------- views ------------------------------------------
const loaders = { churn: loadChurn, leads: loadLeads, models: loadModels };
const loaded = new Set();

function route() {
  const view = (location.hash || "#forecast").slice(1);
  const known = ["forecast", "targets", "churn", "leads", "models"];
  const name = known.includes(view) ? view : "forecast";
  for (const k of known) document.getElementById("view-" + k).hidden = k !== name;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.view === name) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  if (loaders[name] && !loaded.has(name)) { loaded.add(name); loaders[name](); }
}

async function start() {
  window.addEventListener("hashchange", route);
  document.getElementById("tree-search").addEventListener("input", (e) => search(e.target.value));
  document.getElementById("plan-form").addEventListener("submit", submitPlan);
  document.getElementById("plan-csv").addEventListener("click", downloadPlan);
  document.getElementById("churn-tier").addEventListener("change", loadChurn);
  document.getElementById("churn-node").addEventListener("change", loadChurn);
  route();
  try {
    const tree = await api("tree");
    indexTree(tree);
    document.getElementById("provenance").textContent =
      `Forecast ${tree.model_name} v${tree.model_version} (${tree.model}) · data to ${tree.as_of}`;
    const root = state.byId.get("total") || tree.nodes[0];
    const ul = document.getElementById("tree");
    const item = treeItem(root, 1);
    ul.replaceChildren(item);
    toggleNode(item, root, 1);
    await selectNode(root.id);
    document.body.dataset.readyMs = String(Math.round(performance.now()));  // since navigation began (benchmarks)
    document.body.dataset.ready = "true";
  } catch (err) {
    showError(`The forecast could not be loaded: ${err.message}`);
    document.getElementById("provenance").textContent = "No forecast champion";
    document.body.dataset.ready = "true";
  }
}

start();
