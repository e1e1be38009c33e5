-- ---
-- description: Top outbound destinations by bytes in a window, with the workloads that reach them (hourly rollup)
-- notes: >
--   Reads the egress_hourly rollup (migration 0003): Network Activity connects and DNS lookups per
--   workload, destination and hour; the window is widened to whole hours. Internal destinations
--   (private and loopback IPs, cluster-local and .internal names) are left out unless asked for.
-- params:
--   since: {type: DateTime64(3), default: 1d, help: "start of the window: a time, or a duration ago"}
--   until: {type: DateTime64(3), default: now, help: "end of the window (exclusive)"}
--   namespace: {type: String, default: "", help: "only workloads in this namespace; empty: all"}
--   include_internal: {type: UInt8, default: 0, help: "1: keep private IPs and cluster-local names"}
--   limit: {type: UInt32, default: 20, help: "rows returned"}
-- ---
SELECT
    destination,
    sum(bytes_out) AS bytes_out,
    sum(connects) AS connects,
    sum(dns_queries) AS dns_queries,
    uniqExact(workload) AS workloads,
    arraySlice(arraySort(groupUniqArray(workload)), 1, 10) AS sample_workloads,
    arraySort(groupUniqArray(dst_port)) AS ports,
    uniqMerge(pods) AS pods,
    min(first_seen) AS first_seen,
    max(last_seen) AS last_seen
FROM egress_hourly
WHERE hour >= toStartOfHour({since:DateTime64(3)})
  AND hour < {until:DateTime64(3)}
  AND ({namespace:String} = '' OR namespace = {namespace:String})
  AND destination != ''
  AND (
        {include_internal:UInt8} = 1
        OR NOT (
            (isIPv4String(destination) AND (
                isIPAddressInRange(destination, '10.0.0.0/8')
                OR isIPAddressInRange(destination, '172.16.0.0/12')
                OR isIPAddressInRange(destination, '192.168.0.0/16')
                OR isIPAddressInRange(destination, '127.0.0.0/8')
                OR isIPAddressInRange(destination, '169.254.0.0/16')))
            OR (isIPv6String(destination) AND (
                isIPAddressInRange(destination, 'fc00::/7')
                OR isIPAddressInRange(destination, 'fe80::/10')
                OR destination = '::1'))
            OR destination = 'localhost'
            OR endsWith(destination, '.cluster.local')
            OR endsWith(destination, '.svc')
            OR endsWith(destination, '.internal')
            OR endsWith(destination, '.local')
        )
  )
GROUP BY destination
ORDER BY bytes_out DESC, connects DESC, destination
LIMIT {limit:UInt32}
