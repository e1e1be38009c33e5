"""Run ``aiwarden ingest`` as a child process on a free port (tests, benchmarks, the demo)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from infra.services import free_port
from infra.settings import Settings
from streams.worker_process import WorkerProcess


class IngestProcess(WorkerProcess):
    """``aiwarden ingest`` with its log file; ``url`` once ``start()`` returned."""

    command = ("ingest",)

    def __init__(self, settings: Settings, log_path: Path, port: int = 0, **overrides: str) -> None:
        self.port = port or free_port()
        super().__init__(settings, log_path, AIWARDEN_INGEST__PORT=str(self.port), **overrides)
        tls = settings.ingest.tls_certfile is not None or "AIWARDEN_INGEST__TLS_CERTFILE" in overrides
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0, verify: Any = True) -> IngestProcess:
        """Start, and wait until ``/health`` answers (``verify``: httpx's, e.g. an SSL context with a client
        certificate when the process requires mutual TLS)."""
        super().start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                msg = f"aiwarden ingest exited:\n{self.log_tail()}"
                raise RuntimeError(msg)
            try:
                if httpx.get(f"{self.url}/health", timeout=2, verify=verify).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        msg = f"aiwarden ingest did not answer on {self.url} within {timeout_s:.0f}s:\n{self.log_tail()}"
        raise TimeoutError(msg)
