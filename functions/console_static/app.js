// The operator console: plain JavaScript over the management API (manage/v1), no framework, no build step.
// The admin key comes from the address the page was opened with (?code=...), is kept in this tab's
// sessionStorage only, taken out of the address bar, and sent as x-functions-key. It is never logged.
"use strict";

const API = document.querySelector('meta[name="dw-api"]').content; // e.g. "/api/"
const BASE = document.querySelector('meta[name="dw-base"]').content; // e.g. "/api/console/"
const KEY_STORE = "dualwrite.console.key";
const TAIL_MS = 2000;
const REFRESH_MS = { dashboard: 5000, runs: 3000, alerts: 5000 };
const VALIDATE_DEBOUNCE_MS = 400;

const state = {
  meta: null, // console/meta.json: modes and their allowed actions, outcomes, categories, statuses
  view: null,
  timer: null,
  tail: null,
  maps: [], // names of the running maps
  activity: [], // the rows shown, newest first
  errors: [],
  map: null, // the map page: {name, running, etag, draftText, problems, validateRoute}
};

// -- small helpers -----------------------------------------------------------------------------------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "style") el.style.cssText = value; // CSSOM: the page's CSP allows no style attributes
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(plain(child)));
  }
  return el;
}

const $ = (selector, root = document) => root.querySelector(selector);

function badge(value, label) {
  return h("span", { class: `badge ${value}` }, label || String(value).replace(/_/g, " "));
}

function when(iso) {
  if (!iso) return "";
  const at = new Date(iso);
  const now = new Date();
  const pad = (n) => String(n).padStart(2, "0");
  const time = `${pad(at.getHours())}:${pad(at.getMinutes())}:${pad(at.getSeconds())}`;
  if (at.toDateString() === now.toDateString()) return time;
  return `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())} ${time}`;
}

