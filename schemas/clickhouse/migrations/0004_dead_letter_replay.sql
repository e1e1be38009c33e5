-- Dead letters that always fit (a truncated letter keeps its original's length and SHA-256) and
-- `aiwarden dlq replay` run once per letter: each replay is recorded in dlq_replays before it is
-- reported, and a letter found there is never re-published.
ALTER TABLE ${database}.dead_letters ${on_cluster}
    ADD COLUMN IF NOT EXISTS letter_id String DEFAULT '',
    ADD COLUMN IF NOT EXISTS raw_bytes UInt64 DEFAULT length(raw),
    ADD COLUMN IF NOT EXISTS raw_sha256 String DEFAULT '',
    ADD COLUMN IF NOT EXISTS truncated Bool DEFAULT false;

CREATE TABLE IF NOT EXISTS ${database}.dlq_replays ${on_cluster}
(
    letter_id String,
    replayed_at DateTime64(3, 'UTC') DEFAULT now64(3),
    source LowCardinality(String),
    topic LowCardinality(String),
    partition Int32,
    offset Int64,
    reason String
)
ENGINE = ${merge_engine}
ORDER BY letter_id
SETTINGS non_replicated_deduplication_window = 10000;
