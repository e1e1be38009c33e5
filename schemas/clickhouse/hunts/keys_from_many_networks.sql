-- ---
-- description: API keys used from at least N distinct source IPs in a window (shared or stolen keys)
-- notes: >
--   Reads events FINAL, so a redelivered event is counted once. Every event that carries both an API
--   key id and a source IP counts (gateway requests, Bedrock and CloudTrail calls).
-- params:
--   since: {type: DateTime64(3), default: 1d, help: "start of the window: a time, or a duration ago"}
--   until: {type: DateTime64(3), default: now, help: "end of the window (exclusive)"}
--   min_networks: {type: UInt32, default: 3, help: "distinct source IPs at least"}
--   limit: {type: UInt32, default: 100, help: "rows returned"}
-- ---
SELECT
    api_key_id,
    uniqExact(src_ip) AS networks,
    count() AS requests,
    arraySort(groupUniqArray(20)(src_ip)) AS src_ips,
    arraySort(groupUniqArray(10)(principal)) AS principals,
    arraySort(groupUniqArray(10)(user_agent)) AS user_agents,
    arraySort(groupUniqArray(10)(toString(model_id))) AS models,
    sum(tokens_in) + sum(tokens_out) AS tokens,
    min(time) AS first_seen,
    max(time) AS last_seen
FROM events FINAL
WHERE time >= {since:DateTime64(3)} AND time < {until:DateTime64(3)}
  AND api_key_id != '' AND src_ip != ''
GROUP BY api_key_id
HAVING networks >= {min_networks:UInt32}
ORDER BY networks DESC, requests DESC, api_key_id
LIMIT {limit:UInt32}
