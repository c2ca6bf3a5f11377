// Vigil operator page: active alerts by severity, model modes, acknowledge and silence.
// Plain JavaScript, no build step, no CDN. Reads the alerts HTTP API of the contract and polls
// it every POLL_MS; every string from the API is set as text, never parsed as HTML.
"use strict";

const POLL_MS = 2000;
const TIMEOUT_MS = 5000;
const SEVERITIES = ["critical", "high", "medium", "low"];
const ACTIVE = ["firing", "acknowledged", "silenced"];
const DURATIONS = [["1h", 3600], ["4h", 4 * 3600], ["24h", 86400], ["7d", 7 * 86400]];
const MAX_NUMBERS = 8; // key numbers shown on a card; the rest are in the evidence
const MAX_MODELS = 50; // model modes polled per cycle
const MAX_HISTORY = 10; // recent findings shown with an alert's evidence

const state = {
  alerts: new Map(),      // alert_id -> alert (active ones)
  modes: new Map(),       // model_id -> mode JSON
  silences: new Map(),    // silence id -> silence (every one the API lists)
  models: new Set(),      // every model seen this session (their mode may outlive their alerts)
  signatures: new Map(),  // alert_id -> JSON of what its card shows (re-render on change only)
  first: true,
  lastOk: null,
};

const $ = (id) => document.getElementById(id);

// h("tag", {attr: value, class: "x", dataset: {...}}, ...children): text children only.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// --- API -------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${detail}`);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), TIMEOUT_MS);
  try {
    const res = await fetch(path, {
      ...options,
      signal: ctrl.signal,
      headers: {"Accept": "application/json", ...(options.body ? {"Content-Type": "application/json"} : {}),
                ...(apiKey() ? {"Authorization": `Bearer ${apiKey()}`} : {})},
    });
    if (res.status === 401) askForKey();
    const text = await res.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (e) { body = text; }
    if (!res.ok) throw new ApiError(res.status, errorText(body) || res.statusText);
    return body;
  } finally {
    clearTimeout(timer);
  }
}

// Writes need a bearer key when the service has VIGIL_API_KEYS: asked for on the first 401,
// kept for this browser tab only.
function apiKey() {
  return sessionStorage.getItem("vigil.api_key") || "";
}

function askForKey() {
  const box = $("api-key-box");
  if (box.hidden) {
    box.hidden = false;
    $("api-key").focus();
  }
}

function errorText(body) {
  if (!body) return "";
  if (typeof body === "string") return body.slice(0, 300);
  const d = body.detail !== undefined ? body.detail : body;
  if (typeof d === "string") return d;
  if (d && Array.isArray(d.errors)) return d.errors.map((e) => `${e.field}: ${e.reason}`).join("; ");
  if (Array.isArray(d)) return d.map((e) => `${(e.loc || []).join(".")}: ${e.msg}`).join("; ");
  return JSON.stringify(d).slice(0, 300);
}

// A list endpoint may answer a bare array or {"alerts": [...]}/{"items": [...]}.
function listOf(body, key) {
  if (Array.isArray(body)) return body;
  if (body && Array.isArray(body[key])) return body[key];
  if (body && Array.isArray(body.items)) return body.items;
  return [];
}

async function fetchAlerts() {
  const lists = await Promise.all(ACTIVE.map((s) => api(`v1/alerts?status=${s}`)));
  const out = new Map();
  for (const body of lists) {
    for (const a of listOf(body, "alerts")) {
      if (ACTIVE.includes(a.status)) out.set(a.alert_id, a);
    }
  }
  return out;
}

async function fetchModes(models) {
  const ids = [...models].slice(0, MAX_MODELS);
  const modes = await Promise.all(ids.map((m) =>
    api(`v1/models/${encodeURIComponent(m)}/mode`).catch((e) => (e instanceof ApiError ? null : Promise.reject(e)))));
  const out = new Map();
  ids.forEach((m, i) => { if (modes[i]) out.set(m, modes[i]); });
  return out;
}

// Models switched to human review by an action: their mode outlives their alerts.
async function fetchReviewModels() {
  const actions = listOf(await api("v1/actions?limit=200"), "actions");
  return actions.filter((x) => x.type === "enable_human_review").map((x) => x.model_id);
}

async function fetchSilences() {
  return listOf(await api("v1/silences"), "silences");
}

