-- ---
-- description: Workloads running a vulnerable package that is in use while a fixed version exists
-- notes: >
--   Reads the vulnerabilities table FINAL. One row per workload and package: the vulnerabilities a fix exists
--   for, the worst severity, the highest CVSS, the fixed versions the scanners name, and whether the workload
--   is exposed. The upgrades that pay first, in priority order.
-- params:
--   ai_only: {type: UInt8, default: 0, help: "1: only packages in the AI package list"}
--   limit: {type: UInt32, default: 500, help: "rows returned"}
-- ---
SELECT
    workload,
    any(namespace) AS namespace,
    any(image) AS image,
    package,
    package_version,
    groupUniqArray(vulnerability_id) AS vulnerabilities,
    ['UNKNOWN', 'LOW', 'MEDIUM', 'HIGH', 'CRITICAL'][
        max(indexOf(['UNKNOWN', 'LOW', 'MEDIUM', 'HIGH', 'CRITICAL'], severity))] AS worst_severity,
    max(cvss) AS max_cvss,
    arrayStringConcat(arraySort(groupUniqArray(fixed_version)), ' | ') AS fixed_versions,
    max(priority_score) AS priority_score,
    max(exposed) AS exposed,
    min(in_use_first_seen_time) AS in_use_since,
    max(in_use_last_seen_time) AS in_use_last_seen
FROM vulnerabilities FINAL
WHERE in_use = 1
  AND vulnerability_id != ''
  AND fixed_version != ''
  AND ({ai_only:UInt8} = 0 OR ai_package = 1)
GROUP BY workload, package, package_version
ORDER BY priority_score DESC, max_cvss DESC NULLS LAST, workload, package
LIMIT {limit:UInt32}
