"""`aiwarden up`, `status`, `down` through the real CLI, on a state dir of their own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra import services
from infra.settings import Settings

pytestmark = pytest.mark.integration


def cli(state_dir: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIWARDEN_")}
    env["AIWARDEN_STATE_DIR"] = str(state_dir)
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def processes_under(state_dir: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(state_dir).encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def test_up_status_down_leaves_nothing_running(tmp_path: Path) -> None:
    state = tmp_path / "state"
    try:
        first = cli(state, "up")
        assert first.returncode == 0, first.stderr + first.stdout
        assert "kafka" in first.stdout and "clickhouse" in first.stdout

        status = cli(state, "status")
        assert status.returncode == 0, status.stdout
        assert status.stdout.count("healthy") == 2
        assert "127.0.0.1:" in status.stdout

        started = time.monotonic()
        again = cli(state, "up")
        assert again.returncode == 0, again.stderr
        assert time.monotonic() - started < 30, "a second `up` must not restart running services"

        # A crashed service is reported by status and restarted by up.
        settings = Settings(state_dir=state)
        clickhouse = services.LocalClickHouse(settings)
        pid = clickhouse.pid()
        assert pid is not None
        os.killpg(os.getpgid(pid), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while clickhouse.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        crashed = cli(state, "status")
        assert crashed.returncode == 1
        assert "crashed" in crashed.stdout
        restarted = cli(state, "up")
        assert restarted.returncode == 0, restarted.stderr
        assert clickhouse.pid() not in (None, pid)
        assert cli(state, "status").returncode == 0
    finally:
        down = cli(state, "down")
    assert down.returncode == 0, down.stderr
    assert processes_under(state) == []
    assert cli(state, "status").returncode == 1


def test_ports_are_loopback_and_recorded(service_settings: Settings) -> None:
    if service_settings.state_dir and (service_settings.state_dir / services.STATE_FILE).exists():
        for service in services.local_services(Settings(state_dir=service_settings.state_dir)):
            st = service.status()
            assert st.healthy, st
            assert "127.0.0.1" in st.address
    else:
        pytest.skip("services are external or testcontainers: no local ports to check")
