"""Saved hunts over a large events table: the latency of each, and the rows it reads.

A database of its own (``aiwarden_bench_hunts``, migrated like ``aiwarden``, dropped afterwards) is
filled server-side with ``INSERT … SELECT … FROM numbers(N)``: N events spread evenly over the last
7 days, sources in the simulator's shares (native 40%, Falco 5, CloudTrail 15, Kubernetes audit 10,
Bedrock 7, gateway 23), 2000 workloads with a skewed (squared-uniform) popularity over 10
namespaces, 500 principals, 1500 API keys mostly used from their own address, network
destinations drawn from a list that includes AI API hosts, and a synthetic ~300-byte ``raw``
(not the vendor record: generating those in SQL would measure string building, not hunts). The
hourly rollups fill through their materialized views as they do in production. Alerts (20k),
inventory (5k assets) and dead letters (20k) get small fills so their hunts read something.

Every saved hunt (``streams.hunt``) then runs with its default parameters (``entity_timeline``,
whose entity is required, on the busiest pod) ``repeats`` times; the median wall time is reported,
with the rows and bytes the server read (``system.query_log``; the HTTP summary where the log is
off).
"""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any

from clickhouse_connect.driver.client import Client

from infra.clickhouse import migrate as ch_migrate
from infra.clickhouse.client import connect
from infra.settings import Settings
from streams.hunt import load_hunts, query_settings, resolve_params

DATABASE = "aiwarden_bench_hunts"
DAY_MS = 86_400_000