function silenceActive(s) {
  const st = s.status && (typeof s.status === "string" ? s.status : s.status.state);
  if (st) return st === "active" || st === "pending";
  return !s.endsAt || Date.parse(s.endsAt) > Date.now();
}

// --- formatting -------------------------------------------------------------------------

function fmtNumber(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return v.toLocaleString("en-US");
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  return String(Number(v.toPrecision(3)));
}

function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z").replace(/Z$/, " UTC");
}

function ago(iso) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "";
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

function timeEl(iso) {
  return h("time", {datetime: iso || "", title: ago(iso)}, fmtTime(iso));
}

function ackInfo(a) {
  const ack = a.ack || a.acknowledgement || a.acknowledged || {};
  const by = a.acknowledged_by || a.acked_by || ack.by;
  const at = a.acknowledged_at || a.acked_at || ack.at;
  const comment = a.ack_comment || ack.comment;
  return by ? {by, at, comment} : null;
}

// --- rendering --------------------------------------------------------------------------

function cardSignature(a) {
  return JSON.stringify([a.severity, a.status, a.title, a.summary, a.occurrences, a.last_seen,
                         a.latest, a.owners, ackInfo(a), a.silenced_by || null, a.inhibited_by || null]);
}

function titleOf(a) {
  return (a.title || `${a.kind} on ${a.model_id}`).replace(/^\[[A-Z]+\]\s*/, "");
}

function renderCard(a) {
  const title = titleOf(a);
  const latest = a.latest || {};
  const metrics = Object.entries(latest.metrics || {});
  const ack = ackInfo(a);
  const tid = `title-${a.alert_id}`;
  const select = h("select", {class: "duration", dataset: {role: "duration"}, "aria-label": `Silence duration for ${title}`},
    DURATIONS.map(([label, secs]) => h("option", {value: secs}, label)));
  const facts = [
    ["Model", a.model_id], ["Kind", a.kind], ["Feature", a.feature || latest.feature || latest.vendor || "—"],
    ["Occurrences", fmtNumber(a.occurrences)], ["First seen", timeEl(a.first_seen)],
    ["Last seen", timeEl(a.last_seen)], ["Owners", (a.owners || []).join(", ") || "—"],
  ];
  if (latest.window_start) {
    facts.push(["Window", h("span", {}, timeEl(latest.window_start), " – ", timeEl(latest.window_end))]);
  }
  if (latest.n !== undefined) facts.push(["Sample size", fmtNumber(latest.n)]);
  if ((a.silenced_by || []).length) facts.push(["Silenced by", a.silenced_by.map((id) => {
    const sl = state.silences.get(id);
    return sl ? `${sl.createdBy || "?"} until ${fmtTime(sl.endsAt)}` : `silence ${id}`;
  }).join(", ")]);
  if ((a.inhibited_by || []).length) facts.push(["Inhibited by", a.inhibited_by.map((id) =>
    state.alerts.has(id) ? `${titleOf(state.alerts.get(id))} (${state.alerts.get(id).severity})` : id).join(", ")]);
  if (ack) {
    facts.push(["Acknowledged", `by ${ack.by}${ack.at ? " at " + fmtTime(ack.at) : ""}` +
                                (ack.comment ? ` — ${ack.comment}` : "")]);
  }
  const evidence = latest.evidence || {};
  return h("li", {class: `alert sev-${a.severity} status-${a.status}`, id: `alert-${a.alert_id}`,
                  dataset: {alertId: a.alert_id, severity: a.severity, status: a.status, fingerprint: a.fingerprint,
                            model: a.model_id}},
    h("article", {"aria-labelledby": tid},
      h("div", {class: "alert-head"},
        h("span", {class: `badge sev-${a.severity}`}, a.severity),
        h("h4", {id: tid, class: "alert-title"}, title),
        h("span", {class: `status status-${a.status}`, dataset: {role: "status"}}, a.status)),
      a.summary ? h("p", {class: "summary-text"}, a.summary) : null,
      h("dl", {class: "facts"}, facts.map(([k, v]) => h("div", {class: "fact"},
        h("dt", {}, k), h("dd", {dataset: {fact: k.toLowerCase().replace(/ /g, "-")}}, v)))),
      metrics.length ? h("dl", {class: "numbers", "aria-label": "Key numbers of the latest finding"},
        metrics.slice(0, MAX_NUMBERS).map(([k, v]) => h("div", {class: "number", dataset: {metric: k}},
          h("dt", {}, k), h("dd", {}, fmtNumber(v))))) : null,
      h("details", {class: "evidence", dataset: {role: "evidence"},
                    ontoggle: (e) => { if (e.target.open) loadHistory(e.target, a); }},
        h("summary", {dataset: {role: "summary"}}, "Evidence"),
        h("div", {class: "history", "aria-live": "polite"}),
        h("pre", {}, JSON.stringify({metrics: latest.metrics, evidence,
                                     recommended_actions: latest.recommended_actions, finding_id: latest.finding_id,
                                     findings: a.findings, actions: a.actions}, null, 2))),
      h("div", {class: "buttons"},
        h("button", {type: "button", class: "ack", dataset: {role: "ack"}, "aria-label": `Acknowledge ${title}`,
                     disabled: a.status === "acknowledged", onclick: () => acknowledge(a)}, "Acknowledge"),
        h("label", {class: "silence-for"}, "for ", select),
        h("button", {type: "button", class: "silence", dataset: {role: "silence"}, "aria-label": `Silence ${title}`,
                     disabled: a.status === "silenced", onclick: () => silence(a, Number(select.value))}, "Silence"))));
}

