// aiwarden SOC console: the alert queue (open alerts of any age from ClickHouse, then live over Server-Sent
// Events), triage, details and timelines from the worker's endpoints. Plain JavaScript, no build step.
"use strict";

const SEVERITY_RANK = { info: 0, low: 1, medium: 2, high: 3, critical: 4 };
const MAX_ALERTS = 500;
const alerts = new Map(); // alert_id -> latest version seen
let source = null;
let triageSource = null;
let selected = null;
let me = null; // {user, role, csrf}
const checked = new Set();
const liveTriage = new Map(); // alert_id -> triage changes seen on the stream (ClickHouse may lag a second)
let cursor = -1; // keyboard position in the queue

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

function wantedStatuses() {
  return new FormData($("#filters")).get("triage").split(",");
}

function visible(alert) {
  const form = new FormData($("#filters"));
  const assignee = form.get("assignee").trim();
  return wantedStatuses().includes(alert.triage_status || "open") && (!assignee || alert.assignee === assignee);
}

async function connect() {
  if (source) source.close();
  if (triageSource) triageSource.close();
  alerts.clear();
  renderAlerts();
  const params = filters();
  // the queue: alerts of any age in the wanted triage states, from ClickHouse; then live from Kafka
  const queueParams = new URLSearchParams(params);
  queueParams.set("status", wantedStatuses().join(","));
  const assignee = new FormData($("#filters")).get("assignee").trim();
  if (assignee) queueParams.set("assignee", assignee);
  queueParams.set("limit", String(MAX_ALERTS));
  try {
    for (const alert of await getJSON("/queue?" + queueParams.toString())) alerts.set(alert.alert_id, alert);
  } catch (error) {
    setStatus(false, "queue unavailable: " + error.message);
  }
  renderAlerts();
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
    if (alert.status === "merged") {  // it joined alert.merged_into, which the list shows instead
      if (known) { alerts.delete(alert.alert_id); renderAlerts(); }
      return;
    }
    for (const field of ["triage_status", "resolution", "assignee", "comments"]) {
      if (known && known[field] !== undefined) alert[field] = known[field];
    }
    alert.triage_status = alert.triage_status || "open";
    if (!known && !visible(alert)) return;
    alert._fresh = true;
    alerts.set(alert.alert_id, alert);
    renderAlerts();
    if (selected === alert.alert_id) showAlert(alert.alert_id);
  });
  triageSource = new EventSource("/triage/stream?backlog=0");
  triageSource.addEventListener("triage", (message) => {
    const change = JSON.parse(message.data);
    if (!liveTriage.has(change.alert_id)) liveTriage.set(change.alert_id, []);
    liveTriage.get(change.alert_id).push(change);
    const alert = alerts.get(change.alert_id);
    if (!alert) return;
    if (change.status) { alert.triage_status = change.status; alert.resolution = change.resolution; }
    if (change.assigned) alert.assignee = change.assignee;
    if (change.comment) alert.comments = (alert.comments || 0) + 1;
    renderAlerts();
    if (selected === change.alert_id) loadHistory(change.alert_id);
  });
}

// ATLAS / ATT&CK / OWASP LLM Top 10 ids -> {name, url} (MITRE's data, served by /techniques), and the OWASP
// categories of each detector.
let catalog = { links: {}, owasp: {} };
function loadCatalog() {  // once signed in (GET /techniques needs the viewer role); ids stay plain text without it
  getJSON("/techniques").then((body) => { catalog = body; renderAlerts(); }).catch(() => {});
}

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

function queueRows() {
  return [...alerts.values()].filter(visible).sort((a, b) => b.last_seen - a.last_seen || b.risk_score - a.risk_score);
}