# Columns are computed from hashes of the row number, so a fill is reproducible (times aside).
FILL_EVENTS = """
INSERT INTO {db}.events (event_id, time_ms, source, class_uid, activity, severity_id, message, principal,
    api_key_id, user_agent, cluster, namespace, pod, container_id, image, host, process_name, process_cmdline,
    parent_process_name, file_path, cloud_provider, account_id, region, api_service, api_operation, api_status,
    resource, src_ip, dst_ip, dst_port, dst_host, bytes_out, model_id, tokens_in, tokens_out, latency_ms, prompt,
    entity_id, entities, raw)
SELECT event_id, time_ms, source, class_uid, activity, severity_id, concat(activity, ' by ', entity_id), principal,
    api_key_id, user_agent, cluster, namespace, pod, container_id, image, host, process_name, process_cmdline,
    parent_process_name, file_path, cloud_provider, '123456789012', 'us-east-1', api_service, api_operation,
    api_status, resource, src_ip, dst_ip, dst_port, dst_host, bytes_out, model_id, tokens_in, tokens_out,
    latency_ms, prompt, entity_id, arrayFilter(e -> e != '' AND NOT endsWith(e, ':'),
        [entity_id, if(pod != '', concat('pod:', namespace, '/', pod), ''),
         if(container_id != '', concat('container:', container_id), ''),
         if(principal != '', concat('principal:', principal), ''),
         if(api_key_id != '', concat('apikey:', api_key_id), ''),
         if(src_ip != '', concat('ip:', src_ip), ''), if(dst_ip != '', concat('ip:', dst_ip), ''),
         if(model_id != '', concat('model:', model_id), '')]),
    concat('{{"source":"', source, '","id":"', event_id, '","time":', toString(time_ms), ',"entity":"', entity_id,
           '","activity":"', activity, '","detail":"', repeat('x', 200), '"}}')
FROM
(
    SELECT *,
        multiIf(runtime, concat('pod:', namespace, '/', pod), kind = 'inference' AND api_key_id != '',
                concat('apikey:', api_key_id), concat('principal:', principal)) AS entity_id
    FROM
    (
        SELECT *,
            lower(hex(sipHash128(number, 'event'))) AS event_id,
            toInt64({start_ms} + intDiv(number * {span_ms}, {n}) + h1 % 1000) AS time_ms,
            multiIf(s < 40, 'native', s < 45, 'falco', s < 60, 'cloudtrail', s < 70, 'k8s_audit',
                    s < 77, 'bedrock', 'gateway') AS source,
            s < 45 AS runtime,
            multiIf(s < 45, 'runtime', s < 70, 'cloud', 'inference') AS kind,
            multiIf(NOT runtime, 6003, c < 4, 1007, c < 6, 1001, c < 9, 4001, 4003) AS class_uid,
            multiIf(NOT runtime, 'api_call', c < 4, 'process_launch', c < 6, 'file_open', c < 9, 'network_connect',
                    'dns_query') AS activity,
            toUInt8(if(h2 % 200 = 0, 4, 1)) AS severity_id,
            ['ml-prod', 'inference', 'ml-staging', 'data-eng', 'web', 'marketing', 'payments', 'monitoring', 'ci',
             'ai-platform'][w % 10 + 1] AS namespace,
            if(runtime, concat('app', toString(w), '-6d8f7b9c5-bx7kq'), '') AS pod,
            if(runtime, substring(lower(hex(cityHash64(w, 'container'))), 1, 12), '') AS container_id,
            if(runtime, ['vllm/vllm-openai:v0.6.3', 'nvcr.io/nvidia/tritonserver:24.08-py3', 'nginx:1.27',
                         'python:3.11-slim', 'ghcr.io/huggingface/text-generation-inference:2.4', 'ollama/ollama:0.3',
                         'busybox:1.36', 'redis:7.4'][w % 8 + 1], '') AS image,
            if(runtime, concat(if(w % 8 IN (0, 1, 4, 5), 'gpu-node-', 'node-'), toString(w % 40)), '') AS host,
            if(runtime, concat('eks-', ['prod', 'staging'][w % 2 + 1]), '') AS cluster,
            if(runtime AND c < 4,
               ['python', 'bash', 'sh', 'curl', 'pip', 'vllm', 'tritonserver', 'nvidia-smi'][h4 % 8 + 1],
               '') AS process_name,
            if(process_name != '', concat(process_name, ' --worker ', toString(h4 % 1000)), '') AS process_cmdline,
            if(process_name != '', ['containerd-shim', 'python', 'bash'][h4 % 3 + 1], '') AS parent_process_name,
            if(runtime AND c IN (4, 5), ['/models/llama-3-8b/model.safetensors', '/etc/passwd', '/tmp/cache.bin',
                '/dev/nvidia0', '/data/train/part-0001.parquet'][h4 % 5 + 1], '') AS file_path,
            if(NOT runtime OR c >= 6, 'aws', '') AS cloud_provider,
            multiIf(s >= 45 AND s < 60, ['s3', 'bedrock', 'iam', 'sagemaker', 'cloudtrail', 'ec2'][h4 % 6 + 1],
                    s >= 60 AND s < 70, 'k8s', s >= 70, 'bedrock', '') AS api_service,
            multiIf(s >= 45 AND s < 60, ['GetObject', 'PutObject', 'InvokeModel', 'AssumeRole', 'ListBuckets',
                                         'CreateEndpoint'][h4 % 6 + 1],
                    s >= 60 AND s < 70, ['get', 'list', 'create', 'patch', 'delete'][h4 % 5 + 1],
                    s >= 70, 'InvokeModel', '') AS api_operation,
            if(NOT runtime, if(h2 % 50 = 0, 'failure', 'success'), '') AS api_status,
            if(s >= 45 AND s < 60, concat('arn:aws:s3:::bucket-', toString(h4 % 40), '/key-', toString(h2 % 10000)),
               '') AS resource,
            if(NOT runtime, multiIf(s < 60, concat('arn:aws:iam::123456789012:role/role-', toString(p)),
                                    s < 70, concat('system:serviceaccount:ns-', toString(p % 30), ':sa-', toString(p)),
                                    concat('user-', toString(p))), '') AS principal,
            if(kind = 'inference', concat('key-', toString(k)), '') AS api_key_id,
            if(NOT runtime, ['aws-sdk-python/1.34', 'kubectl/v1.31', 'litellm/1.50', 'openai-python/1.52'][h2 % 4 + 1],
               '') AS user_agent,
            multiIf(runtime, concat('10.0.', toString(w % 256), '.', toString(intDiv(w, 256))),
                    kind = 'inference', concat('203.0.113.', toString((k + if(h5 % 50 = 0, h5 % 7, 0)) % 256)),
                    concat('198.51.100.', toString(p % 256))) AS src_ip,
            if(runtime AND c >= 6, if(h5 % 3 = 0, concat('10.1.', toString(h5 % 256), '.', toString(h6 % 256)),
                                      IPv4NumToString(toUInt32(h6 % 4294967295))), '') AS dst_ip,
            toUInt16(if(runtime AND c >= 6, [443, 80, 8000, 8080, 5432, 6379, 3333, 9000][h6 % 8 + 1], 0)) AS dst_port,
            if(runtime AND c >= 6 AND (c = 9 OR h5 % 5 < 2),
               ['api.openai.com', 'api.anthropic.com', 's3.amazonaws.com', 'github.com', 'pypi.org', 'huggingface.co',
                'registry-1.docker.io', 'kafka.internal', 'postgres.payments.svc.cluster.local', 'google.com',
                'sentry.io', 'datadoghq.com', 'api.mistral.ai', 'example.org', 'slack.com', 'stripe.com'
               ][h6 % 16 + 1], '') AS dst_host,
            toUInt64(if(runtime AND c >= 6, h7 % 100000, 0)) AS bytes_out,
            if(kind = 'inference' OR (s >= 45 AND h4 % 6 = 2),
               ['anthropic.claude-3-5-sonnet', 'meta.llama3-70b-instruct', 'amazon.titan-embed-text-v2', 'gpt-4o',
                'gpt-4o-mini', 'claude-3-haiku'][h7 % 6 + 1], '') AS model_id,
            toUInt32(if(model_id != '', h7 % 4000, 0)) AS tokens_in,
            toUInt32(if(model_id != '', h2 % 1000, 0)) AS tokens_out,
            toUInt32(if(model_id != '', h5 % 3000, 0)) AS latency_ms,
            if(kind = 'inference', concat('Summarize ticket ', toString(h2 % 100000)), '') AS prompt
        FROM
        (
            SELECT number,
                cityHash64(number, 1) AS h1, cityHash64(number, 2) AS h2, cityHash64(number, 4) AS h4,
                cityHash64(number, 5) AS h5, cityHash64(number, 6) AS h6, cityHash64(number, 7) AS h7,
                h1 % 100 AS s, h2 % 10 AS c,
                toUInt32(floor(2000 * pow((cityHash64(number, 3) % 1000000) / 1000000.0, 2))) AS w,
                toUInt32(floor(500 * pow((cityHash64(number, 8) % 1000000) / 1000000.0, 2))) AS p,
                toUInt32(floor(1500 * pow((cityHash64(number, 9) % 1000000) / 1000000.0, 2))) AS k
            FROM numbers({n})
        )
    )
)
"""

