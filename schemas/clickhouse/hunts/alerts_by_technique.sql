-- ---
-- description: Alerts per MITRE ATLAS / ATT&CK technique in a window, with their riskiest alerts
-- notes: >
--   Reads alerts FINAL (each alert once, at its latest version). An alert counts under each of its
--   techniques; a window matches alerts active in it (last seen after since, first seen before until).
--   technique filters to one technique and its sub-techniques (AML.T0024 matches AML.T0024.002).
-- params:
--   since: {type: DateTime64(3), default: 7d, help: "start of the window: a time, or a duration ago"}
--   until: {type: DateTime64(3), default: now, help: "end of the window (exclusive)"}
--   technique: {type: String, default: "", help: "only this technique (and its sub-techniques); empty: all"}
--   limit: {type: UInt32, default: 100, help: "rows returned"}
-- ---
SELECT
    technique,
    count() AS alerts,
    countIf(status = 'open') AS open,
    max(risk_score) AS max_risk,
    round(avg(risk_score), 1) AS avg_risk,
    arraySort(groupUniqArray(toString(severity))) AS severities,
    uniqExact(primary_entity) AS entities,
    arrayMap(x -> x.2, arraySlice(arrayReverseSort(groupArray((risk_score, alert_id))), 1, 5)) AS riskiest_alerts,
    min(first_seen_time) AS first_seen,
    max(last_seen_time) AS last_seen
FROM
(
    SELECT alert_id, status, risk_score, severity, primary_entity, first_seen_time, last_seen_time,
           arrayDistinct(arrayConcat(atlas_techniques, attack_techniques)) AS techniques
    FROM alerts FINAL
    WHERE last_seen_time >= {since:DateTime64(3)} AND first_seen_time < {until:DateTime64(3)}
)
ARRAY JOIN techniques AS technique
WHERE {technique:String} = ''
   OR technique = {technique:String}
   OR startsWith(technique, concat({technique:String}, '.'))
GROUP BY technique
ORDER BY alerts DESC, max_risk DESC, technique
LIMIT {limit:UInt32}