function renderAlerts() {
  const root = $("severities");
  const bySev = new Map(SEVERITIES.map((s) => [s, []]));
  for (const a of state.alerts.values()) (bySev.get(a.severity) || bySev.get("low")).push(a);
  for (const list of bySev.values()) list.sort((x, y) => String(y.last_seen).localeCompare(String(x.last_seen)));
  const total = state.alerts.size;
  $("empty").hidden = total > 0;
  $("total").textContent = total ? `(${total})` : "";
  const summary = $("summary");
  summary.replaceChildren(...SEVERITIES.map((s) => h("li", {class: `count sev-${s}`, dataset: {severity: s}},
    h("span", {class: "n"}, bySev.get(s).length), ` ${s}`)));
  for (const sev of SEVERITIES) {
    const alerts = bySev.get(sev);
    let section = root.querySelector(`section[data-severity="${sev}"]`);
    if (!section) {
      section = h("section", {class: `severity sev-${sev}`, dataset: {severity: sev}, "aria-labelledby": `sev-${sev}`},
        h("h3", {id: `sev-${sev}`}, sev[0].toUpperCase() + sev.slice(1)),
        h("ul", {class: "alert-list"}));
      root.append(section);
    }
    section.hidden = alerts.length === 0;
    const ul = section.querySelector("ul");
    const wanted = alerts.map((a) => {
      const sig = cardSignature(a);
      let li = document.getElementById(`alert-${a.alert_id}`);
      if (!li || li.parentNode !== ul || state.signatures.get(a.alert_id) !== sig) {
        const fresh = renderCard(a);
        if (li) keepUiState(li, fresh);
        li = fresh;
        state.signatures.set(a.alert_id, sig);
      }
      return li;
    });
    const focused = document.activeElement;
    reconcile(ul, wanted);
    if (focused && !document.body.contains(focused)) restoreFocus();
  }
  for (const id of [...state.signatures.keys()]) if (!state.alerts.has(id)) state.signatures.delete(id);
}

// The alert's recent findings (GET /v1/findings), newest window first: is it getting worse?
async function loadHistory(details, a) {
  const box = details.querySelector(".history");
  if (box.dataset.loaded === a.last_seen) return;
  const same = (x, y) => (x || null) === (y || null);
  try {
    const q = `model_id=${encodeURIComponent(a.model_id)}&kind=${encodeURIComponent(a.kind)}&limit=200`;
    const found = listOf(await api(`v1/findings?${q}`), "findings")
      .filter((f) => same(f.feature, a.feature) && same(f.vendor, a.vendor)).slice(0, MAX_HISTORY);
    box.replaceChildren(h("table", {class: "findings"},
      h("caption", {}, `Recent findings (${found.length})`),
      h("thead", {}, h("tr", {}, ["Window end", "Severity", "n", "Numbers"].map((c) => h("th", {scope: "col"}, c)))),
      h("tbody", {}, found.map((f) => h("tr", {dataset: {findingId: f.finding_id}},
        h("td", {}, timeEl(f.window_end)),
        h("td", {class: `sev-${f.severity}`}, h("span", {class: "badge"}, f.severity)),
        h("td", {}, fmtNumber(f.n)),
        h("td", {}, Object.entries(f.metrics || {}).slice(0, 4).map(([k, v]) => `${k} ${fmtNumber(v)}`).join(", ")),
      )))));
    box.dataset.loaded = a.last_seen;
  } catch (e) {
    box.textContent = `Recent findings unavailable — ${e.message}`;
  }
}