FILL_ALERTS = """
INSERT INTO {db}.alerts (alert_id, first_seen, last_seen, severity, risk_score, detectors, atlas_techniques,
    attack_techniques, tactics, entities, primary_entity, summary, evidence_event_ids, finding_ids, maturity, status,
    version, updated_ms)
SELECT lower(hex(sipHash128(number, 'alert'))), t, t + toInt64(cityHash64(number, 1) % 600000),
    ['low', 'medium', 'high', 'critical'][cityHash64(number, 2) % 4 + 1], (cityHash64(number, 3) % 1000) / 10.0,
    [['model_extraction', 'prompt_injection', 'cryptominer', 'shadow_ai_egress', 'stolen_api_key'][number % 5 + 1]],
    [['AML.T0024.002', 'AML.T0051', '', 'AML.T0040', 'AML.T0012'][number % 5 + 1]],
    [['T1496', 'T1078', 'T1059', 'T1567', 'T1552'][cityHash64(number, 4) % 5 + 1]], ['impact'],
    [concat('pod:ml-prod/app', toString(number % 2000), '-6d8f7b9c5-bx7kq')],
    concat('pod:ml-prod/app', toString(number % 2000), '-6d8f7b9c5-bx7kq'), 'synthetic alert', [], [], 'stable',
    'open', 1, t
FROM (SELECT number, toInt64({start_ms} + intDiv(number * {span_ms}, 20000)) AS t FROM numbers(20000))
"""

FILL_INVENTORY = """
INSERT INTO {db}.inventory (asset_id, kind, name, namespace, image, runtimes, models, principals, first_seen, last_seen,
    sanctioned, public_exposure, updated_ms)
SELECT concat('pod:ml-prod/app', toString(number)), 'workload', concat('app', toString(number)), 'ml-prod',
    'vllm/vllm-openai:v0.6.3', ['vllm'], ['llama-3-8b'], [], t, t + 3600000, toUInt8(number % 7 != 0),
    toUInt8(number % 50 = 0), t
FROM (SELECT number, toInt64({start_ms} + intDiv(number * {span_ms}, 5000)) AS t FROM numbers(5000))
"""

