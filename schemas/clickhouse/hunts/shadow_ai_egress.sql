-- ---
-- description: Workloads outside sanctioned namespaces reaching third-party AI APIs (shadow AI egress)
-- notes: >
--   Reads events FINAL. A workload reaches an AI host when it looks the host up (DNS Activity), or
--   connects to it (Network Activity) by name, or by an address that the same pod or host resolved
--   from an AI host name in the window (so shared CDN addresses are not blamed on other workloads).
--   A host matches itself and its subdomains (openai.azure.com matches x.openai.azure.com).
--   The workload is namespace/deployment (pod name without Kubernetes' generated suffixes), else the host.
-- params:
--   since: {type: DateTime64(3), default: 1d, help: "start of the window: a time, or a duration ago"}
--   until: {type: DateTime64(3), default: now, help: "end of the window (exclusive)"}
--   hosts:
--     type: Array(String)
--     help: "AI API host names (comma-separated, or a ClickHouse array literal)"
--     default: [api.openai.com, api.anthropic.com, generativelanguage.googleapis.com, api.mistral.ai,
--               api.cohere.com, api.cohere.ai, api.groq.com, api.together.xyz, api.together.ai,
--               api.deepseek.com, openrouter.ai, api.perplexity.ai, api.x.ai, api.fireworks.ai,
--               api.replicate.com, api-inference.huggingface.co, openai.azure.com]
--   sanctioned_namespaces:
--     type: Array(String)
--     help: "namespaces allowed to call these APIs (the gateway's); comma-separated"
--     default: [ai-platform]
--   limit: {type: UInt32, default: 200, help: "rows returned"}
-- ---
WITH
    window_events AS
    (
        SELECT time, class_uid, activity, cluster, namespace, pod, host, image, src_ip, dst_ip, dst_host,
               bytes_out, entities
        FROM events FINAL
        WHERE time >= {since:DateTime64(3)} AND time < {until:DateTime64(3)}
          AND (class_uid = 4003 OR (class_uid = 4001 AND activity NOT IN ('network_listen', 'network_accept')))
          AND NOT has({sanctioned_namespaces:Array(String)}, toString(namespace))
    ),
    lookups AS
    (
        SELECT *
        FROM window_events
        WHERE dst_host != ''
          AND arrayExists(h -> dst_host = h OR endsWith(dst_host, concat('.', h)), {hosts:Array(String)})
    ),
    resolved AS
    (
        SELECT cluster, namespace, pod, host, address, any(dst_host) AS resolved_host
        FROM lookups
        ARRAY JOIN arrayMap(e -> substring(e, 4), arrayFilter(
            e -> startsWith(e, 'ip:') AND e != concat('ip:', src_ip) AND e != concat('ip:', dst_ip),
            entities)) AS address
        WHERE class_uid = 4003
        GROUP BY cluster, namespace, pod, host, address
    ),
    reached AS
    (
        SELECT time, class_uid, cluster, namespace, pod, host, image, dst_host AS ai_host, bytes_out
        FROM lookups
        UNION ALL
        SELECT c.time, c.class_uid, c.cluster, c.namespace, c.pod, c.host, c.image, r.resolved_host AS ai_host,
               c.bytes_out
        FROM (SELECT * FROM window_events WHERE class_uid = 4001 AND dst_host = '') AS c
        INNER JOIN resolved AS r
            ON c.cluster = r.cluster AND c.namespace = r.namespace AND c.pod = r.pod AND c.host = r.host
           AND c.dst_ip = r.address
    )
SELECT
    toString(cluster) AS cluster,
    toString(namespace) AS namespace,
    if(pod != '',
       concat(toString(namespace), '/', replaceRegexpOne(pod,
           '(-[bcdfghjklmnpqrstvwxz2456789]{6,10})?-[bcdfghjklmnpqrstvwxz2456789]{5}\\z|-[0-9]+\\z', '')),
       toString(host)) AS workload,
    ai_host,
    countIf(class_uid = 4001) AS connects,
    countIf(class_uid = 4003) AS dns_lookups,
    sum(bytes_out) AS bytes_out,
    uniqExactIf(pod, pod != '') AS pods,
    arraySort(groupUniqArrayIf(10)(toString(image), image != '')) AS images,
    min(time) AS first_seen,
    max(time) AS last_seen
FROM reached
GROUP BY cluster, namespace, workload, ai_host
ORDER BY bytes_out DESC, connects DESC, dns_lookups DESC, workload, ai_host
LIMIT {limit:UInt32}
