// aiwarden SOC console: live alerts over Server-Sent Events, details and timelines from the worker's
// read-only ClickHouse endpoints. Plain JavaScript, no build step.
"use strict";

const SEVERITY_RANK = { info: 0, low: 1, medium: 2, high: 3, critical: 4 };
const MAX_ALERTS = 500;
const alerts = new Map(); // alert_id -> latest version seen
let source = null;
let selected = null;

const $ = (selector) => document.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function time(ms) {
  if (!ms) return "";
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z").slice(5);
}

function filters() {
  const form = new FormData($("#filters"));
  const params = new URLSearchParams();
  if (form.get("min_severity") !== "info") params.set("min_severity", form.get("min_severity"));
  if (form.get("detector").trim()) params.set("detector", form.get("detector").trim());
  if (form.get("entity").trim()) params.set("entity", form.get("entity").trim());
  return params;
}

function setStatus(online, text) {
  const status = $("#status");
  status.className = "status " + (online ? "online" : "offline");
  status.textContent = text;
}

function connect() {
  if (source) source.close();
  alerts.clear();
  renderAlerts();
  const params = filters();
  params.set("backlog", "200");
  // EventSource resends the last id on its own reconnects (Last-Event-ID): nothing is missed.
  source = new EventSource("/alerts/stream?" + params.toString());
  source.addEventListener("open", () => setStatus(true, "live"));
  source.addEventListener("error", () => setStatus(false, "reconnecting…"));
  source.addEventListener("overflow", () => { setStatus(false, "catching up…"); });
  source.addEventListener("alert", (message) => {
    const alert = JSON.parse(message.data);
    const known = alerts.get(alert.alert_id);
    if (known && known.version > alert.version) return;
    alert._fresh = true;
    alerts.set(alert.alert_id, alert);
    renderAlerts();
    if (selected === alert.alert_id) showAlert(alert.alert_id);
  });
}

// ATLAS / ATT&CK / OWASP LLM Top 10 ids -> {name, url} (MITRE's data, served by /techniques), and the OWASP
// categories of each detector.
let catalog = { links: {}, owasp: {} };
fetch("/techniques").then((r) => r.json()).then((body) => { catalog = body; renderAlerts(); }).catch(() => {});

function techniqueTag(id, extra = "") {
  const known = catalog.links[id];
  if (!known) return el("span", { class: "tech" + extra }, id);
  return el("a", { class: "tech" + extra, href: known.url, target: "_blank", rel: "noopener noreferrer",
    title: known.name }, id);
}

function techniques(alert) {
  const owasp = [...new Set(alert.detectors.flatMap((d) => catalog.owasp[d] || []))];
  return [...alert.atlas_techniques.map((t) => techniqueTag(t)), ...owasp.map((c) => techniqueTag(c, " owasp")),
    ...alert.attack_techniques.map((t) => techniqueTag(t))];
}

function renderAlerts() {
  const rows = [...alerts.values()].sort((a, b) => b.last_seen - a.last_seen || b.risk_score - a.risk_score);
  for (const stale of rows.slice(MAX_ALERTS)) alerts.delete(stale.alert_id);
  const body = $("#alerts tbody");
  body.replaceChildren(...rows.slice(0, MAX_ALERTS).map((alert) => {
    const row = el("tr", {
      class: "alert" + (alert._fresh ? " fresh" : "") + (alert.alert_id === selected ? " selected" : ""),
      "data-alert-id": alert.alert_id, "data-severity": alert.severity,
      onclick: () => showAlert(alert.alert_id),
    },
      el("td", {}, el("span", { class: "sev " + alert.severity }, alert.severity)),
      el("td", {}, Math.round(alert.risk_score)),
      el("td", { class: "muted" }, time(alert.last_seen)),
      el("td", { class: "entity" }, alert.primary_entity),
      el("td", { class: "summary" }, alert.summary),
      el("td", {}, techniques(alert)));
    alert._fresh = false;
    return row;
  }));
  $("#empty").hidden = rows.length > 0;
}

