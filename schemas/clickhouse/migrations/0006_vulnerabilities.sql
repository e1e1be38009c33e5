-- Vulnerabilities per workload: the latest state of each (workload, package, vulnerability), from the topic
-- aiwarden.vulnerabilities (the detect stage re-emits a row, with a newer `updated`, whenever its state changes:
-- a new scan, the package seen in use, the workload exposed). A package with no known vulnerability has one row
-- with vulnerability_id ''. State, not a time series: no partitions, no TTL; read FINAL.
--
-- Times arrive as epoch milliseconds (ints, or null), as the inventory's do: `updated`, `in_use_first_seen` and
-- `in_use_last_seen` keep them, and the *_time columns are the same instants as DateTime64 for hunters.
CREATE TABLE IF NOT EXISTS ${database}.vulnerabilities ${on_cluster}
(
    workload String,
    image String,
    image_digest String,
    namespace LowCardinality(String),
    package String,
    package_version String,
    purl String,
    ecosystem LowCardinality(String),
    ai_package UInt8,
    vulnerability_id String,
    severity LowCardinality(String),
    cvss Nullable(Float32),
    fixed_version String,
    in_use UInt8,
    in_use_first_seen Nullable(Int64),
    in_use_last_seen Nullable(Int64),
    in_use_first_seen_time Nullable(DateTime64(3, 'UTC')) DEFAULT fromUnixTimestamp64Milli(in_use_first_seen),
    in_use_last_seen_time Nullable(DateTime64(3, 'UTC')) DEFAULT fromUnixTimestamp64Milli(in_use_last_seen),
    exposed UInt8,
    ai_asset UInt8,
    priority LowCardinality(String),
    priority_score UInt8,
    reasons Array(String),
    scanner String,
    updated Int64,
    updated_time DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(updated),
    INDEX idx_vulnerability_id vulnerability_id TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_image image TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ${replacing_engine}(updated)
ORDER BY (workload, package, vulnerability_id)
SETTINGS non_replicated_deduplication_window = 10000;
