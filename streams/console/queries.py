"""Read-only ClickHouse views for the console and the worker's JSON endpoints.

Every query goes through ``streams.hunt.execute``: readonly=1 on the server, a time limit and a row
limit, errors reduced to the server's own one-line reason.
"""

from __future__ import annotations

import threading
from typing import Any

from infra.clickhouse.client import connect
from infra.settings import Settings
from schemas.findings import SEVERITIES, SEVERITY_RANK
from streams.console.filters import AlertFilter
from streams.hunt import Hunt, execute

TIMEOUT_S = 10.0
MAX_LIMIT = 1000

ALERT_COLUMNS = (
    "alert_id, first_seen, last_seen, severity, risk_score, detectors, atlas_techniques, attack_techniques, "
    "tactics, entities, primary_entity, summary, evidence_event_ids, finding_ids, maturity, status, version, "
    "updated_ms, merged_into"
)
EVENT_COLUMNS = (
    "event_id, time_ms, source, class_uid, activity, message, entity_id, principal, api_key_id, cluster, namespace, "
    "pod, image, host, process_name, process_cmdline, parent_process_name, file_path, api_service, api_operation, "
    "api_status, resource, src_ip, dst_ip, dst_host, dst_port, bytes_out, model_id, tokens_in, tokens_out, "
    "substring(prompt, 1, 500) AS prompt, rule"
)
FINDING_COLUMNS = (
    "finding_id, detector, title, maturity, severity, time_ms, entity_id, entities, summary, tactics, "
    "atlas_techniques, attack_techniques, evidence_event_ids, anomaly_score"
)


