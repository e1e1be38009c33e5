-- ---
-- description: Every event, finding and alert that involves an entity id, in time order
-- notes: >
--   The entity is a kind:value id (pod:ml-prod/vllm-0, principal:arn:..., apikey:key-..., ip:10.0.3.17);
--   a row matches when it is the row's primary entity or one of its entities. Events are deduplicated
--   by event_id (redelivered copies are identical); findings and alerts are read FINAL (alerts at
--   their latest version, placed at first_seen). Severity of events is OCSF's.
-- params:
--   entity: {type: String, help: "entity id, e.g. pod:ml-prod/vllm-0"}
--   since: {type: DateTime64(3), default: 30d, help: "start of the window: a time, or a duration ago"}
--   until: {type: DateTime64(3), default: now, help: "end of the window (exclusive)"}
--   limit: {type: UInt32, default: 1000, help: "rows returned"}
-- ---
SELECT time, kind, id, source, what, severity, summary
FROM
(
    SELECT
        time,
        'event' AS kind,
        event_id AS id,
        toString(source) AS source,
        toString(activity) AS what,
        ['unknown', 'informational', 'low', 'medium', 'high', 'critical', 'fatal'][least(severity_id, 6) + 1] AS severity,
        message AS summary
    FROM
    (
        -- Two reads, not one OR: each uses its index (the sort key, the entities bloom filter).
        SELECT * FROM events
        WHERE entity_id = {entity:String} AND time >= {since:DateTime64(3)} AND time < {until:DateTime64(3)}
        UNION ALL
        SELECT * FROM events
        WHERE has(entities, {entity:String}) AND time >= {since:DateTime64(3)} AND time < {until:DateTime64(3)}
    )
    LIMIT 1 BY event_id

    UNION ALL

    SELECT
        time,
        'finding' AS kind,
        finding_id AS id,
        toString(detector) AS source,
        toString(title) AS what,
        toString(severity) AS severity,
        summary
    FROM findings FINAL
    WHERE (entity_id = {entity:String} OR has(entities, {entity:String}))
      AND time >= {since:DateTime64(3)} AND time < {until:DateTime64(3)}

    UNION ALL

    SELECT
        first_seen_time AS time,
        'alert' AS kind,
        alert_id AS id,
        arrayStringConcat(detectors, ',') AS source,
        concat(toString(status), ' v', toString(version), ' risk ', toString(round(risk_score, 1))) AS what,
        toString(severity) AS severity,
        summary
    FROM alerts FINAL
    WHERE (primary_entity = {entity:String} OR has(entities, {entity:String}))
      AND last_seen_time >= {since:DateTime64(3)} AND first_seen_time < {until:DateTime64(3)}
)
ORDER BY time, kind, id
LIMIT {limit:UInt32}
