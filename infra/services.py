"""Local services for the embedded default: `aiwarden up`, `down`, `status`.

Each service runs detached in its own process group, with its pid, ports and log under the state
dir, so `up` twice is harmless, a crashed service is reported and restarted, and `down` leaves no
process behind. Ports are picked free once and kept, so two checkouts run side by side.
A service whose address is set in the settings is external: nothing is started for it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from infra.kafka import broker
from infra.settings import Settings

STATE_FILE = "services.json"

# Services outlive the command that started them; their Popen objects are kept here (and reaped
# by `stop`) so they are not garbage-collected while running.
_STARTED: dict[int, subprocess.Popen[bytes]] = {}


class ServiceError(RuntimeError):
    """A local service could not be started or did not become healthy."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    address: str
    managed: bool  # started by aiwarden (False: external, from the settings)
    running: bool
    healthy: bool
    pid: int | None = None
    detail: str = ""


def redact_url(url: str) -> str:
    """``url`` with any password in it replaced by ``***`` (for status lines and messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_free(port: int) -> bool:
    """Free to listen on (connections of a stopped server lingering in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


class LocalService:
    """A detached local process with ports, a pid file and a log, under ``state_dir/<name>``."""

    name = ""
    port_names: tuple[str, ...] = ()
    start_timeout_s = 90.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state_dir = settings.state_dir.resolve()
        self.dir = self.state_dir / self.name
        self.log_path = self.dir / "server.log"

    # -- what each service defines
    def command(self, ports: dict[str, int]) -> list[str]:
        raise NotImplementedError

    def healthy(self, ports: dict[str, int]) -> bool:
        raise NotImplementedError

    def address(self, ports: dict[str, int]) -> str:
        raise NotImplementedError

    def prepare(self, ports: dict[str, int]) -> None:
        """Provision and configure before the first start (idempotent)."""

    # -- state
    def _load(self) -> dict[str, dict[str, int]]:
        path = self.state_dir / STATE_FILE
        return json.loads(path.read_text()) if path.exists() else {}

    def _save(self, entry: dict[str, int] | None) -> None:
        state = self._load()
        if entry is None:
            state.pop(self.name, None)
        else:
            state[self.name] = entry
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_dir / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_dir / STATE_FILE)

    def ports(self) -> dict[str, int]:
        entry = self._load().get(self.name, {})
        return {k: entry[k] for k in self.port_names if k in entry}

    def pid(self) -> int | None:
        pid = self._load().get(self.name, {}).get("pid")
        return pid if pid and self._alive(pid) else None

    def _alive(self, pid: int) -> bool:
        """Alive and ours: a recycled pid running something else does not count."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        if not cmdline:
            return False  # zombie
        return str(self.dir).encode() in cmdline

    # -- lifecycle
    def status(self) -> ServiceStatus:
        ports = self.ports()
        pid = self.pid()
        address = self.address(ports) if ports else "-"
        healthy = bool(pid) and self.healthy(ports)
        recorded = self._load().get(self.name, {}).get("pid")
        if pid:
            detail = "" if healthy else "running but not answering"
        else:
            detail = "crashed: `aiwarden up` restarts it" if recorded else "stopped"
        return ServiceStatus(self.name, address, True, pid is not None, healthy, pid, detail)

    def start(self) -> ServiceStatus:
        """Start unless already running; restart if it crashed. Waits until healthy."""
        for pid, proc in list(_STARTED.items()):
            if proc.poll() is not None:  # reap what crashed
                del _STARTED[pid]
        current = self.status()
        if current.running and current.healthy:
            return current
        if current.running:
            self._wait_healthy(self.ports(), current.pid or 0)
            return self.status()
        ports = self.ports()
        if len(ports) != len(self.port_names) or not all(port_free(p) for p in ports.values()):
            ports = {name: free_port() for name in self.port_names}
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prepare(ports)
        with self.log_path.open("ab") as log:
            proc = subprocess.Popen(  # noqa: S603
                self.command(ports), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.dir, start_new_session=True,
            )
        _STARTED[proc.pid] = proc
        self._save({**ports, "pid": proc.pid})
        self._wait_healthy(ports, proc.pid, proc.poll)
        return self.status()

    def restart(self, stop_timeout_s: float = 30.0, port_wait_s: float = 120.0) -> float:
        """Start again on the recorded ports (clients keep their address), stopping it first if it runs.
        Waits until the old sockets release the ports; returns the seconds that took."""
        self.stop(stop_timeout_s)
        ports = self.ports()
        waited = time.monotonic()
        deadline = waited + port_wait_s
        while ports and not all(port_free(p) for p in ports.values()):
            if time.monotonic() > deadline:
                msg = f"{self.name}: ports {ports} still busy after {port_wait_s:.0f}s"
                raise ServiceError(msg)
            time.sleep(0.5)
        waited = time.monotonic() - waited
        self.start()
        if self.ports() != ports:
            msg = f"{self.name} came back on other ports: {self.ports()} instead of {ports}"
            raise ServiceError(msg)
        return waited

    def _wait_healthy(self, ports: dict[str, int], pid: int, poll: Callable[[], int | None] | None = None) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if poll is not None and poll() is not None:
                msg = f"{self.name} exited during start; last log lines:\n{self.log_tail()}"
                raise ServiceError(msg)
            if self.healthy(ports):
                return
            time.sleep(0.25)
        msg = f"{self.name} not healthy after {self.start_timeout_s:.0f}s; last log lines:\n{self.log_tail()}"
        raise ServiceError(msg)

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM the process group, SIGKILL after ``timeout_s``. True if something was stopped."""
        pid = self.pid()
        if pid is None:
            return False
        try:
            pgid = os.getpgid(pid)
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self._alive(pid):
            time.sleep(0.1)
        if self._alive(pid):
            os.killpg(pgid, signal.SIGKILL)
            while self._alive(pid):
                time.sleep(0.05)
        started = _STARTED.pop(pid, None)
        if started is not None:
            started.wait(5)
        entry = self._load().get(self.name, {})
        self._save({k: v for k, v in entry.items() if k != "pid"})
        return True

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class LocalKafka(LocalService):
    """Apache Kafka, single-node KRaft (broker and controller in one JVM)."""

    name = "kafka"
    port_names = ("port", "controller_port")

    def prepare(self, ports: dict[str, int]) -> None:
        java = self._java()
        libs = broker.provision(self.settings.cache_dir, self.settings.kafka.version)
        data = self.dir / "data"
        config = self.dir / "server.properties"
        config.write_text(broker.server_properties(data, ports["port"], ports["controller_port"]))
        broker.format_storage(java, libs, config, data)

    def _java(self) -> str:
        java = shutil.which("java")
        if java is None:
            msg = "Java 17 is needed for the local Kafka broker (apt-get install openjdk-17-jre-headless)"
            raise ServiceError(msg)
        return java

    def command(self, ports: dict[str, int]) -> list[str]:
        libs = broker.provision(self.settings.cache_dir, self.settings.kafka.version)
        return broker.java_command(
            self._java(), libs, self.settings.kafka.heap, self.dir / "server.properties", broker.MAIN_CLASS
        )

    def address(self, ports: dict[str, int]) -> str:
        return f"127.0.0.1:{ports['port']}"

    def healthy(self, ports: dict[str, int]) -> bool:
        if not ports or not port_open(ports["port"]):
            return False
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.address(ports), "socket.timeout.ms": 2000})
        try:
            metadata = admin.list_topics(timeout=2)
        except Exception:  # noqa: BLE001 - any failure means "not yet"
            return False
        return bool(metadata.brokers)