class ConsoleQueries:
    """One read-only client per worker, used by one query at a time (clickhouse-connect sessions
    are not concurrent); call the methods from a thread (``asyncio.to_thread``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = settings.clickhouse.database
        self._lock = threading.Lock()
        self._client: Any = None

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _rows(self, sql: str, params: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        with self._lock:
            if self._client is None:
                self._client = connect(self.settings, readonly=True)
            try:
                columns, rows = execute(self._client, Hunt.adhoc(sql), params, limit, TIMEOUT_S)
            except Exception:
                self._client.close()
                self._client = None  # reconnect next time: the server may have restarted
                raise
        return [dict(zip(columns, row, strict=True)) for row in rows]

    def rows(self, sql: str, params: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        """A read-only query of another module's (the SOC workflow's) on this client."""
        return self._rows(sql, params, limit)

    def ping(self) -> bool:
        try:
            return bool(self._rows("SELECT 1 AS ok", {}, 1))
        except Exception:  # noqa: BLE001 - health reports, never raises
            return False

    def alerts(self, alert_filter: AlertFilter, limit: int = 100, since_ms: int = 0) -> list[dict[str, Any]]:
        """The latest version of recent alerts, newest activity first (not those merged into another)."""
        severities = [s for s in SEVERITIES if SEVERITY_RANK[s] >= SEVERITY_RANK[alert_filter.min_severity]]
        sql = f"""
            SELECT {ALERT_COLUMNS} FROM {self.db}.alerts FINAL
            WHERE severity IN {{severities:Array(String)}}
              AND (empty({{detectors:Array(String)}}) OR hasAny(detectors, {{detectors:Array(String)}}))
              AND ({{entity:String}} = '' OR primary_entity = {{entity:String}} OR has(entities, {{entity:String}}))
              AND last_seen >= {{since:Int64}}
              AND status != 'merged'
            ORDER BY last_seen DESC, alert_id
            LIMIT {{limit:UInt32}}"""  # noqa: S608 - the database name is a setting, values are bound
        limit = _bounded(limit)
        return self._rows(sql, {
            "severities": severities, "detectors": sorted(alert_filter.detectors), "entity": alert_filter.entity,
            "since": since_ms, "limit": limit,
        }, limit)

    def latest(self, alert_ids: list[str]) -> list[dict[str, Any]]:
        """The latest stored version of each of ``alert_ids`` (those the sink has stored)."""
        sql = f"SELECT {ALERT_COLUMNS} FROM {self.db}.alerts FINAL WHERE alert_id IN {{ids:Array(String)}}"  # noqa: S608
        return self._rows(sql, {"ids": alert_ids}, MAX_LIMIT)

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        """One alert with its findings and evidence events (as far as the sink has stored them)."""
        found = self.latest([alert_id])
        if not found:
            return None
        alert = found[0]
        findings_sql = f"""
            SELECT {FINDING_COLUMNS} FROM {self.db}.findings
            WHERE finding_id IN {{ids:Array(String)}}
            ORDER BY time_ms LIMIT 1 BY finding_id"""  # noqa: S608
        events_sql = f"""
            SELECT {EVENT_COLUMNS} FROM {self.db}.events
            WHERE event_id IN {{ids:Array(String)}}
            ORDER BY time_ms LIMIT 1 BY event_id"""  # noqa: S608
        alert["findings"] = self._rows(findings_sql, {"ids": alert["finding_ids"]}, MAX_LIMIT)
        alert["evidence"] = self._rows(events_sql, {"ids": alert["evidence_event_ids"][:MAX_LIMIT]}, MAX_LIMIT)
        return alert

    def timeline(self, entity_id: str, limit: int = 200, since_ms: int = 0) -> list[dict[str, Any]]:
        """Events, findings and alerts involving ``entity_id``, newest first."""
        sql = f"""
            SELECT * FROM (
                SELECT 'event' AS kind, time_ms, event_id AS id, source AS origin, activity AS title,
                       multiIf(process_cmdline != '', process_cmdline,
                               api_operation != '', concat(api_service, ':', api_operation, ' ', resource),
                               dst_host != '' OR dst_ip != '', concat('→ ', if(dst_host != '', dst_host, dst_ip)),
                               model_id != '', concat('model ', model_id), substring(message, 1, 300)) AS detail,
                       '' AS severity
                FROM (  -- two reads, not one OR: each uses its index (sort key, entities bloom filter)
                    SELECT * FROM {self.db}.events WHERE entity_id = {{entity:String}} AND time_ms >= {{since:Int64}}
                    UNION ALL
                    SELECT * FROM {self.db}.events WHERE has(entities, {{entity:String}}) AND time_ms >= {{since:Int64}}
                )
                ORDER BY time_ms DESC LIMIT 1 BY event_id LIMIT {{limit:UInt32}}
                UNION ALL
                SELECT 'finding', time_ms, finding_id, detector, title, summary, severity
                FROM {self.db}.findings
                WHERE (entity_id = {{entity:String}} OR has(entities, {{entity:String}})) AND time_ms >= {{since:Int64}}
                ORDER BY time_ms DESC LIMIT 1 BY finding_id LIMIT {{limit:UInt32}}
                UNION ALL
                SELECT 'alert', last_seen, alert_id, arrayStringConcat(detectors, ','), summary, primary_entity,
                       severity
                FROM {self.db}.alerts FINAL
                WHERE (primary_entity = {{entity:String}} OR has(entities, {{entity:String}}))
                  AND last_seen >= {{since:Int64}}
                ORDER BY last_seen DESC LIMIT {{limit:UInt32}}
            ) ORDER BY time_ms DESC, kind LIMIT {{limit:UInt32}}"""  # noqa: S608
        limit = _bounded(limit)
        return self._rows(sql, {"entity": entity_id, "since": since_ms, "limit": limit}, limit)

    def inventory(self, limit: int = 500) -> list[dict[str, Any]]:
        """The AI inventory (AIBOM): the latest state of each asset, most recently seen first."""
        sql = f"""
            SELECT asset_id, kind, name, namespace, image, runtimes, models, principals, first_seen, last_seen,
                   sanctioned, public_exposure, attributes
            FROM {self.db}.inventory FINAL
            ORDER BY last_seen DESC, asset_id LIMIT {{limit:UInt32}}"""  # noqa: S608
        limit = _bounded(limit)
        return self._rows(sql, {"limit": limit}, limit)

    def workload(self, entity_id: str, limit: int = 500) -> dict[str, Any]:
        """A workload's AI packages with their vulnerabilities (in use first, then by priority), how many are
        installed and in use, and the alerts (attack paths) it is part of. ``entity_id`` is the workload's
        entity (``pod:…``, ``container:…``) or an image's (``image:<ref>``: what its scans found)."""
        packages_sql = f"""
            SELECT package, package_version, purl, ecosystem, in_use, in_use_first_seen, in_use_last_seen, exposed,
                   vulnerability_id, severity, cvss, fixed_version, priority, priority_score, reasons, scanner,
                   updated
            FROM {self.db}.vulnerabilities FINAL
            WHERE ai_package = 1 AND (workload = {{entity:String}} OR concat('image:', image) = {{entity:String}})
            ORDER BY in_use DESC, priority_score DESC, package, vulnerability_id
            LIMIT {{limit:UInt32}}"""  # noqa: S608 - the database name is a setting, values are bound
        alerts_sql = f"""
            SELECT alert_id, first_seen, last_seen, severity, risk_score, detectors, summary, status
            FROM {self.db}.alerts FINAL
            WHERE primary_entity = {{entity:String}} OR has(entities, {{entity:String}})
            ORDER BY has(detectors, 'vulnerable_ai_workload') DESC, risk_score DESC, last_seen DESC
            LIMIT {{limit:UInt32}}"""  # noqa: S608
        limit = _bounded(limit)
        params = {"entity": entity_id, "limit": limit}
        packages = packages_of(self._rows(packages_sql, params, limit))
        return {
            "entity_id": entity_id,
            "installed": len(packages),
            "in_use": sum(1 for p in packages if p["in_use"]),
            "packages": packages,
            "attack_paths": self._rows(alerts_sql, params, limit),
        }

    def dead_letters(self, limit: int = 50, since_ms: int = 0) -> dict[str, list[dict[str, Any]]]:
        """Dead letters per reason and source (numbers in reasons folded) and the newest letters."""
        counts_sql = f"""
            SELECT source, stage, replaceRegexpAll(reason, '[0-9]+', 'N') AS reason_pattern, count() AS letters,
                   countIf(truncated) AS truncated, max(time_ms) AS last_ms
            FROM {self.db}.dead_letters WHERE time_ms >= {{since:Int64}}
            GROUP BY source, stage, reason_pattern
            ORDER BY letters DESC, source, stage, reason_pattern LIMIT {{limit:UInt32}}"""  # noqa: S608
        newest_sql = f"""
            SELECT letter_id, time_ms, source, stage, reason, position, raw_bytes, truncated,
                   substring(raw, 1, 300) AS raw_start, raw_encoding
            FROM {self.db}.dead_letters WHERE time_ms >= {{since:Int64}}
            ORDER BY time_ms DESC LIMIT {{limit:UInt32}}"""  # noqa: S608
        limit = _bounded(limit)
        params = {"since": since_ms, "limit": limit}
        return {"counts": self._rows(counts_sql, params, limit), "newest": self._rows(newest_sql, params, limit)}


