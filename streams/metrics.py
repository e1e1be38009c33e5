"""The worker's Prometheus metrics, served at ``GET /metrics`` by the worker's web server.

One module-level registry per process so agents record with one call and tests can read values.
Names follow Prometheus conventions (``_total`` counters, ``_seconds`` histograms). Record per
batch where a batch exists: a label lookup and an increment cost about a microsecond each.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

EVENTS_IN = Counter(
    "aiwarden_events_in_total", "Raw records normalized into events, per source.", ["source"], registry=REGISTRY
)
FINDINGS = Counter(
    "aiwarden_findings_total", "Findings raised by detectors, per detector.", ["detector"], registry=REGISTRY
)
ALERTS = Counter(
    "aiwarden_alerts_total", "Alerts opened or updated by correlation, per leading detector.", ["detector"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "aiwarden_dead_letters_total", "Records sent to the dead-letter topic, per pipeline stage.", ["stage"],
    registry=REGISTRY,
)
ESTATE_RELOADS = Counter(
    "aiwarden_estate_reloads_total", "Changes of the estate file (AIWARDEN_CONFIG) seen by the worker, per component "
    "(detect, containment) and outcome (reloaded, invalid).", ["component", "outcome"], registry=REGISTRY,
)
SINK_ROWS = Counter(
    "aiwarden_sink_rows_total", "Rows inserted into ClickHouse by the sink, per table.", ["table"], registry=REGISTRY
)
SINK_LAG = Gauge(
    "aiwarden_sink_lag_records", "Records on the sink's topics not yet inserted (end offset minus position).",
    ["topic"], registry=REGISTRY,
)
SINK_INSERT_SECONDS = Histogram(
    "aiwarden_sink_insert_seconds", "Duration of one ClickHouse batch insert.", ["table"],
    buckets=_LATENCY_BUCKETS, registry=REGISTRY,
)
WEBHOOK_OUTCOMES = Counter(
    "aiwarden_webhook_outcomes_total", "Containment webhook attempts and decisions, per outcome "
    "(delivered, retry, failed, held, dry_run, expired, …).", ["outcome"], registry=REGISTRY,
)
STAGE_LATENCY = Histogram(
    "aiwarden_stage_latency_seconds", "Time from a record's Kafka timestamp to the end of a stage "
    "(normalize, detect, correlate, sink).", ["stage"], buckets=_LATENCY_BUCKETS, registry=REGISTRY,
)

PIPELINE_RECORDS = Counter(
    "aiwarden_pipeline_records_total", "Records taken from Kafka by the pipeline engine, per input topic.",
    ["topic"], registry=REGISTRY,
)
PIPELINE_TRANSACTIONS = Counter(
    "aiwarden_pipeline_transactions_total", "Kafka transactions of the pipeline engine, per outcome "
    "(committed, aborted).", ["outcome"], registry=REGISTRY,
)
PIPELINE_COMMIT_SECONDS = Histogram(
    "aiwarden_pipeline_commit_seconds", "Duration of one pipeline commit (changelog records, offsets, "
    "transaction commit).", buckets=_LATENCY_BUCKETS, registry=REGISTRY,
)


def exposition() -> bytes:
    """The registry in Prometheus' text exposition format."""
    return generate_latest(REGISTRY)


def value(name: str, **labels: str) -> float:
    """The current value of one sample (0.0 when absent), for tests and the console."""
    sample = REGISTRY.get_sample_value(name, labels)
    return 0.0 if sample is None else sample