// A re-rendered card keeps what the operator did to the old one: open evidence, duration, focus.
function keepUiState(old, fresh) {
  fresh.querySelector(".history").replaceChildren(...old.querySelector(".history").childNodes);
  fresh.querySelector("details").open = old.querySelector("details").open;
  fresh.querySelector("select").value = old.querySelector("select").value;
  const f = document.activeElement;
  if (f && old.contains(f)) fresh.dataset.refocus = f.dataset.role || "";
}

function restoreFocus() {
  const li = document.querySelector("[data-refocus]");
  if (!li) return;
  const role = li.dataset.refocus;
  delete li.dataset.refocus;
  const same = role && li.querySelector(`[data-role="${role}"]`);
  const target = same && !same.disabled ? same : li.querySelector("button:not(:disabled)") || li.querySelector("summary");
  target.focus();
}

// Make `parent`'s children exactly `nodes`, moving only what is out of place: a node that is
// left alone keeps its focus and what the operator typed into it.
function reconcile(parent, nodes) {
  nodes.forEach((node, i) => {
    const at = parent.children[i];
    if (at !== node) parent.insertBefore(node, at || null);
  });
  while (parent.children.length > nodes.length) parent.lastElementChild.remove();
}

// The node for `key`, rebuilt only when what it shows (`data`) changed.
const built = new Map(); // "kind:key" -> {sig, node}
function keyed(key, data, build) {
  const sig = JSON.stringify(data);
  const hit = built.get(key);
  if (hit && hit.sig === sig) return hit.node;
  const node = build();
  built.set(key, {sig, node});
  return node;
}

function forget(prefix, keep) {
  for (const key of [...built.keys()]) {
    if (key.startsWith(prefix) && !keep.has(key.slice(prefix.length))) built.delete(key);
  }
}

function renderModes() {
  const review = [...state.modes.entries()].filter(([, m]) => m.mode === "human_review");
  forget("mode:", new Set(review.map(([model]) => model)));
  $("modes").hidden = review.length === 0;
  reconcile($("mode-list"), review.map(([model, m]) => keyed(`mode:${model}`, m, () => {
    const by = m.by || m.set_by || m.changed_by;
    const why = h("input", {class: "why", maxlength: 2000, "aria-label": `Why ${model} can return to automated mode`,
                            placeholder: "why it can return to automated"});
    return h("li", {class: "mode-banner", dataset: {model}},
      h("p", {},
        h("strong", {}, model), " is under human review",
        m.since ? [" since ", timeEl(m.since)] : null,
        by ? h("span", {class: "by"}, ` (set by ${by})`) : null,
        m.reason ? h("span", {class: "reason"}, ` — ${m.reason}`) : null),
      h("div", {class: "buttons"}, why,
        h("button", {type: "button", class: "clear-mode", "aria-label": `Return ${model} to automated mode`,
                     onclick: () => clearMode(model, why)}, "Return to automated")));
  })));
}

function renderSilences(silences) {
  $("no-silences").hidden = silences.length > 0;
  $("silence-table").hidden = silences.length === 0;
  forget("silence:", new Set(silences.map((s) => s.id || s.silence_id)));
  reconcile($("silence-rows"), silences.map((s) => keyed(`silence:${s.id || s.silence_id}`, s, () => {
    const id = s.id || s.silence_id;
    const matchers = (s.matchers || []).map((m) =>
      `${m.name}${m.isEqual === false ? "!" : ""}${m.isRegex ? "=~" : "="}"${m.value}"`).join(", ");
    return h("tr", {dataset: {silenceId: id}},
      h("td", {}, h("code", {}, matchers)), h("td", {}, s.createdBy || "—"), h("td", {}, s.comment || ""),
      h("td", {}, timeEl(s.endsAt)),
      h("td", {}, h("button", {type: "button", class: "expire", "aria-label": `Expire silence ${matchers}`,
                               onclick: () => expireSilence(id)}, "Expire")));
  })));
}

function announce(prev, next) {
  if (state.first) return;
  const fresh = [...next.values()].filter((a) => !prev.has(a.alert_id));
  if (fresh.length) {
    $("announcer").textContent = fresh.length === 1
      ? `New ${fresh[0].severity} alert: ${titleOf(fresh[0])}`
      : `${fresh.length} new alerts`;
  }
}

