-- ---
-- description: Dead-lettered records per source, stage and reason in a window, with a sample
-- notes: >
--   Reasons that differ only in numbers (offsets, line numbers, sizes) are grouped together; the
--   first reason seen is shown as an example, with a sample of its raw record.
-- params:
--   since: {type: DateTime64(3), default: 1d, help: "start of the window: a time, or a duration ago"}
--   until: {type: DateTime64(3), default: now, help: "end of the window (exclusive)"}
--   source: {type: String, default: "", help: "only this source; empty: all"}
--   limit: {type: UInt32, default: 100, help: "rows returned"}
-- ---
SELECT
    source,
    stage,
    replaceRegexpAll(reason, '[0-9]+', 'N') AS reason_pattern,
    count() AS records,
    argMin(reason, time) AS example_reason,
    argMin(substring(raw, 1, 200), time) AS example_raw,
    arraySort(groupUniqArray(toString(raw_encoding))) AS encodings,
    min(time) AS first_seen,
    max(time) AS last_seen
FROM dead_letters
WHERE time >= {since:DateTime64(3)} AND time < {until:DateTime64(3)}
  AND ({source:String} = '' OR source = {source:String})
GROUP BY source, stage, reason_pattern
ORDER BY records DESC, source, stage, reason_pattern
LIMIT {limit:UInt32}
