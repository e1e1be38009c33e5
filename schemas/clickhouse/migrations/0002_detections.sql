-- What the detection side writes: findings (one detector's verdict), alerts (correlated findings,
-- versioned), the AI asset inventory (latest state per asset) and containment actions (one row per
-- delivery attempt). Columns follow schemas/findings.py and the ARCHITECTURE data model.
--
-- Idempotence: findings and alerts carry deterministic ids and are ReplacingMergeTree, so a
-- redelivered row collapses at merge time; read them with FINAL for exact counts. An alert is
-- updated by re-inserting it with a higher version: FINAL returns the latest version only.
-- Insert deduplication tokens (non_replicated_deduplication_window) drop a retried batch at once.
-- Placeholders (database, on_cluster, engines, ttl_days) are filled in by infra/clickhouse/migrate.py.

CREATE TABLE IF NOT EXISTS ${database}.findings ${on_cluster}
(
    finding_id String,
    detector LowCardinality(String),
    title LowCardinality(String),
    maturity LowCardinality(String),
    severity LowCardinality(String),
    time_ms Int64,
    time DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(time_ms),
    entity_id String,
    entities Array(String),
    summary String,
    tactics Array(LowCardinality(String)),
    atlas_techniques Array(LowCardinality(String)),
    attack_techniques Array(LowCardinality(String)),
    evidence_event_ids Array(String),
    anomaly_score Float32,
    ai_asset UInt8,
    public_exposure UInt8,
    attributes Map(String, String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_finding_id finding_id TYPE bloom_filter(0.001) GRANULARITY 4,
    INDEX idx_entities entities TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_atlas atlas_techniques TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_attack attack_techniques TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_evidence evidence_event_ids TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ${replacing_engine}(ingested_at)
PARTITION BY toYYYYMM(time)
ORDER BY (entity_id, time, finding_id)
TTL toDateTime(time) + INTERVAL ${ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

-- Alerts are case records: kept past the events TTL (no TTL here). Partitioned by the month the
-- alert was first seen, which every version of an alert shares; FINAL collapses versions.
CREATE TABLE IF NOT EXISTS ${database}.alerts ${on_cluster}
(
    alert_id String,
    first_seen Int64,
    last_seen Int64,
    first_seen_time DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(first_seen),
    last_seen_time DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(last_seen),
    severity LowCardinality(String),
    risk_score Float32,
    detectors Array(LowCardinality(String)),
    atlas_techniques Array(LowCardinality(String)),
    attack_techniques Array(LowCardinality(String)),
    tactics Array(LowCardinality(String)),
    entities Array(String),
    primary_entity String,
    summary String,
    evidence_event_ids Array(String),
    finding_ids Array(String),
    maturity LowCardinality(String),
    status LowCardinality(String),
    version UInt32,
    updated_ms Int64,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_alert_id alert_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_entities entities TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_primary primary_entity TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_atlas atlas_techniques TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attack attack_techniques TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_finding_ids finding_ids TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_last_seen last_seen_time TYPE minmax GRANULARITY 1
)
ENGINE = ${replacing_engine}(version)
PARTITION BY toYYYYMM(first_seen_time)
ORDER BY alert_id
SETTINGS non_replicated_deduplication_window = 10000;

-- The AI asset inventory: one row per asset version; the highest updated_ms wins (read FINAL).
-- State, not a time series: no partitions, no TTL. first_seen and last_seen are epoch ms.
CREATE TABLE IF NOT EXISTS ${database}.inventory ${on_cluster}
(
    asset_id String,
    kind LowCardinality(String),
    name String,
    namespace LowCardinality(String),
    image LowCardinality(String),
    runtimes Array(LowCardinality(String)),
    models Array(LowCardinality(String)),
    principals Array(String),
    first_seen Int64,
    last_seen Int64,
    first_seen_time DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(first_seen),
    last_seen_time DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(last_seen),
    sanctioned UInt8,
    public_exposure UInt8,
    attributes Map(String, String),
    updated_ms Int64,
    INDEX idx_principals principals TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_models models TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ${replacing_engine}(updated_ms)
ORDER BY asset_id
SETTINGS non_replicated_deduplication_window = 10000;

-- Containment actions: an append-only log, one row per delivery attempt and status change
-- (pending, dry_run, delivered, failed, held, retrying). The latest row per action_id is its state:
-- argMax(status, time) GROUP BY action_id.
CREATE TABLE IF NOT EXISTS ${database}.actions ${on_cluster}
(
    action_id String,
    alert_id String,
    action LowCardinality(String),
    target String,
    status LowCardinality(String),
    attempt UInt16,
    http_status UInt16,
    latency_ms UInt32,
    time_ms Int64,
    time DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(time_ms),
    detail String,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_alert_id alert_id TYPE bloom_filter(0.001) GRANULARITY 4,
    INDEX idx_target target TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ${merge_engine}
PARTITION BY toYYYYMM(time)
ORDER BY (action_id, time)
TTL toDateTime(time) + INTERVAL ${ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;
