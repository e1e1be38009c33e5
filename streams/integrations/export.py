"""``aiwarden alerts export``: alerts from ClickHouse (latest version of each, read-only session) as
JSON lines, in aiwarden's own shape (``jsonl``) or as OCSF Detection Findings (``ocsf``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

import orjson

from schemas.findings import Alert
from streams.console.queries import ALERT_COLUMNS
from streams.hunt import Hunt, execute

PAGE_ROWS = 5000
TIMEOUT_S = 60.0


def iter_alerts(client: Any, database: str, since_ms: int, page_rows: int = PAGE_ROWS) -> Iterator[Alert]:
    """Every alert active since ``since_ms`` (its latest version), oldest activity first, a page at a time
    (keyset on ``last_seen``, ``alert_id``: no OFFSET scans)."""
    hunt = Hunt.adhoc(f"""
        SELECT {ALERT_COLUMNS} FROM {database}.alerts FINAL
        WHERE last_seen >= {{since:Int64}}
          AND (last_seen, alert_id) > ({{after_seen:Int64}}, {{after_id:String}})
        ORDER BY last_seen, alert_id
        LIMIT {{limit:UInt32}}""")  # noqa: S608 - the database name is a setting, values are bound
    after: tuple[int, str] = (since_ms - 1, "")
    while True:
        params = {"since": since_ms, "after_seen": after[0], "after_id": after[1], "limit": page_rows}
        columns, rows = execute(client, hunt, params, page_rows, TIMEOUT_S)
        for row in rows:
            alert = Alert.from_dict(dict(zip(columns, row, strict=True)))
            yield alert
            after = (alert.last_seen, alert.alert_id)
        if len(rows) < page_rows:
            return


def write_alerts(alerts: Iterator[Alert], output_format: str, out: IO[str]) -> int:
    """Write ``alerts`` as JSON lines in ``output_format``; the count written."""
    from streams.integrations.ocsf import detection_finding

    written = 0
    for alert in alerts:
        record = detection_finding(alert) if output_format == "ocsf" else alert.to_dict()
        out.write(orjson.dumps(record).decode() + "\n")
        written += 1
    return written