function setConnection(ok, detail) {
  const el = $("connection");
  document.body.dataset.connection = ok ? "live" : "lost";
  const when = state.lastOk ? new Date(state.lastOk).toISOString().slice(11, 19) + " UTC" : "never";
  el.textContent = ok ? `Live — updated ${when}`
    : `Connection lost — retrying (last update ${when})${detail ? ": " + detail : ""}`;
}

function showMessage(text, kind = "error") {
  const el = $("message");
  el.textContent = text;
  el.dataset.kind = kind;
  el.hidden = !text;
}

// --- operator actions -------------------------------------------------------------------

function operator() {
  const input = $("operator-name");
  const name = input.value.trim();
  if (!name) {
    showMessage("Enter your name in Operator first: it is recorded with the action.");
    input.focus();
    return null;
  }
  localStorage.setItem("vigil.operator", name);
  return name;
}

async function acknowledge(a) {
  const by = operator();
  if (!by) return;
  try {
    await api(`v1/alerts/${encodeURIComponent(a.alert_id)}/ack`, {
      method: "POST", body: JSON.stringify({by, comment: "acknowledged on the operator page"})});
    showMessage(`Acknowledged: ${titleOf(a)}`, "ok");
  } catch (e) {
    showMessage(`Acknowledge failed — ${e.message}`);
  }
  await refresh();
}

async function silence(a, seconds) {
  const createdBy = operator();
  if (!createdBy) return;
  const now = new Date();
  const body = {
    matchers: [{name: "fingerprint", value: a.fingerprint, isRegex: false, isEqual: true}],
    startsAt: now.toISOString(), endsAt: new Date(now.getTime() + seconds * 1000).toISOString(),
    createdBy, comment: `silenced on the operator page: ${titleOf(a)}`,
  };
  try {
    await api("v1/silences", {method: "POST", body: JSON.stringify(body)});
    showMessage(`Silenced for ${seconds / 3600} h: ${titleOf(a)}`, "ok");
  } catch (e) {
    showMessage(`Silence failed — ${e.message}`);
  }
  await refresh();
}

async function clearMode(model, whyInput) {
  const by = operator();
  if (!by) return;
  const reason = whyInput.value.trim();
  if (!reason) {
    showMessage(`Say why ${model} can return to automated mode: it is recorded.`);
    whyInput.focus();
    return;
  }
  try {
    await api(`v1/models/${encodeURIComponent(model)}/mode`, {
      method: "POST", body: JSON.stringify({mode: "automated", by, reason})});
    showMessage(`${model} is back in automated mode`, "ok");
  } catch (e) {
    showMessage(`Changing the mode failed — ${e.message}`);
  }
  await refresh();
}

async function expireSilence(id) {
  try {
    await api(`v1/silences/${encodeURIComponent(id)}`, {method: "DELETE"});
    showMessage("Silence expired", "ok");
  } catch (e) {
    showMessage(`Expire failed — ${e.message}`);
  }
  await refresh();
}

// --- the loop ---------------------------------------------------------------------------

let running = null;

async function refresh() {
  if (running) return running;
  running = (async () => {
    try {
      const alerts = await fetchAlerts();
      for (const a of alerts.values()) state.models.add(a.model_id);
      for (const m of await fetchReviewModels().catch(() => [])) state.models.add(m);
      const [modes, silences] = await Promise.all([fetchModes(state.models), fetchSilences().catch(() => null)]);
      announce(state.alerts, alerts);
      state.alerts = alerts;
      state.modes = modes;
      if (silences) state.silences = new Map(silences.map((x) => [x.id || x.silence_id, x]));
      state.lastOk = Date.now();
      state.first = false;
      renderAlerts();
      renderModes();
      if (silences) renderSilences(silences.filter(silenceActive));
      setConnection(true);
    } catch (e) {
      setConnection(false, e.name === "AbortError" ? "timed out" : e.message);
    } finally {
      running = null;
    }
  })();
  return running;
}

async function loop() {
  await refresh();
  setTimeout(loop, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  const input = $("operator-name");
  input.value = localStorage.getItem("vigil.operator") || "";
  $("operator").addEventListener("submit", (e) => { e.preventDefault(); operator(); });
  $("api-key").addEventListener("change", (e) => {
    sessionStorage.setItem("vigil.api_key", e.target.value.trim());
    showMessage("API key set for this tab; try again.", "ok");
  });
  loop();
});
