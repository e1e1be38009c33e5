"""Alerts → containment policy → signed webhook deliveries, with retries kept in Kafka.

``route`` sends every alert to a one-partition topic so that one ``decide`` agent owns the policy
state (blast-radius windows, actions already decided: reprocessing never doubles an action).
``deliver`` attempts each pending action; a retryable failure goes to the retry topic with its due
time, and ``retry`` (which waits for that time) attempts it again, so pending retries survive a
restart. Every decision and attempt is a row on ``aiwarden.action-log`` (→ ClickHouse ``actions``).
After the last attempt the action is dead-lettered and an alert says containment failed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import faust
import orjson

from infra.estate import EstateWatcher
from infra.settings import ContainmentSettings, Settings, estate_settings
from schemas.codec import encode
from schemas.findings import Alert, stable_id
from streams import topics
from streams.agents.dead_letters import dead_letter
from streams.containment.delivery import Deliverer, Outcome, backoff_s
from streams.containment.policy import Action, Policy, load_policy
from streams.integrations.ocsf import detection_finding
from streams.metrics import ESTATE_RELOADS, WEBHOOK_OUTCOMES
from streams.soc.approvals import RELEASES

log = logging.getLogger(__name__)


def webhook_payload(action: dict[str, Any]) -> dict[str, Any]:
    """The JSON body receivers get: the action, its target, the alert summary, evidence and links."""
    payload = {
        "action_id": action["action_id"],
        "action": action["action"],
        "target": action["target"],
        "rule": action["rule"],
        "alert": {k: action[k] for k in ("alert_id", "severity", "risk_score", "summary", "detectors")},
        "evidence": action.get("evidence_event_ids", []),
        "links": {"timeline": f"aiwarden hunt entity_timeline --param entity={action['target']}"},
        "time_ms": action["time_ms"],
    }
    if action.get("releases"):  # a release names the action it undoes
        payload["releases"] = action["releases"]
    return payload


def log_row(action: dict[str, Any], status: str, attempt: int = 0, outcome: Outcome | None = None,
            detail: str = "") -> dict[str, Any]:
    return {
        "action_id": action["action_id"], "alert_id": action["alert_id"], "action": action["action"],
        "target": action["target"], "status": status, "attempt": attempt,
        "http_status": outcome.http_status if outcome else 0, "latency_ms": outcome.latency_ms if outcome else 0,
        "time_ms": int(time.time() * 1000), "detail": (outcome.detail if outcome else detail)[:500],
    }


async def record_action(action_log: Any, action: dict[str, Any], status: str, attempt: int = 0,
                        outcome: Outcome | None = None, detail: str = "") -> None:
    """One row on the action log (→ ClickHouse ``actions``), counted in ``WEBHOOK_OUTCOMES`` by status."""
    WEBHOOK_OUTCOMES.labels(status).inc()
    await action_log.send(key=action["action_id"].encode(), value=encode(log_row(action, status, attempt, outcome,
                                                                               detail)))


def containment_policy(conf: ContainmentSettings) -> Policy:
    """The policy in force: the file at ``policy_path`` (raises ``PolicyError`` naming file and line), in
    dry-run when the settings are or no webhook is set."""
    policy = load_policy(conf.policy_path)
    if conf.dry_run or not conf.webhook_url:
        policy = policy.model_copy(update={"dry_run": True})
    return policy


def _estate_containment(path: Any) -> ContainmentSettings:
    conf = estate_settings(path).containment
    containment_policy(conf)  # a policy that cannot load is an invalid estate: keep the one in force
    return conf


class PolicyInForce:
    """The containment policy, replaced when the estate file (``AIWARDEN_CONFIG``) or the policy file it
    names changes: ``now()`` on the agent's own loop before each decision (a poll every reload interval)."""

    def __init__(self, settings: Settings) -> None:
        self.policy = containment_policy(settings.containment)  # invalid: the worker stops, naming file and line
        self.watcher = None if settings.config is None else EstateWatcher(
            settings.config, _estate_containment, settings.containment, settings.worker.estate_reload_interval_s,
            name="containment", prefix="AIWARDEN_CONTAINMENT__", also=lambda conf: (conf.policy_path,),
            on_result=lambda outcome: ESTATE_RELOADS.labels("containment", outcome).inc(),
        )

    def now(self) -> Policy:
        if self.watcher is not None and (conf := self.watcher.poll()) is not None:
            self.policy = containment_policy(conf)
        return self.policy


