-- ---
-- description: AI assets (model servers, notebooks, agents, gateways) first seen since a time, riskiest first
-- notes: >
--   Reads the inventory FINAL (the latest version of each asset). Unsanctioned and publicly exposed
--   assets come first.
-- params:
--   since: {type: DateTime64(3), default: 7d, help: "first seen at or after: a time, or a duration ago (7d)"}
--   unsanctioned_only: {type: UInt8, default: 0, help: "1: only assets not marked sanctioned"}
--   limit: {type: UInt32, default: 500, help: "rows returned"}
-- ---
SELECT
    asset_id,
    kind,
    name,
    namespace,
    image,
    runtimes,
    models,
    principals,
    sanctioned,
    public_exposure,
    first_seen_time AS first_seen,
    last_seen_time AS last_seen,
    attributes
FROM inventory FINAL
WHERE first_seen_time >= {since:DateTime64(3)}
  AND ({unsanctioned_only:UInt8} = 0 OR sanctioned = 0)
ORDER BY public_exposure DESC, sanctioned ASC, first_seen DESC, asset_id
LIMIT {limit:UInt32}