FILL_DEAD_LETTERS = """
INSERT INTO {db}.dead_letters (time_ms, reason, source, stage, raw, raw_encoding)
SELECT toInt64({start_ms} + intDiv(number * {span_ms}, 20000)),
    concat(['invalid JSON at line ', 'record larger than ', 'missing field at offset '][number % 3 + 1],
           toString(number)),
    ['falco', 'cloudtrail', 'gateway'][number % 3 + 1], 'normalize', repeat('y', 100), 'utf-8'
FROM numbers(20000)
"""


def bench_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"clickhouse": settings.clickhouse.model_copy(update={"database": DATABASE})})


def fill(client: Client, rows: int, start_ms: int, span_ms: int) -> float:
    values = {"db": DATABASE, "n": int(rows), "start_ms": int(start_ms), "span_ms": int(span_ms)}
    started = time.perf_counter()
    client.command(FILL_EVENTS.format(**values), settings={"max_insert_threads": 2})
    elapsed = time.perf_counter() - started
    for sql in (FILL_ALERTS, FILL_INVENTORY, FILL_DEAD_LETTERS):
        client.command(sql.format(**values))
    return elapsed


def query_log(client: Client, comment: str) -> dict[str, Any]:
    """Rows and bytes a finished query read, from system.query_log (empty if the log is off)."""
    try:
        client.command("SYSTEM FLUSH LOGS")
        rows = client.query(
            "SELECT read_rows, read_bytes, query_duration_ms, memory_usage FROM system.query_log "
            "WHERE log_comment = {c:String} AND type = 'QueryFinish' ORDER BY event_time_microseconds DESC LIMIT 1",
            parameters={"c": comment},
        ).result_rows
    except Exception:  # noqa: BLE001 - no query log on this server: the summary is used instead
        return {}
    if not rows:
        return {}
    read_rows, read_bytes, duration_ms, memory = rows[0]
    return {"rows_read": int(read_rows), "bytes_read": int(read_bytes), "server_ms": int(duration_ms),
            "memory_bytes": int(memory)}


def run(settings: Settings, rows: int = 10_000_000, repeats: int = 3, timeout_s: float = 600.0) -> dict[str, Any]:
    local = bench_settings(settings)
    admin = connect(settings)
    admin.command(f"DROP DATABASE IF EXISTS {DATABASE}")
    admin.command(f"CREATE DATABASE {DATABASE}")
    try:
        ch_migrate.apply(admin, local)
        client = connect(local, database=DATABASE)
        now_ms = int(time.time() * 1000)
        fill_s = fill(client, rows, now_ms - 7 * DAY_MS, 7 * DAY_MS - 60_000)
        counted = int(client.query("SELECT count() FROM events").result_rows[0][0])
        busiest = client.query("SELECT entity_id FROM events WHERE startsWith(entity_id, 'pod:') "
                               "GROUP BY entity_id ORDER BY count() DESC LIMIT 1").result_rows[0][0]
        hunts: dict[str, Any] = {}
        for name, hunt in sorted(load_hunts().items()):
            given = {"entity": busiest} if "entity" in hunt.params else {}
            params = resolve_params(client, hunt, given, timeout_s)
            times, read, returned = [], {}, 0
            for i in range(repeats):
                comment = f"bench-hunt-{name}-{i}-{uuid.uuid4().hex[:6]}"
                query_settings_ = {**query_settings(10_000, timeout_s), "log_comment": comment}
                started = time.perf_counter()
                result = client.query(hunt.sql, parameters=params or None, settings=query_settings_)
                times.append(time.perf_counter() - started)
                returned = len(result.result_rows)
                read = query_log(client, comment) or {"rows_read": int(result.summary.get("read_rows", 0) or 0),
                                                      "bytes_read": int(result.summary.get("read_bytes", 0) or 0)}
            hunts[name] = {"median_s": round(statistics.median(times), 3), "runs_s": [round(t, 3) for t in times],
                           "rows_returned": returned, **read}
        client.close()
        return {"rows": counted, "days": 7, "fill_s": round(fill_s, 1),
                "fill_rows_per_s": round(rows / fill_s) if fill_s else None, "repeats": repeats, "hunts": hunts}
    finally:
        admin.command(f"DROP DATABASE IF EXISTS {DATABASE}")
        admin.close()
