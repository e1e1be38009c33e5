-- ---
-- description: Top principals and API keys by inference token volume in a window (hourly rollup)
-- notes: >
--   Reads the inference_hourly rollup (migration 0003), so the window is widened to whole hours and
--   a batch redelivered under a new insert token counts twice; exact counts come from events FINAL.
--   The Bedrock invocation log and CloudTrail can both report one call: pass source to keep one.
-- params:
--   since: {type: DateTime64(3), default: 1d, help: "start of the window: a time, or a duration ago (30m, 12h, 7d)"}
--   until: {type: DateTime64(3), default: now, help: "end of the window (exclusive)"}
--   source: {type: String, default: "", help: "only this event source (bedrock, cloudtrail, gateway); empty: all"}
--   limit: {type: UInt32, default: 20, help: "rows returned"}
-- ---
SELECT
    principal,
    api_key_id,
    sum(tokens_in) AS tokens_in,
    sum(tokens_out) AS tokens_out,
    tokens_in + tokens_out AS tokens,
    sum(requests) AS requests,
    arraySort(groupUniqArray(model_id)) AS models,
    arraySort(groupUniqArray(source)) AS sources,
    uniqMerge(src_ips) AS networks,
    min(first_seen) AS first_seen,
    max(last_seen) AS last_seen
FROM inference_hourly
WHERE hour >= toStartOfHour({since:DateTime64(3)})
  AND hour < {until:DateTime64(3)}
  AND ({source:String} = '' OR source = {source:String})
GROUP BY principal, api_key_id
ORDER BY tokens DESC, requests DESC, principal, api_key_id
LIMIT {limit:UInt32}
