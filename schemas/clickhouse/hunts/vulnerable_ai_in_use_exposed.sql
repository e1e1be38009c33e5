-- ---
-- description: Vulnerable AI packages in use on publicly exposed workloads, highest priority first
-- notes: >
--   Reads the vulnerabilities table FINAL (the latest state of each workload, package and vulnerability).
--   In use: the runtime showed a process or file of the package on the workload; exposed: the exposure
--   detector saw the workload reachable from the internet. One row per vulnerability, with the priority
--   aiwarden gave it and the reasons behind it.
-- params:
--   min_severity: {type: String, default: LOW, help: "lowest severity listed: UNKNOWN, LOW, MEDIUM, HIGH or CRITICAL"}
--   namespace: {type: String, default: "", help: "only this namespace ('' for all)"}
--   limit: {type: UInt32, default: 500, help: "rows returned"}
-- ---
SELECT
    workload,
    namespace,
    image,
    package,
    package_version,
    vulnerability_id,
    severity,
    cvss,
    fixed_version,
    priority,
    priority_score,
    reasons,
    in_use_first_seen_time AS in_use_since,
    in_use_last_seen_time AS in_use_last_seen,
    ai_asset,
    scanner,
    updated_time AS updated
FROM vulnerabilities FINAL
WHERE ai_package = 1
  AND in_use = 1
  AND exposed = 1
  AND vulnerability_id != ''
  AND indexOf(['UNKNOWN', 'LOW', 'MEDIUM', 'HIGH', 'CRITICAL'], severity)
      >= indexOf(['UNKNOWN', 'LOW', 'MEDIUM', 'HIGH', 'CRITICAL'], upper({min_severity:String}))
  AND ({namespace:String} = '' OR namespace = {namespace:String})
ORDER BY priority_score DESC, cvss DESC NULLS LAST, workload, package, vulnerability_id
LIMIT {limit:UInt32}