def register(app: faust.App, settings: Settings) -> None:
    conf = settings.containment
    in_force = PolicyInForce(settings)
    app_id = settings.worker.app_id
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "value_serializer": "raw"}
    alerts = app.topic(topics.ALERTS, **raw)
    ocsf = app.topic(topics.OCSF, **raw)
    decide_topic = app.topic(f"{app_id}-containment", internal=True, partitions=1, **raw)
    actions = app.topic(topics.ACTIONS, **raw)
    retries = app.topic(f"{app_id}-actions-retry", internal=True, partitions=1, **raw)
    action_log = app.topic(topics.ACTION_LOG, **raw)
    dlq = app.topic(topics.DLQ, **raw)
    state = app.Table("containment-state", default=None, key_type=str, partitions=1)
    rng = random.Random()  # noqa: S311 - jitter, not security
    deliverers: dict[str, Deliverer] = {}

    async def raise_alert(alert: dict[str, Any]) -> None:
        """An alert of containment's own, on aiwarden.alerts and as its OCSF Detection Finding."""
        await alerts.send(key=None, value=encode(alert))
        await ocsf.send(key=alert["alert_id"].encode(), value=encode(detection_finding(Alert.from_dict(alert))))

    async def log_action(action: dict[str, Any], status: str, attempt: int = 0, outcome: Outcome | None = None,
                         detail: str = "") -> None:
        await record_action(action_log, action, status, attempt, outcome, detail)

    def deliverer() -> Deliverer:
        if "d" not in deliverers:
            deliverers["d"] = Deliverer(conf.webhook_url or "", conf.secret.get_secret_value(),
                                        timeout_s=conf.timeout_s, concurrency=conf.concurrency)
        return deliverers["d"]

    @app.agent(alerts, name="containment-route")
    async def route(stream: faust.StreamT[bytes]) -> None:
        async for record in stream.events():
            await decide_topic.send(key=b"policy", value=record.value)

    approvals = app.topic(topics.APPROVALS, **raw)
    app.aiwarden_decide_topic = decide_topic  # type: ignore[attr-defined]  # approvals from the console enter here

    async def approved(row: dict[str, Any]) -> None:
        """An action people approved takes its turn at the blast-radius budget, then goes to delivery."""
        current = orjson.loads(orjson.dumps(state.get("policy") or {}))
        now = int(time.time() * 1000)
        status, reason = in_force.now().spend(row["action"], now, current)
        state["policy"] = current
        await log_action(row, status, detail=f"approved by {', '.join(a['user'] for a in row['approvals'])}; "
                                             f"{reason}")
        if status == "held":
            await raise_alert(containment_alert(row, "held", reason))
            return
        await actions.send(key=row["action_id"].encode(), value=encode({**row, "attempt": 1, "decided_ms": now}))

    @app.agent(decide_topic, name="containment-decide")
    async def decide(stream: faust.StreamT[bytes]) -> None:
        async for record in stream.events():
            try:
                data = orjson.loads(record.value)
                if "approved_action" in data:
                    await approved(data["approved_action"])
                    continue
                alert = Alert.from_dict(data)
                current = orjson.loads(orjson.dumps(state.get("policy") or {}))
                decided: list[Action] = in_force.now().decide(alert, current)
            except Exception as exc:  # noqa: BLE001 - a bad alert must not stop containment
                log.exception("containment decision failed")
                await dead_letter(dlq, record.message, f"containment decision failed: {exc!r}", "alerts", "contain")
                continue
            state["policy"] = current
            for action in decided:
                row = action.to_dict()
                await log_action(row, action.status, detail=action.reason)
                if action.status == "held":  # blast radius reached: a human decides
                    await raise_alert(containment_alert(row, "held", action.reason))
                now = int(time.time() * 1000)
                if action.status == "approval_required":
                    waiting = {**row, "state": "awaiting_approval", "decided_ms": now, "approvals": []}
                    await approvals.send(key=action.action_id.encode(), value=encode(waiting))
                if action.status == "pending":
                    pending = {**row, "attempt": 1, "decided_ms": now}
                    await actions.send(key=action.action_id.encode(), value=encode(pending))
                    if action.action in RELEASES:  # a responder may release it later
                        await approvals.send(key=action.action_id.encode(),
                                             value=encode({**row, "state": "sent", "decided_ms": now}))

    async def attempt(action: dict[str, Any], message: Any) -> None:
        number = int(action.get("attempt", 1))
        # Safety first: a worker in dry-run never sends, and an action decided long ago (a consumer
        # group reset, a backlog after an outage) is recorded as expired rather than executed late.
        if in_force.policy.dry_run:
            await log_action(action, "dry_run", number, detail="worker in dry-run")
            return
        age_s = time.time() - int(action.get("decided_ms", 0)) / 1000
        if age_s > conf.max_action_age_s:
            detail = f"decided {age_s:.0f}s ago, over the {conf.max_action_age_s:.0f}s limit: not executed"
            await log_action(action, "expired", number, detail=detail)
            return
        outcome = await deliverer().attempt(action["action_id"], webhook_payload(action))
        if outcome.status == "delivered":
            await log_action(action, "delivered", number, outcome)
            return
        if outcome.status == "failed" or number >= conf.max_attempts:
            await log_action(action, "failed", number, outcome)
            await dead_letter(dlq, message, f"containment delivery failed after {number} attempts: {outcome.detail}",
                              "actions", "deliver")
            detail = f"failed after {number} attempts ({outcome.detail[:120]})"
            await raise_alert(containment_alert(action, "failed", detail))
            return
        wait = outcome.retry_after_s if outcome.retry_after_s is not None else backoff_s(
            number, conf.backoff_base_s, conf.backoff_cap_s, rng)
        await log_action(action, "retrying", number, outcome)
        due = {**action, "attempt": number + 1, "due_ms": int((time.time() + wait) * 1000)}
        await retries.send(key=action["action_id"].encode(), value=encode(due))

    @app.agent(actions, name="containment-deliver")
    async def deliver(stream: faust.StreamT[bytes]) -> None:
        async for record in stream.events():
            await attempt(orjson.loads(record.value), record.message)

    @app.agent(retries, name="containment-retry")
    async def retry(stream: faust.StreamT[bytes]) -> None:
        async for record in stream.events():
            action = orjson.loads(record.value)
            delay = int(action.get("due_ms", 0)) / 1000 - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await attempt(action, record.message)


def containment_alert(action: dict[str, Any], what: str, detail: str) -> dict[str, Any]:
    """An alert that containment did not happen (``failed``, or ``held`` by the blast-radius limit),
    so the SOC acts by hand. Its id is derived from the action: one such alert per action."""
    now = int(time.time() * 1000)
    alert = Alert(
        alert_id=stable_id(f"containment-{what}", action["action_id"]), first_seen=now, last_seen=now,
        severity="high", risk_score=max(60.0, float(action.get("risk_score", 0))), detectors=["containment"],
        atlas_techniques=[], attack_techniques=[], tactics=["response"], entities=[action["target"]],
        primary_entity=action["target"],
        summary=f"Containment {what}: {action['action']} on {action['target']} {detail}; act by hand",
        evidence_event_ids=list(action.get("evidence_event_ids", []))[:20], finding_ids=[], maturity="stable",
        updated_ms=now,
    )
    return alert.to_dict()