_PACKAGE_KEYS = ("package", "package_version", "purl", "ecosystem")
_VULNERABILITY_KEYS = ("vulnerability_id", "severity", "cvss", "fixed_version", "priority", "priority_score",
                       "reasons")


def packages_of(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the ``vulnerabilities`` table (one per package and vulnerability, ordered in use first) as one
    entry per package with its vulnerabilities, highest priority first."""
    packages: dict[tuple[str, ...], dict[str, Any]] = {}
    for row in rows:
        key = tuple(str(row[k]) for k in _PACKAGE_KEYS)
        entry = packages.get(key)
        if entry is None:
            entry = packages[key] = {**{k: row[k] for k in _PACKAGE_KEYS}, "in_use": False, "in_use_first_seen": None,
                                     "in_use_last_seen": None, "exposed": False, "priority_score": 0,
                                     "vulnerabilities": []}
        entry["in_use"] = entry["in_use"] or bool(row["in_use"])
        entry["exposed"] = entry["exposed"] or bool(row["exposed"])
        for name, pick in (("in_use_first_seen", min), ("in_use_last_seen", max)):
            seen = [t for t in (entry[name], row[name]) if t is not None]
            entry[name] = pick(seen) if seen else None
        if row["vulnerability_id"]:
            entry["vulnerabilities"].append({k: row[k] for k in _VULNERABILITY_KEYS})
            entry["priority_score"] = max(entry["priority_score"], row["priority_score"])
    for entry in packages.values():
        entry["vulnerabilities"].sort(key=lambda v: (-v["priority_score"], v["vulnerability_id"]))
    return sorted(packages.values(), key=lambda p: (not p["in_use"], -p["priority_score"], p["package"]))


def _bounded(limit: int) -> int:
    return max(1, min(int(limit), MAX_LIMIT))