async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function entityLink(entity) {
  return el("a", { class: "entity", onclick: () => showTimeline(entity) }, entity);
}

async function showAlert(alertId, attempt = 0) {
  selected = alertId;
  for (const row of document.querySelectorAll("tr.alert")) {
    row.classList.toggle("selected", row.dataset.alertId === alertId);
  }
  const live = alerts.get(alertId);
  $("#detail").hidden = false;
  $("#detail").dataset.alertId = alertId;
  if (live) renderDetail(live);
  let stored = null;
  try {
    stored = await getJSON("/alerts/" + encodeURIComponent(alertId));
  } catch (error) {
    $("#evidence-note").textContent = "Evidence not in ClickHouse yet (" + error.message + "); retrying…";
  }
  if (selected !== alertId) return;
  if (stored) renderDetail(stored, stored.findings, stored.evidence);
  const missing = !stored || stored.evidence.length < stored.evidence_event_ids.length;
  if (missing && attempt < 15) setTimeout(() => selected === alertId && showAlert(alertId, attempt + 1), 2000);
  showTimeline((stored || live).primary_entity);
}

function renderDetail(alert, findings = null, evidence = null) {
  $("#detail-title").replaceChildren(el("span", { class: "sev " + alert.severity }, alert.severity), " ", alert.summary);
  const fields = [
    ["alert", alert.alert_id], ["risk", Math.round(alert.risk_score)], ["status", alert.status],
    ["version", alert.version], ["first seen", time(alert.first_seen)], ["last seen", time(alert.last_seen)],
    ["detectors", alert.detectors.join(", ")], ["maturity", alert.maturity], ["tactics", alert.tactics.join(", ")],
    ["techniques", techniques(alert)], ["entities", alert.entities.map((e) => [entityLink(e), " "])],
  ];
  $("#detail-fields").replaceChildren(...fields.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value)]));
  if (findings) {
    $("#findings").replaceChildren(...findings.map((f) => el("li", { class: "finding" },
      el("span", { class: "sev " + f.severity }, f.severity), " ", el("b", {}, f.detector), " ", f.summary)));
  }
  if (evidence) {
    $("#evidence tbody").replaceChildren(...evidence.map((e) => el("tr", { class: "evidence", "data-event-id": e.event_id },
      el("td", { class: "muted" }, time(e.time_ms)), el("td", {}, e.source), el("td", {}, e.activity),
      el("td", { class: "entity" }, describe(e)))));
    const missing = alert.evidence_event_ids.length - evidence.length;
    $("#evidence-note").textContent = missing > 0 ? missing + " evidence event(s) not in ClickHouse yet…" : "";
  }
}

function describe(event) {
  const parts = [];
  if (event.process_cmdline) parts.push(event.process_cmdline);
  else if (event.process_name) parts.push(event.process_name);
  if (event.api_operation) parts.push(event.api_service + ":" + event.api_operation + " " + (event.resource || ""));
  if (event.dst_host || event.dst_ip) parts.push("→ " + (event.dst_host || event.dst_ip) + (event.dst_port ? ":" + event.dst_port : ""));
  if (event.model_id) parts.push("model " + event.model_id + " (" + event.tokens_in + "/" + event.tokens_out + " tokens)");
  if (event.prompt) parts.push("prompt: " + event.prompt.slice(0, 160));
  if (event.message && parts.length === 0) parts.push(event.message);
  return parts.join(" · ") + " [" + event.entity_id + "]";
}

async function showTimeline(entity) {
  $("#timeline-entity").textContent = entity;
  try {
    const items = await getJSON("/entities/" + encodeURIComponent(entity) + "/timeline?limit=100");
    $("#timeline").replaceChildren(...items.map((item) => el("li", { class: item.kind },
      el("span", { class: "kind" }, item.kind), el("span", { class: "muted" }, time(item.time_ms)), " ",
      el("b", {}, item.title), " ", item.origin, item.detail ? " · " + item.detail : "")));
  } catch (error) {
    $("#timeline").replaceChildren(el("li", { class: "muted" }, "timeline unavailable: " + error.message));
  }
}