function ago(iso) {
  if (!iso) return "";
  const seconds = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

function timeCell(iso) {
  return h("td", { class: "mono small", title: iso || "" }, when(iso));
}

function toast(message, bad = false) {
  const el = h("div", { class: bad ? "toast bad" : "toast", role: "status" }, message);
  $("#toasts").append(el);
  setTimeout(() => el.remove(), bad ? 9000 : 4000);
}

function emptyRow(columns, text) {
  return h("tr", { class: "empty" }, h("td", { colspan: columns }, text));
}

function progressBar(fraction, { done = false, indeterminate = false } = {}) {
  const pct = Math.max(0, Math.min(1, fraction || 0)) * 100;
  const cls = ["bar", done ? "done" : "", indeterminate ? "indeterminate" : ""].join(" ").trim();
  return h("div", { class: cls, role: "progressbar", "aria-valuenow": Math.round(pct), "aria-valuemin": 0,
    "aria-valuemax": 100 }, h("span", { style: `width: ${pct.toFixed(1)}%` }));
}

// Maps keep every digit of their decimals (the API sends them exact): read numbers that a double cannot
// hold as they were written, so a definition shown in the editor and saved back is the same map.
const EXACT = typeof JSON.rawJSON === "function";

function decimalDigits(text) {
  // "-12.340e3" -> "-1234e1": the same number written the same way, to compare a source with a double's digits
  const match = /^(-?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(text);
  if (!match) return text;
  let digits = (match[2] || "") + (match[3] || "");
  let exponent = Number(match[4] || 0) - (match[3] || "").length;
  const lead = digits.match(/^0*/)[0].length;
  digits = digits.slice(lead);
  const trail = digits.match(/0*$/)[0].length;
  digits = digits.slice(0, digits.length - trail);
  exponent += trail;
  return digits ? `${match[1]}${digits}e${exponent}` : "0";
}

function parseExact(text) {
  if (!EXACT) return JSON.parse(text);
  return JSON.parse(text, (key, value, context) =>
    typeof value === "number" && context && context.source !== undefined
      && decimalDigits(String(value)) !== decimalDigits(context.source) ? JSON.rawJSON(context.source) : value);
}

function plain(value) {
  // a number kept exact (JSON.rawJSON) as its digits; anything else as text
  if (value && typeof value === "object" && typeof JSON.isRawJSON === "function" && JSON.isRawJSON(value)) {
    return value.rawJSON;
  }
  return typeof value === "object" && value !== null ? JSON.stringify(value) : String(value);
}

// -- the key and the API -----------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, body) {
    const detail = body && typeof body === "object" ? body.detail || body.title : body;
    super(detail ? `${status}: ${detail}` : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

function takeKeyFromAddress() {
  const url = new URL(window.location.href);
  const code = url.searchParams.get("code");
  if (code) {
    sessionStorage.setItem(KEY_STORE, code);
    url.searchParams.delete("code");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
}

function askForKey(why) {
  const dialog = $("#key-dialog");
  if (why) $("#key-why").textContent = why;
  if (!dialog.open) dialog.showModal();
  $("#key-input").focus();
}

async function api(method, path, { body, headers = {}, allow = [], exact = false } = {}) {
  const key = sessionStorage.getItem(KEY_STORE);
  if (!key && path.startsWith("manage/")) {
    askForKey();
    throw new ApiError(401, "no key");
  }
  const sent = { Accept: "application/json", ...headers };
  if (key) sent["x-functions-key"] = key;
  if (body !== undefined) sent["Content-Type"] = "application/json";
  const response = await fetch(API + path, {
    method, headers: sent, cache: "no-store",
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = exact ? parseExact(text) : JSON.parse(text); } catch { data = text; }
  }
  if (response.status === 401) {
    sessionStorage.removeItem(KEY_STORE);
    askForKey("The key was refused: the management API needs the app's admin (master) key.");
    throw new ApiError(401, "the key was refused");
  }
  if (!response.ok && !allow.includes(response.status)) throw new ApiError(response.status, data);
  return { status: response.status, data, headers: response.headers };
}

const enc = encodeURIComponent;

function query(params) {
  const parts = Object.entries(params).filter(([, v]) => v !== "" && v !== null && v !== undefined);
  return parts.length ? "?" + parts.map(([k, v]) => `${enc(k)}=${enc(v)}`).join("&") : "";
}

// -- health and the maps list every view shares ----------------------------------------------------
async function loadHealth() {
  const pill = $("#health");
  try {
    const { data } = await api("GET", "health", { allow: [500, 503] });
    const status = data && data.status ? data.status : "unknown";
    pill.textContent = status;
    pill.className = `pill ${status === "healthy" ? "ok" : "bad"}`;
    const parts = data && typeof data === "object"
      ? [`version ${data.version}`, ...["table_storage", "service_bus"].filter((k) => data[k]).map(
        (k) => `${k.replace("_", " ")}: ${data[k].reachable ? "reachable" : data[k].error || "unreachable"}`)]
      : [];
    pill.title = parts.join("\n");
  } catch (error) {
    pill.textContent = "unreachable";
    pill.className = "pill bad";
    pill.title = String(error.message);
  }
}

function fillSelect(select, values, labels = {}) {
  const keep = select.value;
  const fixed = [...select.querySelectorAll("option[data-fixed]")];
  if (!fixed.length) select.querySelectorAll("option").forEach((o) => { o.dataset.fixed = "1"; });
  select.querySelectorAll("option:not([data-fixed])").forEach((o) => o.remove());
  for (const value of values) select.append(h("option", { value }, labels[value] || value));
  if ([...select.options].some((o) => o.value === keep)) select.value = keep;
}

function showBanner(text) {
  const banner = $("#banner");
  banner.textContent = text || "";
  banner.hidden = !text;
}

// -- dashboard ---------------------------------------------------------------------------------------
function actionButtons(view) {
  const allowed = (state.meta.modes[view.mode] || { actions: [] }).actions;
  return h("div", { class: "actions" }, state.meta.actions.map((action) =>
    h("button", {
      type: "button", dataset: { action, map: view.map }, disabled: !allowed.includes(action),
      class: action === "stop" ? "danger" : "",
      title: allowed.includes(action) ? `${action} ${view.map}` : `not allowed while ${view.label}`,
      onclick: () => moveMap(view.map, action),
    }, action)));
}

function catchUpCell(view) {
  const progress = view.catch_up;
  if (!progress) return h("td", { class: "muted" }, "");
  const total = progress.parked_at_resume || 0;
  const done = Boolean(progress.finished_at);
  const fraction = done ? 1 : total ? (total - progress.left) / total : 0;
  const rate = progress.rate_per_s ? `, ${progress.rate_per_s}/s` : "";
  return h("td", {},
    progressBar(fraction, { done }),
    h("div", { class: "bar-label" }, done ? `done ${when(progress.finished_at)} (${progress.sent} sent)`
      : `${progress.sent} sent, ${progress.left} left of ${total}${rate}`));
}

function lagText(ms) {
  if (ms === null || ms === undefined) return "";
  return ms < 1000 ? `${Math.round(ms)} ms` : ms < 60000 ? `${(ms / 1000).toFixed(1)} s` : `${(ms / 60000).toFixed(1)} min`;
}

// The figures per map come from GET manage/v1/health: open errors from the error log; applied per minute and the
// lag (source change -> target write, p50/p95) from the activity log over its window (10 minutes).
async function loadDashboard() {
  const [modes, health, metrics, alerts] = await Promise.all([api("GET", "manage/v1/modes"),
    api("GET", "manage/v1/health"), optional("manage/v1/metrics"), optional("manage/v1/alerts")]);
  const views = modes.data.maps;
  state.maps = views.map((v) => v.map);
  showBanner(modes.data.maps_problem ? `The newest maps do not run: ${modes.data.maps_problem}` : "");
  const figures = Object.fromEntries(health.data.maps.map((m) => [m.map, m]));
  const minutes = health.data.window_minutes;
  const openErrors = health.data.maps.reduce((n, m) => n + m.open_errors, 0);
  const perMinute = health.data.maps.reduce((n, m) => n + m.applied_per_min, 0);
  const sampled = health.data.maps.some((m) => m.sampled);
  const p95s = health.data.maps.map((m) => m.lag_ms_p95).filter((x) => x !== null && x !== undefined);
  setErrorCount(openErrors);
  const byMap = metricsByMap(metrics);
  const firing = alerts ? (alerts.alerts || []).filter((a) => a.state === "firing") : null;
  if (firing) setAlertCount(firing.length);

  const byMode = {};
  for (const v of views) byMode[v.mode] = (byMode[v.mode] || 0) + 1;
  const parked = views.reduce((n, v) => n + v.parked.changes, 0);
  const card = (value, label, id) => h("div", { class: "card", id }, h("div", { class: "value" }, value),
    h("div", { class: "label" }, label));
  $("#dash-cards").replaceChildren(
    card(views.length, "maps", "card-maps"),
    card(byMode.running || 0, "running", "card-running"),
    card(views.length - (byMode.running || 0), "not running", "card-other"),
    card(parked, "parked changes", "card-parked"),
    card(openErrors, "open errors", "card-errors"),
    card(perMinute.toFixed(1) + (sampled ? "+" : ""), `applied / min (${minutes} min)`, "card-rate"),
    card(p95s.length ? lagText(Math.max(...p95s)) : "\u2014", "worst lag p95", "card-lag"),
    ...metricsCards(metrics, firing, card),
  );
  $("#dash-meta").textContent = modes.data.maps_loaded_at ? `maps loaded ${ago(modes.data.maps_loaded_at)}` : "";
  $("#dash-window").textContent = `${minutes} minutes`;

  const rows = views.map((v) => {
    const f = figures[v.map] || {};
    return h("tr", { dataset: { map: v.map, mode: v.mode } },
      h("td", {}, h("a", { href: `#maps/${enc(v.map)}` }, v.map)),
      h("td", { class: "mode" }, badge(v.mode, v.label)),
      h("td", { class: "small" }, v.since ? h("span", { title: v.since }, ago(v.since)) : h("span", { class: "muted" }, "never moved"),
        v.by ? h("span", { class: "muted" }, ` by ${v.by}`) : "", v.reason ? h("div", { class: "muted" }, v.reason) : ""),
      h("td", { class: "num", title: `${v.parked.changes} changes over ${v.parked.records} records` },
        v.parked.records ? `${v.parked.records} / ${v.parked.changes}` : "0"),
      catchUpCell(v),
      h("td", { class: "num errors" }, f.open_errors
        ? h("a", { href: `#errors?map=${enc(v.map)}` }, String(f.open_errors)) : "0"),
      h("td", { class: "num rate", title: f.last_applied_at ? `last applied ${when(f.last_applied_at)}` : "" },
        (f.applied_per_min || 0).toFixed(1) + (f.sampled ? "+" : "")),
      h("td", { class: "num lag small" }, f.lag_ms_p50 === null || f.lag_ms_p50 === undefined
        ? h("span", { class: "muted" }, "\u2014") : `${lagText(f.lag_ms_p50)} / ${lagText(f.lag_ms_p95)}`,
      lagByDirection(byMap[v.map] || [])),
      ...metricsCells(byMap[v.map] || []),
      h("td", {}, actionButtons(v)),
    );
  });
  $("#dash-table tbody").replaceChildren(...(rows.length ? rows : [emptyRow(11, "no maps run")]));
}

// GET manage/v1/metrics (per map and direction, per side) and manage/v1/alerts: an engine from before them (404),
// or a failing one, leaves their cells empty rather than the dashboard.
async function optional(path) {
  try {
    const { status, data } = await api("GET", path, { allow: [404, 405] });
    return status === 200 && data && typeof data === "object" ? data : null;
  } catch (error) {
    if (error.status === 401) throw error;
    return null;
  }
}

const DIRECTIONS = { to_dataverse: "to Dataverse", to_fno: "to F&O" };
const SIDES = { dataverse: "Dataverse", fno: "F&O" };

function secondsText(s) {
  return s === null || s === undefined ? "" : lagText(s * 1000);
}

function metricsByMap(metrics) {
  const byMap = {};
  for (const m of (metrics && metrics.maps) || []) (byMap[m.map] = byMap[m.map] || []).push(m);
  if (metrics) $("#dash-metrics-window").textContent = `${metrics.window_minutes} minutes`;
  return byMap;
}

function dash() {
  return h("span", { class: "muted" }, "\u2014");
}

// Under the lag of the activity log: the metrics' p95 per direction, "to Dataverse / to F&O" (nothing when neither
// has one).
function lagByDirection(directions) {
  const lag = (name) => directions.find((d) => d.direction === name && d.lag_p95_s !== null && d.lag_p95_s !== undefined);
  if (!lag("to_dataverse") && !lag("to_fno")) return "";
  const text = (name) => (lag(name) ? secondsText(lag(name).lag_p95_s) : "\u2014");
  return h("div", { class: "lag-dir muted", title: `lag p95 to Dataverse: ${text("to_dataverse")}\nlag p95 to F&O: ${text("to_fno")}` },
    `\u2192DV ${text("to_dataverse")} / \u2192F&O ${text("to_fno")}`);
}

// The oldest waiting change of the map, and its error rate over both directions.
function metricsCells(directions) {
  const ages = directions.map((d) => d.backlog_age_s).filter((x) => x !== null && x !== undefined);
  const failed = directions.reduce((n, d) => n + (d.failed || 0), 0);
  const done = failed + directions.reduce((n, d) => n + (d.applied || 0), 0);
  const rates = directions.filter((d) => d.error_rate_pct !== null && d.error_rate_pct !== undefined)
    .map((d) => `${DIRECTIONS[d.direction] || d.direction}: ${d.error_rate_pct.toFixed(1)} %`);
  return [
    h("td", { class: "num backlog small", title: directions.map((d) => `${DIRECTIONS[d.direction] || d.direction}: `
      + (secondsText(d.backlog_age_s) || "nothing waiting")).join("\n") }, ages.length ? secondsText(Math.max(...ages)) : dash()),
    h("td", { class: "num error-rate small", title: rates.join("\n") },
      done ? `${(100 * failed / done).toFixed(1)} %` : dash()),
  ];
}

// Throttling per side, firing alerts and the last deployment, as cards next to the maps' own.
function metricsCards(metrics, firing, card) {
  const cards = [];
  const sides = (metrics && metrics.sides) || [];
  if (sides.length) {
    const el = card(sides.map((side) => (side.throttled_per_min || 0).toFixed(1)).join(" / "),
      `429s / min: ${sides.map((side) => SIDES[side.side] || side.side).join(" / ")}`, "card-throttled");
    el.title = sides.map((side) => `${SIDES[side.side] || side.side}: ${side.throttled} throttled in ${metrics.window_minutes} min`).join("\n");
    sides.forEach((side) => { el.dataset[side.side] = String(side.throttled_per_min); });
    cards.push(el);
  }
  if (firing) {
    const el = card(h("a", { href: "#alerts" }, String(firing.length)), "alerts firing", "card-alerts");
    if (firing.length) el.classList.add("alarm");
    cards.push(el);
  }
  const deployment = metrics && metrics.deployment;
  if (deployment) {
    const el = card(deployment.status, "last deployment", "card-deployment");
    el.title = [deployment.at ? when(deployment.at) : "", deployment.detail || ""].filter(Boolean).join(": ");
    if (deployment.status === "failed") el.classList.add("alarm");
    cards.push(el);
  }
  return cards;
}

function setAlertCount(n) {
  $("#nav-alerts").textContent = n ? String(n) : "";
}

async function moveMap(name, action) {
  const buttons = document.querySelectorAll(`#dash-table button[data-map="${CSS.escape(name)}"]`);
  buttons.forEach((b) => { b.disabled = true; });
  try {
    const { data } = await api("POST", `manage/v1/modes/${enc(name)}/${action}`,
      { body: { reason: $("#move-reason").value.trim() }, headers: { "x-dualwrite-user": "console" } });
    toast(`${name}: ${data.label}`);
  } catch (error) {
    if (error.status !== 401) toast(`${name}: ${action} refused: ${error.message}`, true);
  }
  if (state.view === "dashboard") await refresh();
}

function setErrorCount(n) {
  $("#nav-errors").textContent = n ? (n >= 1000 ? "1000+" : String(n)) : "";
}

// -- map page ----------------------------------------------------------------------------------------
const ARROWS = { both: "\u21c4", to_dataverse: "\u2192", to_fno: "\u2190" };

async function loadMaps(arg) {
  const { data } = await api("GET", "manage/v1/maps");
  state.maps = data.maps.map((m) => m.name);
  showBanner(data.maps_problem ? `The newest maps do not run: ${data.maps_problem}` : "");
  const chosen = arg || (state.map && state.map.name) || state.maps[0];
  $("#map-list").replaceChildren(...data.maps.map((m) => h("li", {},
    h("a", { href: `#maps/${enc(m.name)}`, class: m.name === chosen ? "active" : "", dataset: { map: m.name } },
      h("span", {}, m.name),
      h("span", { class: "muted small" }, m.revision ? `r${m.revision}` : `v${m.version}`)))));
  const definitions = {};
  await Promise.all(state.maps.map(async (name) => {
    const { data: shown, headers } = await api("GET", `manage/v1/maps/${enc(name)}`, { exact: true });
    definitions[name] = { ...shown, etag: (headers.get("ETag") || "").replace(/"/g, "") };
  }));
  drawGraph(definitions, chosen);
  if (chosen && definitions[chosen]) showMap(definitions[chosen]);
}

function dependencies(definition) {
  const out = [];
  if (definition.company) out.push({ target: definition.company.map, via: definition.company.dataverse, required: true });
  for (const lookup of definition.lookups || []) {
    out.push({ target: lookup.map, via: lookup.dataverse, required: lookup.required !== false });
  }
  return out;
}

// The sync plan as core/maps/graph.py makes it: every required dependency kept; the optional lookups, in order
// of map and lookup, kept unless one closes a cycle (that one is written in a second pass: "deferred"); then
// rounds of the maps whose dependencies are done, by name. A map's round is its column in the drawing.
function syncPlan(definitions) {
  const names = Object.keys(definitions).sort();
  const edges = [];
  for (const name of names) {
    for (const dep of dependencies(definitions[name].definition)) {
      if (dep.target !== name && definitions[dep.target]) edges.push({ from: name, to: dep.target, via: dep.via, required: dep.required, deferred: false });
    }
  }
  const kept = edges.filter((e) => e.required);
  const reaches = (start, goal) => {
    const seen = new Set([start]);
    const todo = [start];
    while (todo.length) {
      const at = todo.pop();
      if (at === goal) return true;
      for (const e of kept) if (e.from === at && !seen.has(e.to)) { seen.add(e.to); todo.push(e.to); }
    }
    return false;
  };
  const optional = edges.filter((e) => !e.required).sort((a, b) => (a.from + "\u0000" + a.via < b.from + "\u0000" + b.via ? -1 : 1));
  for (const e of optional) {
    if (reaches(e.to, e.from)) e.deferred = true;
    else kept.push(e);
  }
  const pending = new Map(names.map((n) => [n, new Set(kept.filter((e) => e.from === n).map((e) => e.to))]));
  const rounds = [];
  while (pending.size) {
    let ready = [...pending].filter(([, deps]) => !deps.size).map(([n]) => n).sort();
    if (!ready.length) ready = [[...pending.keys()].sort()[0]]; // a cycle of required lookups: core refuses it
    rounds.push(ready);
    ready.forEach((n) => pending.delete(n));
    for (const deps of pending.values()) ready.forEach((n) => deps.delete(n));
  }
  return { rounds, edges, order: rounds.flat() };
}

function drawGraph(definitions, current) {
  const { rounds, edges, order } = syncPlan(definitions);
  const W = 132, H = 26, GAPX = 44, GAPY = 12, PAD = 10;
  const place = {};
  rounds.forEach((names, column) => names.forEach((name, i) => { place[name] = { x: PAD + column * (W + GAPX), y: PAD + i * (H + GAPY) }; }));
  const width = PAD * 2 + Math.max(1, rounds.length) * (W + GAPX) - GAPX;
  const height = PAD * 2 + Math.max(1, ...rounds.map((c) => c.length)) * (H + GAPY) - GAPY + 24;
  const NS = "http://www.w3.org/2000/svg";
  const make = (tag, attrs, text) => {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    return el;
  };
  const svg = make("svg", { viewBox: `0 0 ${width} ${height}`, width, role: "img",
    "aria-label": "map dependencies: each map is drawn right of the maps it references" });
  for (const e of edges) {
    const from = place[e.from], to = place[e.to];
    const d = e.deferred
      ? `M${from.x + W / 2},${from.y + H} C${from.x + W / 2},${from.y + H + 30} ${to.x + W / 2},${to.y + H + 30} ${to.x + W / 2},${to.y + H}`
      : `M${from.x},${from.y + H / 2} C${from.x - GAPX / 2},${from.y + H / 2} ${to.x + W + GAPX / 2},${to.y + H / 2} ${to.x + W},${to.y + H / 2}`;
    const path = make("path", { d, class: e.deferred ? "edge deferred" : "edge" });
    path.append(make("title", {}, `${e.from}.${e.via} \u2192 ${e.to}${e.deferred ? " (closes a cycle: patched after the first pass)" : ""}`));
    svg.append(path);
  }
  for (const name of order) {
    const p = place[name];
    const g = make("g", { class: name === current ? "node current" : "node", "data-map": name });
    g.append(make("rect", { x: p.x, y: p.y, width: W, height: H, rx: 6 }),
      make("text", { x: p.x + W / 2, y: p.y + H / 2 + 4, "text-anchor": "middle" }, name.length > 19 ? name.slice(0, 18) + "\u2026" : name),
      make("title", {}, name));
    g.addEventListener("click", () => { window.location.hash = `#maps/${enc(name)}`; });
    svg.append(g);
  }
  state.graph = svg;
  $("#map-plan").replaceChildren(...order.map((name) => {
    const after = [...new Set(edges.filter((e) => e.from === name && !e.deferred).map((e) => e.to))];
    const later = edges.filter((e) => e.from === name && e.deferred);
    return h("li", { dataset: { map: name } }, h("a", { href: `#maps/${enc(name)}` }, name),
      after.length ? h("span", { class: "muted" }, ` after ${after.join(", ")}`) : "",
      later.map((e) => h("div", { class: "deferred" }, `then ${e.via} \u2192 ${e.to}`)));
  }));
}

function showMap(shown) {
  const text = JSON.stringify(shown.definition, null, 2);
  state.map = { name: shown.name, running: shown, etag: shown.etag || "0", text, problems: [], seq: 0,
    validateRoute: state.map ? state.map.validateRoute : undefined };
  const origin = shown.revision ? `stored revision ${shown.revision}` : shown.origin;
  const editor = h("textarea", { id: "map-editor", spellcheck: "false", "aria-label": "map JSON",
    oninput: () => scheduleCheck() });
  editor.value = text;
  const detail = $("#map-detail");
  detail.replaceChildren(
    h("div", { class: "title" }, h("h1", {}, shown.name), shown.title ? h("span", { class: "muted" }, shown.title) : "",
      badge(shown.enabled ? "running" : "stopped", shown.enabled ? "enabled" : "disabled"),
      h("span", { class: "muted small" }, `version ${shown.version} \u00b7 ${origin}`)),
    h("div", { id: "map-unplaced" }),
    h("div", { id: "map-graph", class: "graph" }, state.graph || ""),
    h("div", { id: "map-structure" }),
    h("h3", {}, "Edit"),
    h("p", { class: "muted small" }, "The running definition as JSON. It is checked as you type; each problem is shown ",
      "next to the field it names above. Save stores it as the map's next revision (every instance runs it within 30 s)."),
    h("div", { class: "editor" },
      editor,
      h("div", { class: "editor-bar" },
        h("span", { id: "map-check", class: "check" }, ""),
        h("span", { class: "sep" }),
        h("label", { class: "muted small" }, "reason ", h("input", { id: "map-reason", size: 28, placeholder: "why (recorded)" })),
        h("button", { type: "button", id: "map-save", class: "primary", onclick: saveMap }, "Save"),
        h("button", { type: "button", id: "map-reset", onclick: () => showMap(shown) }, "Discard edits")),
      h("ul", { id: "map-problems", class: "problems" })),
    h("h3", {}, "Preview"),
    h("p", { class: "muted small" }, "A sample record as read on one side, sent through the draft above: the values it ",
      "would write on the other side. Nothing is read or written."),
    h("div", { class: "editor" },
      h("textarea", { id: "map-sample", spellcheck: "false", "aria-label": "sample record JSON", rows: 6,
        placeholder: '{"accountnumber": "US-001", "name": "Contoso"}' }),
      h("div", { class: "editor-bar" },
        h("label", { class: "muted small" }, "from ",
          h("select", { id: "map-direction" },
            h("option", { value: "to_fno" }, "Dataverse \u2192 F&O"),
            h("option", { value: "to_dataverse" }, "F&O \u2192 Dataverse"))),
        h("span", { class: "sep" }),
        h("button", { type: "button", id: "map-preview", onclick: previewSample }, "Preview")),
      h("pre", { id: "map-preview-out", class: "mono small" }, "")),
  );
  renderStructure(shown.definition, []);
  setCheck("", "");
}

function setCheck(cls, text) {
  const el = $("#map-check");
  if (!el) return;
  el.className = `check ${cls}`;
  el.textContent = text;
}

function renderStructure(definition, problems) {
  const unplaced = new Set(problems);
  const here = (names, indexPath) => {
    const found = problems.filter((p) => {
      const fields = String(p.field || "").split(/,\s*/);
      const field = String(p.field || "");
      return fields.some((f) => names.includes(f))
        || (indexPath && (field === indexPath || field.startsWith(indexPath + ".") || field.startsWith(indexPath + "[")));
    });
    found.forEach((p) => unplaced.delete(p));
    return found;
  };
  const problemCell = (found) => h("td", { class: "problem-cell" }, found.map((p) =>
    h("div", { class: `problem ${p.severity || "error"}`, dataset: { field: p.field || "" } }, p.message)));
  const rowClass = (found) => (found.some((p) => (p.severity || "error") === "error") ? "has-problem" : "");

  // settings: the map's own keys, named as problems name them (conflict, online, fno.filter, ...)
  const d = definition && typeof definition === "object" && !Array.isArray(definition) ? definition : {};
  const obj = (v) => (v && typeof v === "object" && !Array.isArray(v) ? v : {});
  const list = (v) => (Array.isArray(v) ? v.join(", ") : v);
  const company = obj(d.company), fno = obj(d.fno), dataverse = obj(d.dataverse);
  const settings = [
    ["name", d.name], ["primary", d.primary], ["conflict", d.conflict], ["online", d.online ?? false],
    ["enabled", d.enabled ?? true], ["version", d.version],
    ["company", d.company ? `${company.fno ?? "dataAreaId"} \u2194 ${company.dataverse} via ${company.map}` : "global",
      [company.fno, company.dataverse]],
    ["fno.entity_set", fno.entity_set], ["fno.key", list(fno.key)], ["fno.filter", fno.filter],
    ["dataverse.table", dataverse.table], ["dataverse.entity_set", dataverse.entity_set],
    ["dataverse.key", list(dataverse.key)], ["dataverse.filter", dataverse.filter],
  ];
  const fieldNames = new Set((Array.isArray(d.fields) ? d.fields : []).flatMap((f) => [obj(f).fno, obj(f).dataverse]));
  const settingProblems = settings.map(([name, , also]) => problems.filter((p) => {
    const field = String(p.field || "");
    return field === name || field.startsWith(name + ".") || field.startsWith(name + "[")
      || ((also || []).includes(field) && !fieldNames.has(field));
  }));
  settingProblems.flat().forEach((p) => unplaced.delete(p));
  const settingsTable = h("table", { class: "grid", id: "map-settings" },
    h("thead", {}, h("tr", {}, h("th", {}, "setting"), h("th", {}, "value"), h("th", {}, ""))),
    h("tbody", {}, settings.map(([name, value], i) => h("tr", { dataset: { field: name }, class: rowClass(settingProblems[i]) },
      h("td", { class: "mono" }, name),
      h("td", { class: "mono wrap" }, value === undefined || value === null || value === "" ? h("span", { class: "muted" }, "\u2014") : plain(value)),
      problemCell(settingProblems[i])))));

  const fields = Array.isArray(d.fields) ? d.fields : [];
  const fieldRows = fields.map((f, i) => {
    const item = f && typeof f === "object" ? f : {};
    const found = here([item.fno, item.dataverse].filter(Boolean), `fields[${i}]`);
    return h("tr", { dataset: { field: item.fno || item.dataverse || `fields[${i}]`, index: i }, class: rowClass(found) },
      h("td", { class: "mono" }, item.fno || h("span", { class: "muted" }, "\u2014")),
      h("td", { class: "dir", title: plain(item.direction ?? "") }, ARROWS[item.direction] || plain(item.direction ?? "?")),
      h("td", { class: "mono" }, item.dataverse || h("span", { class: "muted" }, "\u2014")),
      h("td", {}, plain(item.type ?? "")),
      h("td", {}, (Array.isArray(item.transform) ? item.transform : []).map((t) => h("span", { class: "transform", title: JSON.stringify(t) },
        describeTransform(t)))),
      problemCell(found));
  });
  const lookups = Array.isArray(d.lookups) ? d.lookups : [];
  const lookupRows = lookups.map((l, i) => {
    const item = l && typeof l === "object" ? l : {};
    const found = here([item.dataverse, ...Object.keys(obj(item.fno))].filter(Boolean), `lookups[${i}]`);
    return h("tr", { dataset: { field: item.dataverse || `lookups[${i}]`, index: i }, class: rowClass(found) },
      h("td", { class: "mono" }, Object.entries(obj(item.fno)).map(([ours, theirs]) => `${ours} = ${theirs}`).join(", ")),
      h("td", { class: "dir" }, ARROWS[item.direction || "both"] || plain(item.direction)),
      h("td", { class: "mono" }, item.dataverse || ""),
      h("td", {}, h("a", { href: `#maps/${enc(item.map || "")}` }, item.map || "")),
      h("td", {}, item.required === false ? "optional" : "required"),
      problemCell(found));
  });
  const head = (...names) => h("thead", {}, h("tr", {}, names.map((n) => h("th", {}, n))));
  $("#map-structure").replaceChildren(
    h("div", { class: "sides" },
      h("div", {}, h("h3", {}, "Settings and filters"), settingsTable),
      h("div", {}, h("h3", {}, "Description"), h("p", { class: "muted" }, d.description || "\u2014"))),
    h("h3", {}, `Fields (${fields.length})`),
    h("table", { class: "grid", id: "map-fields" }, head("F&O field", "", "Dataverse column", "type", "transforms", ""),
      h("tbody", {}, fieldRows.length ? fieldRows : emptyRow(6, "no fields"))),
    h("h3", {}, `Lookups (${lookups.length})`),
    h("table", { class: "grid", id: "map-lookups" }, head("F&O fields", "", "Dataverse lookup", "map", "", ""),
      h("tbody", {}, lookupRows.length ? lookupRows : emptyRow(6, "no lookups"))),
  );
  const rest = [...unplaced];
  $("#map-unplaced").replaceChildren(...(rest.length ? [h("ul", { class: "problems" }, rest.map((p) =>
    h("li", { class: p.severity || "error", dataset: { field: p.field || "" } },
      p.field ? `${p.field}: ${p.message}` : p.message)))] : []));
}

function describeTransform(t) {
  if (!t || typeof t !== "object") return String(t);
  const { type, ...rest } = t;
  const params = Object.entries(rest).filter(([k]) => k !== "pairs").map(([k, v]) => `${k}=${JSON.stringify(v)}`);
  if (Array.isArray(rest.pairs)) params.unshift(`${rest.pairs.length} pairs`);
  return params.length ? `${type}(${params.join(", ")})` : String(type);
}

let checkTimer = null;
function scheduleCheck() {
  clearTimeout(checkTimer);
  setCheck("busy", "checking\u2026");
  checkTimer = setTimeout(checkDraft, VALIDATE_DEBOUNCE_MS);
}

function draft() {
  const text = $("#map-editor").value;
  try {
    return { text, definition: parseExact(text) };
  } catch (error) {
    return { text, error: error.message };
  }
}

async function checkDraft() {
  const current = state.map;
  const seq = ++current.seq;
  const { text, definition, error } = draft();
  const editor = $("#map-editor");
  if (error) {
    editor.classList.add("invalid");
    setCheck("bad", "not JSON");
    $("#map-problems").replaceChildren(h("li", {}, `not JSON: ${error}`));
    return;
  }
  renderStructure(definition, []);
  $("#map-problems").replaceChildren();
  if (current.validateRoute === false) {
    editor.classList.remove("invalid");
    setCheck("", "JSON ok; the map is checked when saved");
    return;
  }
  let answer;
  try {
    answer = await api("POST", `manage/v1/maps/${enc(current.name)}/validate`, { body: text, allow: [400, 404, 413, 422] });
  } catch (failure) {
    if (seq === current.seq) setCheck("bad", `could not check: ${failure.message}`);
    return;
  }
  if (seq !== current.seq || state.map !== current) return; // a later keystroke has its own check
  if (answer.status === 404 && !answer.data) {
    current.validateRoute = false; // this app has no dry-run route yet: Save's 422 names the problems
    editor.classList.remove("invalid");
    setCheck("", "JSON ok; the map is checked when saved");
    return;
  }
  current.validateRoute = true;
  showProblems(definition, problemsOf(answer));
}

function problemsOf(answer) {
  const data = answer.data && typeof answer.data === "object" ? answer.data : {};
  if (Array.isArray(data.problems)) return data.problems;
  if (answer.status >= 400) {
    const named = (data.invalid_params || [])[0];
    return [{ field: (named && named.name) || data.field || null, message: data.detail || `HTTP ${answer.status}`, severity: "error" }];
  }
  return [];
}

function showProblems(definition, problems) {
  const errors = problems.filter((p) => (p.severity || "error") === "error");
  $("#map-editor").classList.toggle("invalid", errors.length > 0);
  renderStructure(definition, problems);
  setCheck(errors.length ? "bad" : "ok", errors.length
    ? `${errors.length} problem${errors.length > 1 ? "s" : ""}`
    : problems.length ? `valid, ${problems.length} warning${problems.length > 1 ? "s" : ""}` : "valid");
}

async function previewSample() {
  const out = $("#map-preview-out");
  const sample = $("#map-sample").value.trim() || "{}";
  const draft = $("#map-editor").value;
  for (const [text, what] of [[sample, "the sample record"], [draft, "the draft"]]) {
    try {
      JSON.parse(text);
    } catch (error) {
      out.className = "mono small bad";
      out.textContent = `${what} is not JSON: ${error.message}`;
      return;
    }
  }
  // sent as written: the record's and the draft's decimals keep every digit
  const body = `{"direction": ${JSON.stringify($("#map-direction").value)}, "record": ${sample}, "definition": ${draft}}`;
  try {
    const answer = await api("POST", `manage/v1/maps/${enc(state.map.name)}/preview`, { body, exact: true, allow: [400, 404, 422] });
    if (answer.status !== 200) {
      const problem = answer.data || {};
      out.className = "mono small bad";
      out.textContent = `${problem.title || answer.status}: ${problem.detail || ""}`;
      return;
    }
    out.className = "mono small";
    out.textContent = JSON.stringify(answer.data.values, null, 2); // numbers kept exact (rawJSON) print as sent
  } catch (error) {
    out.className = "mono small bad";
    out.textContent = error.message;
  }
}

async function saveMap() {
  const current = state.map;
  const { text, definition, error } = draft();
  if (error) {
    toast(`not JSON: ${error}`, true);
    return;
  }
  const headers = { "If-Match": `"${current.etag || "0"}"`, "x-dualwrite-user": "console" };
  const reason = $("#map-reason").value.trim();
  if (reason) headers["x-dualwrite-reason"] = reason;
  $("#map-save").disabled = true;
  try {
    const answer = await api("PUT", `manage/v1/maps/${enc(current.name)}`, { body: text, headers, allow: [400, 409, 413, 422] });
    if (answer.status === 201) {
      toast(`${current.name}: stored revision ${answer.data.revision}; every instance runs it within ${answer.data.takes_effect_within_seconds} s`);
      await loadMaps(current.name);
      return;
    }
    if (answer.status === 409) {
      toast(`${current.name} was changed meanwhile (latest revision ${answer.data.latest_revision}): reload it first`, true);
    }
    showProblems(definition, problemsOf(answer));
  } catch (failure) {
    toast(`save failed: ${failure.message}`, true);
  } finally {
    const button = $("#map-save");
    if (button) button.disabled = false;
  }
}

// -- error log ---------------------------------------------------------------------------------------
function errorFilters() {
  const form = $("#error-filters");
  return { map: form.map.value, category: form.category.value, status: form.status.value };
}

async function ensureMaps() {
  if (state.maps.length) return;
  const { data } = await api("GET", "manage/v1/maps");
  state.maps = data.maps.map((m) => m.name);
}

async function loadErrors(arg) {
  await ensureMaps();
  const form = $("#error-filters");
  fillSelect(form.map, state.maps);
  fillSelect(form.category, state.meta.categories);
  fillSelect(form.status, state.meta.statuses);
  if (arg !== undefined) {
    const preset = new URLSearchParams(arg);
    form.map.value = preset.get("map") || "";
    form.category.value = preset.get("category") || "";
    form.status.value = preset.get("status") || "open";
  }
  const filters = errorFilters();
  const { data } = await api("GET", "manage/v1/errors" + query({ ...filters, limit: 500 }));
  state.errors = data.errors;
  if (filters.status === "open" && !filters.map && !filters.category) setErrorCount(data.errors.length);
  const rows = data.errors.map((e) => h("tr", { class: "clickable", dataset: { id: e.id, map: e.map, status: e.status },
    onclick: (event) => { if (!event.target.closest("button")) showError(e.id); } },
  timeCell(e.last_at),
  h("td", {}, e.map),
  h("td", { class: "mono" }, e.key),
  h("td", {}, badge(e.category)),
  h("td", {}, e.operation),
  h("td", { class: "num" }, e.attempts),
  h("td", { class: "status" }, badge(e.status)),
  h("td", { class: "wrap small" }, firstLine(e.text)),
  h("td", {}, errorButtons(e))));
  $("#error-table tbody").replaceChildren(...(rows.length ? rows : [emptyRow(9, "no entries match")]));
  $("#bulk-resubmit").textContent = `Resubmit all open${filters.map ? ` of ${filters.map}` : ""}${filters.category ? ` (${filters.category})` : ""}`;
  $("#bulk-discard").textContent = `Discard all open${filters.map ? ` of ${filters.map}` : ""}${filters.category ? ` (${filters.category})` : ""}`;
}

function firstLine(text) {
  const line = String(text || "").split("\n")[0];
  return line.length > 220 ? line.slice(0, 219) + "\u2026" : line;
}

function errorButtons(e) {
  const open = e.status === "open";
  return h("div", { class: "actions" },
    h("button", { type: "button", dataset: { act: "resubmit", id: e.id }, disabled: !open, onclick: () => actOnError(e.id, "resubmit") }, "Resubmit"),
    h("button", { type: "button", class: "danger", dataset: { act: "discard", id: e.id }, disabled: !open, onclick: () => actOnError(e.id, "discard") }, "Discard"));
}

async function showError(id) {
  document.querySelectorAll("#error-table tr.selected").forEach((r) => r.classList.remove("selected"));
  const row = [...document.querySelectorAll("#error-table tbody tr")].find((r) => r.dataset.id === id);
  if (row) row.classList.add("selected");
  const panel = $("#error-detail");
  const { data: e } = await api("GET", `manage/v1/errors/${enc(id)}`);
  let change = e.change;
  try { change = JSON.stringify(parseExact(e.change), null, 2); } catch { /* shown as it is */ }
  const facts = [["id", e.id], ["map", e.map], ["key", e.key], ["source", e.source], ["operation", e.operation],
    ["category", e.category], ["status", e.status], ["attempts", e.attempts], ["first", e.first_at], ["last", e.last_at],
    ["target answered", [e.target_status, e.target_code].filter((x) => x !== null && x !== undefined).join(" ")],
    ["session", e.session_id], ["run", e.run_id]].filter(([, v]) => v !== null && v !== undefined && v !== "");
  panel.replaceChildren(
    h("div", { class: "title" }, h("h3", {}, `${e.map} ${e.key}`), badge(e.status), h("span", { class: "sep" }), errorButtons(e)),
    h("dl", { class: "facts" }, facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { class: k === "id" ? "mono" : "" }, String(v))])),
    h("h3", {}, `Full text (${e.text_length} characters)`),
    h("pre", { id: "error-text" }, e.text),
    h("h3", {}, "The change"),
    h("pre", { id: "error-change" }, change));
  panel.dataset.id = id;
  panel.hidden = false;
}

async function actOnError(id, action) {
  if (action === "discard" && !window.confirm("Discard this change? It will not be applied.")) return;
  try {
    const { data } = await api("POST", `manage/v1/errors/${enc(id)}/${action}`, { headers: { "x-dualwrite-user": "console" } });
    toast(action === "resubmit" ? `resubmitted (message ${data.message_id})` : "discarded");
  } catch (error) {
    if (error.status !== 401) toast(`${action} refused: ${error.message}`, true);
  }
  await loadErrors();
  const panel = $("#error-detail");
  if (!panel.hidden && panel.dataset.id === id) await showError(id);
}

async function bulkOnErrors(action) {
  const { map, category } = errorFilters();
  const what = `every open entry${map ? ` of ${map}` : ""}${category ? ` in ${category}` : ""}`;
  if (!window.confirm(`${action === "resubmit" ? "Resubmit" : "Discard"} ${what}?`)) return;
  try {
    const body = {};
    if (map) body.map = map;
    if (category) body.category = category;
    const { data } = await api("POST", `manage/v1/errors/${action}`, { body, headers: { "x-dualwrite-user": "console" } });
    const done = data.resubmitted ?? data.discarded ?? 0;
    const failed = data.failed || [];
    toast(`${action === "resubmit" ? "resubmitted" : "discarded"} ${done}${failed.length ? `, ${failed.length} failed` : ""}`, failed.length > 0);
  } catch (error) {
    if (error.status !== 401) toast(`bulk ${action} failed: ${error.message}`, true);
  }
  await loadErrors();
}

// -- activity ----------------------------------------------------------------------------------------
function activityFilters() {
  const form = $("#activity-filters");
  return { map: form.map.value, key: form.key.value.trim(), outcome: form.outcome.value };
}

const entryId = (a) => [a.at, a.map, a.key, a.event_id, a.message_id, a.outcome, a.reason].join("|");

function activityRow(a) {
  return h("tr", { dataset: { map: a.map, key: a.key, outcome: a.outcome, op: a.operation } },
    timeCell(a.at),
    h("td", {}, a.map),
    h("td", { class: "mono" }, a.key),
    h("td", {}, a.source === "fno" ? "F&O" : a.source === "dataverse" ? "Dataverse" : a.source),
    h("td", {}, a.operation),
    h("td", {}, badge(a.outcome)),
    h("td", { class: "wrap small", title: a.detail || "" }, a.reason),
    h("td", { class: "num small" }, a.latency_ms === null || a.latency_ms === undefined ? "" : `${Math.round(a.latency_ms)} ms`));
}

async function loadActivity() {
  await ensureMaps();
  const form = $("#activity-filters");
  fillSelect(form.map, state.maps);
  fillSelect(form.outcome, state.meta.outcomes);
  const { data } = await api("GET", "manage/v1/activity" + query({ ...activityFilters(), limit: 200 }));
  state.activity = data.entries;
  renderActivity();
}

function renderActivity() {
  const rows = state.activity.map(activityRow);
  $("#activity-table tbody").replaceChildren(...(rows.length ? rows : [emptyRow(8, "nothing in the last 24 hours")]));
}

async function tailOnce() {
  const newest = state.activity[0];
  const since = newest ? newest.at : new Date(Date.now() - 60 * 1000).toISOString();
  const { data } = await api("GET", "manage/v1/activity" + query({ ...activityFilters(), since, limit: 500 }));
  const known = new Set(state.activity.map(entryId));
  const fresh = data.entries.filter((a) => !known.has(entryId(a)));
  if (!fresh.length) return;
  state.activity = [...fresh, ...state.activity].sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0)).slice(0, 500);
  renderActivity();
}

function setTail(on) {
  clearInterval(state.tail);
  state.tail = null;
  $("#live-tail").checked = on;
  if (on) {
    state.tail = setInterval(() => tailOnce().catch((error) => {
      setTail(false);
      if (error.status !== 401) toast(`live tail stopped: ${error.message}`, true);
    }), TAIL_MS);
  }
}

// -- alerts ------------------------------------------------------------------------------------------
// The rules (GET manage/v1/alerts/rules), what fires now per rule and subject (GET manage/v1/alerts) and the
// latest history entries (GET manage/v1/alerts/history); the engine evaluates every minute, "Evaluate now" at once.
const HISTORY_SHOWN = 50;

function figure(value) {
  if (value === null || value === undefined) return "";
  return Number.isInteger(value) ? String(value) : String(Math.round(value * 100) / 100);
}

// as the engine words it in alerts and their history (core.ops.alerts.rules.AlertRule.condition)
function ruleCondition(rule) {
  const what = rule.metric + (rule.category ? ` (${rule.category})` : "");
  const unit = (state.meta.alert_units || {})[rule.metric];
  return `${what} ${rule.op} ${figure(rule.threshold)}${unit ? ` ${unit}` : ""} over ${figure(rule.window_minutes)} min`;
}

function ruleScope(rule) {
  const scope = rule.scope || {};
  // the engine's own figures: throttling is per side (the direction names the side written to), deployment one
  if (rule.metric === "throttled_per_min") return scope.direction ? SIDES[scope.direction.replace("to_", "")] : "each side";
  if (rule.metric === "deployment_failed") return "the engine";
  return `${scope.map || "every map"}${scope.direction ? ` ${DIRECTIONS[scope.direction] || scope.direction}` : ""}`;
}

function ruleActions(rule) {
  const done = [];
  if (rule.notify) {
    const who = (rule.recipients || []).join(", ");
    done.push(`notify${who ? ` ${who}` : ""} (cool-down ${figure(rule.cooldown_minutes)} min)`);
  }
  if (rule.pause) done.push(`pause the map${rule.resume_when_clear ? ", resume when clear" : ""}`);
  return done.length ? done.join("; ") : "history only";
}

function notificationsText(notifications) {
  return Object.entries(notifications || {}).map(([channel, outcome]) => `${channel}: ${outcome}`).join(", ");
}

async function loadAlerts() {
  const [rules, alerts, history] = await Promise.all([api("GET", "manage/v1/alerts/rules"),
    api("GET", "manage/v1/alerts"), api("GET", "manage/v1/alerts/history" + query({ limit: HISTORY_SHOWN }))]);
  const firing = alerts.data.alerts.filter((a) => a.state === "firing");
  setAlertCount(firing.length);
  $("#alerts-meta").textContent = `${rules.data.rules.length} rules, ${firing.length} firing`;

  $("#alert-firing tbody").replaceChildren(...(firing.length ? firing.map((a) => h("tr",
    { dataset: { rule: a.rule, subject: a.subject } },
    h("td", {}, a.rule),
    h("td", { class: "subject" }, a.subject === "*" ? "the engine" : a.subject),
    h("td", { class: "num value" }, figure(a.value)),
    h("td", { class: "num threshold" }, figure(a.threshold)),
    h("td", { class: "small" }, a.condition),
    h("td", { class: "small", title: a.since }, ago(a.since)),
    h("td", { class: "small", title: notificationsText(a.notifications) }, a.last_notified_at
      ? `${when(a.last_notified_at)} (${notificationsText(a.notifications) || "none"})` : h("span", { class: "muted" }, "not yet")),
    h("td", {}, a.paused_map ? badge("paused", "paused") : ""))) : [emptyRow(8, "nothing fires")]));

  const rows = rules.data.rules.map((rule) => {
    const on = firing.filter((a) => a.rule === rule.name).map((a) => a.subject);
    const now = on.length ? "firing" : rule.enabled ? "ok" : "disabled";
    return h("tr", { dataset: { rule: rule.name, state: now, enabled: String(rule.enabled) } },
      h("td", {}, h("strong", {}, rule.name), rule.description ? h("div", { class: "muted small" }, rule.description) : ""),
      h("td", { class: "condition small" }, ruleCondition(rule)),
      h("td", { class: "scope small" }, ruleScope(rule)),
      h("td", { class: "actions-text small" }, ruleActions(rule)),
      h("td", { class: "enabled" }, rule.enabled ? "yes" : "no"),
      h("td", { class: "state" }, badge(now), on.length ? h("div", { class: "small" }, on.join(", ")) : ""),
      h("td", {}, h("button", { type: "button", dataset: { toggle: rule.name },
        onclick: () => toggleRule(rule) }, rule.enabled ? "Disable" : "Enable")));
  });
  $("#alert-rules tbody").replaceChildren(...(rows.length ? rows : [emptyRow(7, "no rules")]));

  const entries = history.data.entries.map((e) => h("tr", { dataset: { rule: e.rule, subject: e.subject, kind: e.kind } },
    timeCell(e.at),
    h("td", {}, e.rule),
    h("td", {}, e.subject),
    h("td", {}, badge(e.kind)),
    h("td", { class: "num" }, figure(e.value)),
    h("td", { class: "num" }, figure(e.threshold)),
    h("td", { class: "small" }, e.condition),
    h("td", { class: "small" }, (e.actions || []).join(", ")),
    h("td", { class: "small wrap" }, notificationsText(e.notifications))));
  $("#alert-history tbody").replaceChildren(...(entries.length ? entries : [emptyRow(9, "no alert has fired yet")]));
}

async function evaluateAlerts() {
  const button = $("#alerts-evaluate");
  button.disabled = true;
  try {
    const { data } = await api("POST", "manage/v1/alerts/evaluate", { headers: { "x-dualwrite-user": "console" } });
    toast(`evaluated ${data.rules} rules: ${data.fired.length} fired, ${data.resolved.length} resolved`);
  } catch (error) {
    if (error.status !== 401) toast(`evaluate failed: ${error.message}`, true);
  } finally {
    button.disabled = false;
  }
  if (state.view === "alerts") await refresh();
}

async function toggleRule(rule) {
  try {
    // the rule as stored now, put back with only `enabled` changed; If-Match: a change made meanwhile is not undone
    const { data: stored, headers } = await api("GET", `manage/v1/alerts/rules/${enc(rule.name)}`);
    const sent = { "x-dualwrite-user": "console" };
    if (headers.get("ETag")) sent["If-Match"] = headers.get("ETag");
    await api("PUT", `manage/v1/alerts/rules/${enc(rule.name)}`, { body: { ...stored, enabled: !stored.enabled }, headers: sent });
    toast(`${rule.name}: ${stored.enabled ? "disabled" : "enabled"}`);
  } catch (error) {
    if (error.status !== 401) toast(`${rule.name}: ${error.message}`, true);
  }
  if (state.view === "alerts") await refresh();
}

// -- runs --------------------------------------------------------------------------------------------
function mapProgress(m) {
  if (m.status === "done") return progressBar(1, { done: true });
  if (m.status === "waiting" || m.status === "cancelled") return progressBar(0);
  if (m.last_page && m.pages_read) return progressBar(m.pages_done / m.pages_read);
  return progressBar(0, { indeterminate: true });
}

async function loadRuns() {
  const { data } = await api("GET", "manage/v1/sync/runs" + query({ limit: 20 }));
  const cards = data.runs.map((run) => {
    const totals = run.totals || {};
    const done = run.maps.filter((m) => m.status === "done").length;
    return h("div", { class: "panel run", dataset: { run: run.id, status: run.status } },
      h("header", {}, h("strong", {}, run.kind), badge(run.status), run.dry_run ? badge("skipped", "dry run") : "",
        h("span", { class: "mono small" }, run.id), h("span", { class: "muted small", title: run.created_at }, `started ${ago(run.created_at)}`),
        run.requested_by ? h("span", { class: "muted small" }, `by ${run.requested_by}`) : "",
        run.retry_of ? h("span", { class: "muted small" }, `retry of ${run.retry_of}`) : ""),
      run.message ? h("p", { class: "muted" }, run.message) : "",
      h("div", { class: "totals" }, `${done} of ${run.maps.length} maps done \u00b7 read ${totals.read || 0} \u00b7 written ${totals.written || 0} `
        + `\u00b7 matched ${totals.matched || 0} \u00b7 failed ${totals.failed || 0} \u00b7 differing ${totals.differs || 0}`),
      progressBar(run.maps.length ? done / run.maps.length : 0, { done: run.status === "completed" }),
      h("table", { class: "grid", style: "margin-top: 0.8rem" },
        h("thead", {}, h("tr", {}, ["map", "source", "status", "progress", "pages", "read", "written", "matched", "failed", "rate", "ETA"]
          .map((n, i) => h("th", { class: i >= 4 ? "num" : "" }, n)))),
        h("tbody", {}, run.maps.map((m) => h("tr", { dataset: { map: m.map } },
          h("td", {}, m.map), h("td", {}, m.source === "fno" ? "F&O" : "Dataverse"), h("td", {}, badge(m.status)),
          h("td", {}, mapProgress(m)),
          h("td", { class: "num" }, `${m.pages_done}/${m.pages_read}${m.last_page ? "" : "+"}`),
          h("td", { class: "num" }, m.read), h("td", { class: "num" }, m.written), h("td", { class: "num" }, m.matched),
          h("td", { class: "num" }, m.failed), h("td", { class: "num" }, m.rows_per_s ? `${m.rows_per_s}/s` : ""),
          h("td", { class: "num" }, m.eta_s ? `${Math.round(m.eta_s)} s` : ""))))));
  });
  $("#run-list").replaceChildren(...(cards.length ? cards : [h("p", { class: "muted" }, "No runs yet.")]));
}

// -- routing -----------------------------------------------------------------------------------------
const VIEWS = { dashboard: loadDashboard, maps: loadMaps, errors: loadErrors, activity: loadActivity, alerts: loadAlerts,
  runs: loadRuns };

function route() {
  const hash = window.location.hash.replace(/^#/, "");
  const [head, query] = hash.split("?");
  const [name, ...rest] = head.split("/");
  const view = VIEWS[name] ? name : "dashboard";
  let arg = rest.length ? decodeURIComponent(rest.join("/")) : undefined;
  if (view === "errors") arg = query !== undefined ? query : state.view === "errors" ? undefined : "";
  return { view, arg };
}

async function show() {
  const { view, arg } = route();
  const left = state.view !== view;
  if (left && state.view === "activity") setTail(false);
  state.view = view;
  document.querySelectorAll(".view").forEach((el) => { el.hidden = el.id !== `view-${view}`; });
  document.querySelectorAll(".tabs a").forEach((a) => a.classList.toggle("active", a.dataset.view === view));
  clearInterval(state.timer);
  state.timer = null;
  await refresh(arg);
  if (REFRESH_MS[view]) {
    state.timer = setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS[view]);
  }
}

async function refresh(arg) {
  const view = state.view;
  try {
    await VIEWS[view](arg);
    if (state.view === view) document.body.dataset.loaded = view; // what tests wait for
  } catch (error) {
    if (error.status !== 401) toast(`${view}: ${error.message}`, true);
  }
}

async function start() {
  takeKeyFromAddress();
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("#key-input").value.trim();
    if (!value) return;
    sessionStorage.setItem(KEY_STORE, value);
    $("#key-input").value = "";
    $("#key-dialog").close();
    show();
  });
  $("#forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    askForKey("Key forgotten. Enter the admin key to go on.");
  });
  $("#error-filters").addEventListener("submit", (event) => { event.preventDefault(); loadErrors().catch((e) => toast(e.message, true)); });
  $("#activity-filters").addEventListener("submit", (event) => { event.preventDefault(); loadActivity().catch((e) => toast(e.message, true)); });
  $("#bulk-resubmit").addEventListener("click", () => bulkOnErrors("resubmit"));
  $("#bulk-discard").addEventListener("click", () => bulkOnErrors("discard"));
  $("#live-tail").addEventListener("change", (event) => setTail(event.target.checked));
  $("#alerts-evaluate").addEventListener("click", evaluateAlerts);
  const meta = await fetch(BASE + "meta.json", { cache: "no-store" });
  state.meta = await meta.json();
  loadHealth();
  setInterval(loadHealth, 15000);
  if (!sessionStorage.getItem(KEY_STORE)) askForKey();
  // only now: an address changed while meta.json loaded is shown once, here (it was shown twice at once, the second
  // drawing replacing elements a user or a test already held)
  window.addEventListener("hashchange", show);
  await show();
}

start();