class LocalClickHouse(LocalService):
    """The ClickHouse engine of chdb-core, served over HTTP and native TCP."""

    name = "clickhouse"
    port_names = ("http_port", "tcp_port")

    def command(self, ports: dict[str, int]) -> list[str]:
        return [
            sys.executable, "-m", "infra.clickhouse.server", "--workdir", str(self.dir),
            "--data", str(self.dir / "data"),
            "--http-port", str(ports["http_port"]), "--tcp-port", str(ports["tcp_port"]),
        ]

    def address(self, ports: dict[str, int]) -> str:
        return f"http://127.0.0.1:{ports['http_port']}"

    def healthy(self, ports: dict[str, int]) -> bool:
        if not ports or not port_open(ports["http_port"]):
            return False
        try:
            with urllib.request.urlopen(f"{self.address(ports)}/ping", timeout=2) as response:  # noqa: S310
                return bool(response.status == 200)
        except OSError:
            return False


def local_services(settings: Settings) -> list[LocalService]:
    """The services to run locally: those whose address the settings leave unset."""
    services: list[LocalService] = []
    if not settings.kafka.bootstrap_servers:
        services.append(LocalKafka(settings))
    if not settings.clickhouse.url:
        services.append(LocalClickHouse(settings))
    return services


def resolved(settings: Settings, need: tuple[str, ...] = ("kafka", "clickhouse")) -> Settings:
    """Settings with the addresses of the ``need``-ed local services filled in (external ones are left
    as set); a needed local service that was never started is an error."""
    kafka, clickhouse = settings.kafka, settings.clickhouse
    for service in local_services(settings):
        if service.name not in need:
            continue
        ports = service.ports()
        if not ports:
            msg = f"local {service.name} has not been started: run `aiwarden up`"
            raise ServiceError(msg)
        if isinstance(service, LocalKafka):
            kafka = kafka.model_copy(update={"bootstrap_servers": service.address(ports)})
        else:
            clickhouse = clickhouse.model_copy(update={"url": service.address(ports)})
    return settings.model_copy(update={"kafka": kafka, "clickhouse": clickhouse})


def up(settings: Settings) -> Settings:
    """Start every local service that is not running; returns the resolved settings."""
    for service in local_services(settings):
        service.start()
    return resolved(settings)


def down(settings: Settings) -> list[str]:
    """Stop every local service; returns the names of those stopped."""
    return [s.name for s in reversed(local_services(settings)) if s.stop()]


def status(settings: Settings) -> list[ServiceStatus]:
    """Local services from their state; external ones by asking them (credentials never shown)."""
    statuses = [s.status() for s in local_services(settings)]
    if settings.kafka.bootstrap_servers:
        ok, detail = _external_kafka(settings)
        statuses.append(ServiceStatus("kafka", settings.kafka.bootstrap_servers, False, ok, ok, detail=detail))
    if settings.clickhouse.url:
        ok, detail = _external_clickhouse(settings)
        statuses.append(ServiceStatus("clickhouse", redact_url(settings.clickhouse.url), False, ok, ok, detail=detail))
    return statuses


def _external_kafka(settings: Settings) -> tuple[bool, str]:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from infra.kafka.clients import confluent_config

    try:
        metadata = AdminClient(confluent_config(settings)).list_topics(timeout=5)
    except KafkaException as exc:
        return False, f"external, unreachable: {exc.args[0].str()}"
    return bool(metadata.brokers), f"external, {len(metadata.brokers)} broker(s)"


def _external_clickhouse(settings: Settings) -> tuple[bool, str]:
    from clickhouse_connect.driver.exceptions import ClickHouseError

    from infra.clickhouse.client import connect

    try:
        client = connect(settings, connect_timeout=5)
    except (ClickHouseError, OSError) as exc:
        return False, f"external, unreachable: {type(exc).__name__}"
    try:
        return True, f"external, ClickHouse {client.server_version}"
    finally:
        client.close()
