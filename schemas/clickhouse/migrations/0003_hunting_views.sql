-- Hourly rollups for the common hunts, kept up to date by materialized views on events.
--
-- Each view sees one inserted block at a time and writes that block's partial sums, so a key has
-- several rows until merges combine them: ALWAYS aggregate again when reading (sum() of the
-- SimpleAggregateFunction columns, min()/max() of first_seen/last_seen, uniqMerge() of the
-- AggregateFunction states), never read the rows as they are.
--
-- Engines: the targets use the generic merge engine so that the cluster variant (which only knows
-- MergeTree and ReplacingMergeTree placeholders) gets replicated tables; their columns are
-- aggregate types, so the same tables work unchanged under (Replicated)AggregatingMergeTree when
-- the migration runner gains that placeholder. The read queries below are correct either way.
--
-- Redelivery: a batch retried with the same insert_deduplication_token is dropped before the views
-- run, but a batch redelivered under a new token is counted again here (events FINAL is not). These
-- rollups are for ranking and trends; exact counts come from events FINAL.
--
-- inference_hourly: inference volume per principal and API key per hour, from API Activity events
-- (class 6003) that name a model. Both the Bedrock invocation log and CloudTrail may report the
-- same call: keep source in the key and filter on it to avoid counting a call twice.
--
--   SELECT principal, api_key_id, sum(requests) AS requests, sum(tokens_in) AS tokens_in,
--          sum(tokens_out) AS tokens_out, uniqMerge(src_ips) AS networks,
--          min(first_seen) AS first_seen, max(last_seen) AS last_seen
--   FROM aiwarden.inference_hourly
--   WHERE hour >= toStartOfHour(now() - INTERVAL 1 DAY)
--   GROUP BY principal, api_key_id
--   ORDER BY tokens_in + tokens_out DESC LIMIT 20

CREATE TABLE IF NOT EXISTS ${database}.inference_hourly ${on_cluster}
(
    hour DateTime('UTC'),
    source LowCardinality(String),
    principal String,
    api_key_id String,
    model_id LowCardinality(String),
    requests SimpleAggregateFunction(sum, UInt64),
    tokens_in SimpleAggregateFunction(sum, UInt64),
    tokens_out SimpleAggregateFunction(sum, UInt64),
    src_ips AggregateFunction(uniq, String),
    first_seen SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    INDEX idx_principal principal TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_api_key api_key_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ${aggregating_engine}
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, principal, api_key_id, model_id, source)
TTL hour + INTERVAL ${ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.inference_hourly_mv ${on_cluster}
TO ${database}.inference_hourly
AS SELECT
    toStartOfHour(time) AS hour,
    source,
    principal,
    api_key_id,
    model_id,
    toUInt64(count()) AS requests,
    toUInt64(sum(tokens_in)) AS tokens_in,
    toUInt64(sum(tokens_out)) AS tokens_out,
    uniqState(src_ip) AS src_ips,
    min(time) AS first_seen,
    max(time) AS last_seen
FROM ${database}.events
WHERE class_uid = 6003 AND model_id != ''
GROUP BY hour, source, principal, api_key_id, model_id;

-- egress_hourly: outbound network activity per workload per destination per hour, from Network
-- Activity (4001, inbound listen/accept excluded) and DNS Activity (4003) events. The workload is
-- namespace/deployment: the pod name without Kubernetes' generated suffixes (replica-set hash and
-- pod id, which use the alphabet bcdfghjklmnpqrstvwxz2456789, or a StatefulSet ordinal); the host
-- name for events outside Kubernetes. The destination is dst_host when known, else dst_ip.
--
--   SELECT workload, destination, sum(connects) AS connects, sum(dns_queries) AS dns_queries,
--          sum(bytes_out) AS bytes_out, uniqMerge(pods) AS pods, max(last_seen) AS last_seen
--   FROM aiwarden.egress_hourly
--   WHERE hour >= toStartOfHour(now() - INTERVAL 1 DAY)
--   GROUP BY workload, destination
--   ORDER BY bytes_out DESC LIMIT 20

CREATE TABLE IF NOT EXISTS ${database}.egress_hourly ${on_cluster}
(
    hour DateTime('UTC'),
    cluster LowCardinality(String),
    namespace LowCardinality(String),
    workload String,
    image LowCardinality(String),
    destination String,
    dst_port UInt16,
    connects SimpleAggregateFunction(sum, UInt64),
    dns_queries SimpleAggregateFunction(sum, UInt64),
    bytes_out SimpleAggregateFunction(sum, UInt64),
    pods AggregateFunction(uniq, String),
    first_seen SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    INDEX idx_destination destination TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_workload workload TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ${aggregating_engine}
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, cluster, namespace, workload, destination, dst_port, image)
TTL hour + INTERVAL ${ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.egress_hourly_mv ${on_cluster}
TO ${database}.egress_hourly
AS SELECT
    toStartOfHour(time) AS hour,
    cluster,
    namespace,
    if(pod != '',
       concat(namespace, '/', replaceRegexpOne(pod,
           '(-[bcdfghjklmnpqrstvwxz2456789]{6,10})?-[bcdfghjklmnpqrstvwxz2456789]{5}\\z|-[0-9]+\\z', '')),
       host) AS workload,
    image,
    if(dst_host != '', dst_host, dst_ip) AS destination,
    dst_port,
    toUInt64(countIf(class_uid = 4001)) AS connects,
    toUInt64(countIf(class_uid = 4003)) AS dns_queries,
    toUInt64(sum(bytes_out)) AS bytes_out,
    uniqState(pod) AS pods,
    min(time) AS first_seen,
    max(time) AS last_seen
FROM ${database}.events
WHERE class_uid = 4003 OR (class_uid = 4001 AND activity NOT IN ('network_listen', 'network_accept'))
GROUP BY hour, cluster, namespace, workload, image, destination, dst_port;
