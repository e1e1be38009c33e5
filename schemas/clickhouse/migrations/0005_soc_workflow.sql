-- The SOC workflow: alert triage changes (one row per change: status, resolution, assignee, comment),
-- the audit log of human actions, and findings an exception suppressed. Rows are only ever added:
-- nothing in aiwarden updates or deletes them (the audit log cannot be edited from the product). Plain
-- MergeTree: a retried sink batch is dropped by its insert deduplication token.
CREATE TABLE IF NOT EXISTS ${database}.alert_triage ${on_cluster}
(
    triage_id String,
    alert_id String,
    time_ms Int64,
    time DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(time_ms),
    actor String,
    status LowCardinality(String),
    resolution LowCardinality(String),
    assignee String,
    assigned UInt8,
    comment String
)
ENGINE = ${merge_engine}
PARTITION BY toYYYYMM(time)
ORDER BY (alert_id, time_ms, triage_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS ${database}.audit_log ${on_cluster}
(
    audit_id String,
    time_ms Int64,
    time DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(time_ms),
    actor String,
    role LowCardinality(String),
    via LowCardinality(String),
    source String,
    action LowCardinality(String),
    target String,
    outcome LowCardinality(String),
    detail String
)
ENGINE = ${merge_engine}
PARTITION BY toYYYYMM(time)
ORDER BY (time_ms, audit_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS ${database}.suppressed_findings ${on_cluster}
(
    finding_id String,
    exception_id String,
    detector LowCardinality(String),
    entity_id String,
    time_ms Int64,
    time DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(time_ms)
)
ENGINE = ${merge_engine}
PARTITION BY toYYYYMM(time)
ORDER BY (finding_id, exception_id)
TTL toDateTime(time) + INTERVAL ${ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;