function renderAlerts() {
  const rows = queueRows();
  for (const stale of rows.slice(MAX_ALERTS)) alerts.delete(stale.alert_id);
  const body = $("#alerts tbody");
  body.replaceChildren(...rows.slice(0, MAX_ALERTS).map((alert, n) => {
    const box = el("input", { type: "checkbox", class: "check", "aria-label": "select " + alert.alert_id });
    box.checked = checked.has(alert.alert_id);
    box.addEventListener("click", (event) => { event.stopPropagation(); toggleCheck(alert.alert_id); });
    const row = el("tr", {
      class: "alert" + (alert._fresh ? " fresh" : "") + (alert.alert_id === selected ? " selected" : "") +
        (n === cursor ? " cursor" : ""),
      "data-alert-id": alert.alert_id, "data-severity": alert.severity, "data-status": alert.triage_status || "open",
      onclick: () => showAlert(alert.alert_id),
    },
      el("td", {}, box),
      el("td", {}, el("span", { class: "tstatus " + (alert.triage_status || "open") },
        alert.triage_status || "open", alert.resolution ? " · " + alert.resolution : "")),
      el("td", { class: "assignee" }, alert.assignee || ""),
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
  $("#checked-count").textContent = checked.size;
}

function toggleCheck(alertId) {
  if (checked.has(alertId)) checked.delete(alertId); else checked.add(alertId);
  renderAlerts();
}

async function getJSON(url) {
  const response = await fetch(url);
  if (response.status === 401) { window.location.assign("/login"); throw new Error("signed out"); }
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

async function postJSON(url, value) {
  const response = await fetch(url, {
    method: "POST", credentials: "same-origin", body: JSON.stringify(value),
    headers: { "Content-Type": "application/json", "X-CSRF-Token": me ? me.csrf : "" },
  });
  if (response.status === 401) { window.location.assign("/login"); throw new Error("signed out"); }
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function targets() {
  if (checked.size) return [...checked];
  return selected ? [selected] : [];
}

async function triage(change) {
  const ids = targets();
  $("#triage-error").textContent = "";
  if (!ids.length) { $("#triage-error").textContent = "select alerts first (click a row, or x)"; return; }
  try {
    const result = await postJSON("/alerts/triage", { alert_ids: ids, ...change });
    // a resolution that releases containment says what it released, or why it kept it
    if (result && result.released) $("#triage-note").textContent = `released ${result.released.length} containment action(s)`;
    else if (result && result.containment_kept) $("#triage-note").textContent = `containment kept: ${result.containment_kept.reason}`;
    else $("#triage-note").textContent = "";
    for (const id of ids) {  // the triage stream confirms; show it at once
      const alert = alerts.get(id);
      if (!alert) continue;
      if (change.status) { alert.triage_status = change.status; alert.resolution = change.resolution || ""; }
      if (change.assignee !== undefined) alert.assignee = change.assignee;
    }
    checked.clear();
    renderAlerts();
    if (selected) loadHistory(selected);
  } catch (error) {
    $("#triage-error").textContent = error.message;
  }
}

async function loadHistory(alertId) {
  try {
    const stored = await getJSON("/alerts/" + encodeURIComponent(alertId) + "/triage");
    if (selected !== alertId) return;
    const byId = new Map([...stored, ...(liveTriage.get(alertId) || [])].map((r) => [r.triage_id, r]));
    const rows = [...byId.values()].sort((a, b) => a.time_ms - b.time_ms);
    $("#triage-history").replaceChildren(...rows.map((r) => el("li", { class: "triage-change" },
      el("span", { class: "muted" }, time(r.time_ms)), " ", el("b", {}, r.actor), " ",
      [r.status ? "→ " + r.status + (r.resolution ? " (" + r.resolution + ")" : "") : "",
       r.assigned ? " assigned to " + (r.assignee || "nobody") : "", r.comment ? " “" + r.comment + "”" : ""].join(""))));
  } catch (error) {
    $("#triage-history").replaceChildren(el("li", { class: "muted" }, "triage history unavailable: " + error.message));
  }
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
  if (stored) renderDetail({ ...stored, ...pick(live) }, stored.findings, stored.evidence);
  if (attempt === 0) loadHistory(alertId);
  const missing = !stored || stored.evidence.length < stored.evidence_event_ids.length;
  if (missing && attempt < 15) setTimeout(() => selected === alertId && showAlert(alertId, attempt + 1), 2000);
  showTimeline((stored || live).primary_entity);
}

function pick(alert) {
  if (!alert) return {};
  return { triage_status: alert.triage_status, resolution: alert.resolution, assignee: alert.assignee };
}

function renderDetail(alert, findings = null, evidence = null) {
  $("#detail-title").replaceChildren(el("span", { class: "sev " + alert.severity }, alert.severity), " ", alert.summary);
  const fields = [
    ["alert", alert.alert_id], ["risk", Math.round(alert.risk_score)], ["status", alert.status],
    ["triage", (alert.triage_status || "open") + (alert.resolution ? " · " + alert.resolution : "")],
    ["assignee", alert.assignee || "nobody"],
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
  showWorkload(entity);
}

function vulnerability(v) {
  const sev = (v.severity || "unknown").toLowerCase();
  return el("span", { class: "vulnerability" }, el("span", { class: "sev " + sev }, v.severity), " ", el("b", {}, v.vulnerability_id),
    v.cvss !== null ? " CVSS " + v.cvss.toFixed(1) : "", v.fixed_version ? " · fix " + v.fixed_version : " · no fix",
    " · " + v.priority + " (" + v.priority_score + ")", v.reasons.length ? ": " + v.reasons.join(", ") : "", el("br"));
}

async function showWorkload(entity) {
  $("#workload-entity").textContent = entity;
  const body = $("#workload-packages tbody");
  try {
    const workload = await getJSON("/workloads/" + encodeURIComponent(entity) + "?limit=500");
    $("#workload-counts").textContent = workload.in_use + " in use of " + workload.installed + " installed";
    body.replaceChildren(...workload.packages.map((p) => el("tr", { class: "package" + (p.in_use ? " in-use" : "") },
      el("td", { class: "entity" }, p.package + " " + p.package_version),
      el("td", {}, p.in_use ? el("b", {}, "in use since " + time(p.in_use_first_seen)) : "installed"),
      el("td", {}, p.vulnerabilities.length ? p.vulnerabilities.map(vulnerability) : el("span", { class: "muted" }, "none known")))));
    $("#workload-alerts").replaceChildren(...workload.attack_paths.map((a) => el("li", {},
      el("span", { class: "sev " + a.severity }, a.severity), " ", el("a", { onclick: () => showAlert(a.alert_id) }, a.summary),
      el("span", { class: "muted" }, " " + a.detectors.join(", ") + " · " + time(a.last_seen)))));
  } catch (error) {
    $("#workload-counts").textContent = "";
    body.replaceChildren(el("tr", {}, el("td", { colspan: 3, class: "muted" }, "packages unavailable: " + error.message)));
    $("#workload-alerts").replaceChildren();
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

let tabTimer = null;  // refreshes the open tab (dead letters, actions)

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
    $("#audit-view").hidden = tab.dataset.tab !== "audit";
    $("#actions-view").hidden = tab.dataset.tab !== "actions";
    $("#exceptions-view").hidden = tab.dataset.tab !== "exceptions";
    if (tab.dataset.tab === "exceptions") loadExceptions();
    clearInterval(tabTimer);
    if (tab.dataset.tab === "actions") {
      loadActions();
      tabTimer = setInterval(loadActions, 3000);
    }
    if (tab.dataset.tab === "inventory") loadInventory();
    if (tab.dataset.tab === "audit") loadAudit();
    if (tab.dataset.tab === "dead-letters") {
      loadDeadLetters();
      tabTimer = setInterval(loadDeadLetters, 5000);  // the sink lands new letters within seconds
    }
  });
}

async function actOn(actionId, verb) {
  $("#actions-error").textContent = "";
  try {
    await postJSON("/actions/" + encodeURIComponent(actionId) + "/" + verb,
      verb === "deny" ? { reason: $("#deny-reason").value.trim() } : {});
  } catch (error) {
    $("#actions-error").textContent = error.message;
  }
  loadActions();
}

async function loadActions() {
  const body = $("#actions tbody");
  const responder = me && ["responder", "admin"].includes(me.role);
  try {
    const rows = await getJSON("/actions");
    body.replaceChildren(...rows.map((a) => el("tr", { class: "action-row", "data-action-id": a.action_id, "data-state": a.state },
      el("td", { class: "muted" }, time(a.decided_ms)), el("td", {}, el("b", {}, a.state)), el("td", {}, a.action),
      el("td", { class: "entity" }, a.target), el("td", {}, a.rule),
      el("td", {}, (a.approvals || []).map((x) => x.user).join(", ") + (a.state === "awaiting_approval" ? " (" + (a.approvals || []).length + "/" + a.approvers + ")" : "")),
      el("td", { class: "muted" }, a.summary),
      el("td", {}, !responder ? "" : a.state === "awaiting_approval"
        ? [el("button", { class: "approve", onclick: () => actOn(a.action_id, "approve") }, "Approve"), " ",
           el("button", { class: "deny", onclick: () => actOn(a.action_id, "deny") }, "Deny")]
        : (["sent", "approved"].includes(a.state) && ["quarantine_workload", "block_egress", "revoke_api_key"].includes(a.action)
          ? el("button", { class: "release", onclick: () => actOn(a.action_id, "release") }, "Release") : "")))));
    if (!rows.length) body.replaceChildren(el("tr", {}, el("td", { colspan: 8, class: "muted" }, "No actions to decide or release.")));
  } catch (error) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 8, class: "muted" }, "actions unavailable: " + error.message)));
  }
}

async function loadExceptions() {
  const body = $("#exceptions tbody");
  const analyst = me && me.role !== "viewer";
  try {
    const rows = await getJSON("/exceptions");
    body.replaceChildren(...rows.map((x) => el("tr", { class: "exception-row", "data-exception-id": x.exception_id },
      el("td", { class: "muted" }, time(x.created_ms)), el("td", {}, x.created_by), el("td", {}, x.detector),
      el("td", { class: "entity" }, x.entity), el("td", { class: "summary" }, x.reason),
      el("td", { class: "muted" }, time(x.expires_ms)), el("td", {}, x.revoked ? "revoked" : (x.live ? "live" : "expired")),
      el("td", {}, analyst && x.live ? el("button", { class: "revoke", onclick: async () => {
        await postJSON("/exceptions/" + encodeURIComponent(x.exception_id) + "/revoke", {}).catch(() => null);
        loadExceptions();
      } }, "Revoke") : ""))));
    if (!rows.length) body.replaceChildren(el("tr", {}, el("td", { colspan: 8, class: "muted" }, "No exceptions.")));
  } catch (error) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 8, class: "muted" }, "exceptions unavailable: " + error.message)));
  }
}

