"""Serve the ClickHouse engine in chdb-core over ClickHouse's own HTTP and native TCP interfaces.

Run as its own process (``python -m infra.clickhouse.server``); ``infra.services`` starts and
stops it. chdb serves only through the module-level ``chdb._chdb.query`` (clickhouse-local's
LocalServer), reads ports from ``config.xml`` in the current directory, and keeps serving while a
query runs: so after ``SYSTEM START LISTEN`` this process parks in a query that never ends.
SIGTERM ends it; data written through the servers persists in ``--data``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

CONFIG = (
    "<clickhouse><listen_host>127.0.0.1</listen_host>"
    "<http_port>{http}</http_port><tcp_port>{tcp}</tcp_port></clickhouse>\n"
)
# Sleeps one second per row over a practically endless range: keeps the LocalServer serving.
PARK = (
    "SYSTEM START LISTEN HTTP; SYSTEM START LISTEN TCP; "
    "SELECT sleepEachRow(1) FROM numbers(1000000000000) "
    "SETTINGS function_sleep_max_microseconds_per_block = 0, max_block_size = 1, max_execution_time = 0"
)


def write_config(directory: Path, http_port: int, tcp_port: int) -> Path:
    path = directory / "config.xml"
    path.write_text(CONFIG.format(http=http_port, tcp=tcp_port))
    return path


def serve(workdir: Path, data_dir: Path, http_port: int, tcp_port: int) -> None:
    import chdb._chdb as chdb_engine  # imported late: loading the engine takes a moment

    workdir.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    write_config(workdir, http_port, tcp_port)
    os.chdir(workdir)
    print(f"serving ClickHouse HTTP 127.0.0.1:{http_port} TCP 127.0.0.1:{tcp_port} data {data_dir}", flush=True)
    # TabSeparated: the session's default output format, which HTTP clients rely on.
    chdb_engine.query(PARK, "TabSeparated", path=str(data_dir))  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--tcp-port", type=int, required=True)
    args = parser.parse_args(argv)
    serve(args.workdir.resolve(), args.data.resolve(), args.http_port, args.tcp_port)
    print("ClickHouse server query ended", file=sys.stderr, flush=True)
    sys.exit(1)


if __name__ == "__main__":
    main()
