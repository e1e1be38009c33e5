-- ---
-- description: The fleet's AI package versions, where they run, how many are in use and what they carry
-- notes: >
--   Reads the vulnerabilities table FINAL, AI packages only. One row per package version: the workloads that
--   have it (running ones are pods or containers; image:… ones are scanned images nothing runs yet), those
--   where it is in use, its known vulnerabilities (worst severity first) and a few of its images.
-- params:
--   package: {type: String, default: "", help: "only this package ('' for all)"}
--   limit: {type: UInt32, default: 1000, help: "rows returned"}
-- ---
SELECT
    package,
    package_version,
    any(ecosystem) AS ecosystem,
    uniqExact(workload) AS workloads,
    uniqExactIf(workload, NOT startsWith(workload, 'image:')) AS running_workloads,
    uniqExactIf(workload, in_use = 1) AS in_use_workloads,
    uniqExactIf(workload, exposed = 1) AS exposed_workloads,
    groupUniqArrayIf(vulnerability_id, vulnerability_id != '') AS vulnerabilities,
    if(countIf(vulnerability_id != '') = 0, '', ['UNKNOWN', 'LOW', 'MEDIUM', 'HIGH', 'CRITICAL'][
        max(indexOf(['UNKNOWN', 'LOW', 'MEDIUM', 'HIGH', 'CRITICAL'], severity))]) AS worst_severity,
    groupUniqArray(5)(image) AS images
FROM vulnerabilities FINAL
WHERE ai_package = 1
  AND ({package:String} = '' OR package = {package:String})
GROUP BY package, package_version
ORDER BY package, workloads DESC, package_version
LIMIT {limit:UInt32}