async function addException() {
  const alert = alerts.get(selected);
  $("#triage-error").textContent = "";
  const reason = $("#comment-text").value.trim();
  if (!alert || !reason) { $("#triage-error").textContent = "open an alert and write the reason first"; return; }
  try {
    await postJSON("/exceptions", { detector: alert.detectors[0], entity: alert.primary_entity, reason,
                                    expires_in_s: 7 * 86400 });
    $("#comment-text").value = "";
    $("#triage-error").textContent = "exception added: " + alert.detectors[0] + " on " + alert.primary_entity;
  } catch (error) {
    $("#triage-error").textContent = error.message;
  }
}

async function loadAudit() {
  const body = $("#audit tbody");
  try {
    const rows = await getJSON("/audit?limit=500");
    body.replaceChildren(...rows.map((r) => el("tr", { class: "audit-row", "data-action": r.action },
      el("td", { class: "muted" }, time(r.time_ms)), el("td", { class: "actor" }, r.actor), el("td", {}, r.role),
      el("td", {}, r.via), el("td", { class: "muted" }, r.source), el("td", {}, el("b", {}, r.action)),
      el("td", { class: "entity" }, r.target), el("td", {}, r.outcome), el("td", { class: "muted" }, r.detail))));
  } catch (error) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 9, class: "muted" }, "audit log unavailable: " + error.message)));
  }
}

