-- Normalized events, one row per event; the raw record kept. Deduplicated by event_id:
-- ReplacingMergeTree collapses redelivered rows at merge time, and insert deduplication tokens
-- drop a retried batch at once. Hunters read with FINAL (or GROUP BY event_id) for exact counts.
CREATE TABLE IF NOT EXISTS ${database}.events ${on_cluster}
(
    event_id String,
    time_ms Int64,
    time DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(time_ms),
    source LowCardinality(String),
    class_uid UInt16,
    activity LowCardinality(String),
    severity_id UInt8,
    message String,
    principal String,
    api_key_id String,
    user_agent String,
    cluster LowCardinality(String),
    namespace LowCardinality(String),
    pod String,
    container_id String,
    image LowCardinality(String),
    host LowCardinality(String),
    process_name LowCardinality(String),
    process_cmdline String,
    parent_process_name LowCardinality(String),
    file_path String,
    cloud_provider LowCardinality(String),
    account_id LowCardinality(String),
    region LowCardinality(String),
    api_service LowCardinality(String),
    api_operation LowCardinality(String),
    api_status LowCardinality(String),
    request_id String,
    resource String,
    src_ip String,
    dst_ip String,
    dst_port UInt16,
    dst_host String,
    bytes_out UInt64,
    model_id LowCardinality(String),
    model_endpoint LowCardinality(String),
    tokens_in UInt32,
    tokens_out UInt32,
    latency_ms UInt32,
    prompt String CODEC(ZSTD(3)),
    entity_id String,
    entities Array(String),
    rule LowCardinality(String),
    tags Array(LowCardinality(String)),
    extra Map(String, String),
    raw String CODEC(ZSTD(3)),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_event_id event_id TYPE bloom_filter(0.001) GRANULARITY 4,
    INDEX idx_entities entities TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_principal principal TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_api_key api_key_id TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_src_ip src_ip TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_dst_host dst_host TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ${replacing_engine}(ingested_at)
PARTITION BY toYYYYMM(time)
ORDER BY (entity_id, time, event_id)
TTL toDateTime(time) + INTERVAL ${ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS ${database}.dead_letters ${on_cluster}
(
    time_ms Int64,
    time DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(time_ms),
    reason String,
    source LowCardinality(String),
    stage LowCardinality(String),
    position Map(String, String),
    raw String CODEC(ZSTD(3)),
    raw_encoding LowCardinality(String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ${merge_engine}
PARTITION BY toYYYYMM(time)
ORDER BY (source, time)
TTL toDateTime(time) + INTERVAL ${ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;