async function loadInventory() {
  const body = $("#inventory tbody");
  try {
    const assets = await getJSON("/inventory?limit=500");
    body.replaceChildren(...assets.map((a) => el("tr", { class: "asset", "data-asset-id": a.asset_id },
      el("td", { class: "entity" }, a.name || a.asset_id), el("td", {}, a.kind), el("td", {}, a.namespace),
      el("td", {}, [...a.models, ...a.runtimes].join(", ")), el("td", { class: "entity" }, a.principals.slice(0, 5).join(", ")),
      el("td", {}, a.sanctioned ? "yes" : el("b", { class: "sev high" }, "no")),
      el("td", {}, a.public_exposure ? el("b", { class: "sev critical" }, "public") : "no"),
      el("td", { class: "muted" }, time(a.last_seen)))));
  } catch (error) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 8, class: "muted" }, "inventory unavailable: " + error.message)));
  }
}

function position(p) {
  if (p.file) return p.file + ":" + (p.line || "?") + (p.record !== undefined ? "[" + p.record + "]" : "");
  if (p.topic) return p.topic + "[" + p.partition + "]@" + p.offset;
  return Object.entries(p).map(([k, v]) => k + "=" + v).join(", ");
}

let deadLetterTimer = null;

async function loadDeadLetters() {
  const since = Date.now() - Number($("#dlq-window").value);
  const counts = $("#dead-letter-counts tbody");
  const newest = $("#dead-letters tbody");
  try {
    const data = await getJSON("/dead-letters?limit=100&since_ms=" + since);
    counts.replaceChildren(...data.counts.map((c) => el("tr", { class: "dlq-count" },
      el("td", {}, el("b", {}, c.letters)), el("td", {}, c.source), el("td", {}, c.stage),
      el("td", { class: "summary" }, c.reason_pattern), el("td", {}, c.truncated || ""),
      el("td", { class: "muted" }, time(c.last_ms)))));
    newest.replaceChildren(...data.newest.map((d) => el("tr", { class: "letter", "data-letter-id": d.letter_id },
      el("td", { class: "muted" }, time(d.time_ms)), el("td", {}, d.source), el("td", {}, d.stage),
      el("td", { class: "summary" }, d.reason), el("td", { class: "entity" }, position(d.position)),
      el("td", { class: "entity" }, (d.raw_encoding === "base64" ? "(base64) " : "") + d.raw_start,
        d.truncated ? el("span", { class: "tech" }, "truncated of " + d.raw_bytes + " bytes") : ""))));
    if (!data.counts.length) counts.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No dead letters in this window.")));
  } catch (error) {
    counts.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "dead letters unavailable: " + error.message)));
  }
}

for (const tab of document.querySelectorAll("nav .tab")) {
  tab.addEventListener("click", () => {
    for (const other of document.querySelectorAll("nav .tab")) other.classList.toggle("active", other === tab);
    $("#alerts-view").hidden = tab.dataset.tab !== "alerts";
    $("#dead-letters-view").hidden = tab.dataset.tab !== "dead-letters";
    $("#inventory-view").hidden = tab.dataset.tab !== "inventory";
    clearInterval(deadLetterTimer);
    if (tab.dataset.tab === "inventory") loadInventory();
    if (tab.dataset.tab === "dead-letters") {
      loadDeadLetters();
      deadLetterTimer = setInterval(loadDeadLetters, 5000);  // the sink lands new letters within seconds
    }
  });
}
$("#dlq-window").addEventListener("change", loadDeadLetters);
$("#filters").addEventListener("change", connect);
$("#filters").addEventListener("submit", (event) => { event.preventDefault(); connect(); });
connect();