function moveCursor(step) {
  const rows = queueRows();
  if (!rows.length) return;
  cursor = Math.max(0, Math.min(rows.length - 1, cursor + step));
  renderAlerts();
  const row = document.querySelectorAll("#alerts tr.alert")[cursor];
  if (row) row.scrollIntoView({ block: "nearest" });
}

document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, select, textarea") || $("#alerts-view").hidden) return;
  const rows = queueRows();
  const current = rows[cursor];
  if (event.key === "j" || event.key === "ArrowDown") moveCursor(1);
  else if (event.key === "k" || event.key === "ArrowUp") moveCursor(-1);
  else if (event.key === "Enter" && current) showAlert(current.alert_id);
  else if (event.key === "x" && current) toggleCheck(current.alert_id);
  else if (event.key === "a") {
    if (!checked.size && current) checked.add(current.alert_id);
    triage({ status: "acknowledged" });
  } else return;
  event.preventDefault();
});

$("#ack").addEventListener("click", () => triage({ status: "acknowledged" }));
$("#resolve").addEventListener("click", () => triage({ status: "resolved", resolution: $("#resolution").value }));
$("#reopen").addEventListener("click", () => triage({ status: "open" }));
$("#assign").addEventListener("click", () => triage({ assignee: $("#assign-to").value.trim() }));
$("#comment").addEventListener("click", () => {
  const text = $("#comment-text").value.trim();
  if (text) triage({ comment: text }).then(() => { $("#comment-text").value = ""; });
});
$("#add-exception").addEventListener("click", addException);
$("#check-all").addEventListener("change", (event) => {
  for (const alert of queueRows()) {
    if (event.target.checked) checked.add(alert.alert_id); else checked.delete(alert.alert_id);
  }
  renderAlerts();
});
$("#signout").addEventListener("click", async () => {
  await postJSON("/auth/logout", {}).catch(() => null);
  window.location.assign("/login");
});
$("#dlq-window").addEventListener("change", loadDeadLetters);
$("#filters").addEventListener("change", connect);
$("#filters").addEventListener("submit", (event) => { event.preventDefault(); connect(); });

(async () => {
  me = await getJSON("/auth/me");
  $("#whoami").textContent = me.user + " (" + me.role + ")";
  if (me.role === "admin") $('nav .tab[data-tab="audit"]').hidden = false;
  if (me.role === "viewer") $("#triage-bar").hidden = true;
  loadCatalog();
  connect();
})();
