"""aiwarden's Kafka topics, created explicitly (the broker never auto-creates them)."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from infra.kafka.clients import confluent_config
from infra.settings import Settings

RAW_RUNTIME = "aiwarden.raw.runtime"
RAW_CLOUD = "aiwarden.raw.cloud"
RAW_INFERENCE = "aiwarden.raw.inference"
RAW_VULNS = "aiwarden.raw.vulns"  # scanner reports (Trivy, Trivy Operator, Grype, CycloneDX), one record per package
EVENTS = "aiwarden.events"
FINDINGS = "aiwarden.findings"
ALERTS = "aiwarden.alerts"
ACTIONS = "aiwarden.actions"
DLQ = "aiwarden.dlq"
ACTION_LOG = "aiwarden.action-log"  # every containment decision and delivery attempt (→ ClickHouse actions)
INVENTORY = "aiwarden.inventory"  # AI inventory changes (AIBOM), for the sink and the console
VULNERABILITIES = "aiwarden.vulnerabilities"  # latest state per (workload, package, vulnerability) (→ ClickHouse)
OCSF = "aiwarden.ocsf"  # every alert version as an OCSF Detection Finding (streams/integrations/ocsf.py)
# The SOC workflow (streams/soc): accounts and exceptions are compacted (latest record per key, read whole
# by every worker); triage and audit are logs (→ ClickHouse alert_triage, audit_log).
ACCOUNTS = "aiwarden.accounts"  # users, API token digests, ended sessions
TRIAGE = "aiwarden.alert-triage"  # status, resolution, assignee and comment changes of alerts
AUDIT = "aiwarden.audit"  # every human action: who, when, from where, what changed
EXCEPTIONS = "aiwarden.exceptions"  # alert exceptions (suppressions), by id
SUPPRESSED = "aiwarden.suppressed"  # findings an exception suppressed (→ ClickHouse suppressed_findings)
APPROVALS = "aiwarden.approvals"  # containment actions waiting for (or given) a human decision, by action id

RAW_TOPICS = (RAW_RUNTIME, RAW_CLOUD, RAW_INFERENCE, RAW_VULNS)
SOC_TOPICS = (ACCOUNTS, TRIAGE, AUDIT, EXCEPTIONS, SUPPRESSED, APPROVALS)
ALL_TOPICS = (*RAW_TOPICS, EVENTS, FINDINGS, ALERTS, ACTIONS, DLQ, INVENTORY, VULNERABILITIES, ACTION_LOG, OCSF,
              *SOC_TOPICS)
COMPACTED = frozenset({ACCOUNTS, EXCEPTIONS, APPROVALS})

# The message header naming a raw record's source format (falco, cloudtrail, …); optional.
SOURCE_HEADER = "aiwarden-source"
# On aiwarden.findings: a copy the correlate stage re-keyed to the anchor whose alert it joins (the value
# names the anchor it came from). The finding itself is the record without it: the sink and anyone
# reading findings skip these (``forwarded``).
FORWARDED_HEADER = "aiwarden-forwarded-from"
# On such a copy: the alert of the anchor it came from (compact correlation state, JSON), to be merged into the
# alert the copy joins (``Correlator.merge``).
MERGE_HEADER = "aiwarden-merge"


def forwarded(message: Any) -> bool:
    """Whether a record of aiwarden.findings is the correlate stage's re-keyed copy (``FORWARDED_HEADER``)."""
    return header(message.headers(), FORWARDED_HEADER) is not None


def header(headers: Any, name: str) -> bytes | None:
    """The value of header ``name`` (the first) among a record's ``headers`` (pairs, or a dict), or ``None``."""
    for key, value in (headers.items() if isinstance(headers, dict) else headers or ()):
        if key == name:
            return value.encode() if isinstance(value, str) else bytes(value or b"")
    return None


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create every aiwarden topic that does not exist; returns those created."""
    admin = AdminClient(confluent_config(settings))
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    wanted = [
        NewTopic(name, num_partitions=settings.kafka.partitions, replication_factor=settings.kafka.replication_factor,
                 config={"cleanup.policy": "compact"} if name in COMPACTED else {})
        for name in ALL_TOPICS
        if name not in existing
    ]
    if not wanted:
        return []
    created = []
    for name, future in admin.create_topics(wanted, operation_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created
