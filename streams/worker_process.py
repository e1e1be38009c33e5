"""Run `aiwarden worker` as a child process (the demo, tests and benchmarks use it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from infra.settings import Settings

# Nested settings groups (AIWARDEN_<GROUP>__<NAME>); other model-valued fields are JSON.
GROUPS = ("kafka", "clickhouse", "worker", "ingest", "detection", "containment", "security_lake")


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that rebuild ``settings`` in a child process (secrets included)."""
    env: dict[str, str] = {}

    def walk(model: BaseModel, prefix: str) -> None:
        for name in type(model).model_fields:
            value: Any = getattr(model, name)
            key = f"{prefix}{name.upper()}"
            if isinstance(value, BaseModel) and name in GROUPS:
                walk(value, f"{key}__")
            elif value is None:
                continue
            elif isinstance(value, SecretStr):
                env[key] = value.get_secret_value()
            else:
                plain = model.model_dump(mode="json", include={name})[name]
                env[key] = plain if isinstance(plain, str) else json.dumps(plain)

    walk(settings, "AIWARDEN_")
    return env


class WorkerProcess:
    """One worker process with its log file; ``kill()`` is a SIGKILL, ``stop()`` a clean stop."""

    command: tuple[str, ...] = ("worker",)  # the ``aiwarden`` subcommand run

    def __init__(self, settings: Settings, log_path: Path, **overrides: str) -> None:
        self.settings = settings
        self.log_path = log_path
        self.overrides = overrides
        self.estate: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def with_estate(self, path: Path) -> WorkerProcess:
        """Detection and containment from estate file ``path`` (and the overrides) only, as an operator's
        worker with ``AIWARDEN_CONFIG`` would read them: edits to the file reach the running worker."""
        self.estate = path
        return self

    def start(self) -> WorkerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIWARDEN_")}
        env.update(settings_env(self.settings))
        if self.estate is not None:
            env = {k: v for k, v in env.items() if not k.startswith(("AIWARDEN_DETECTION__", "AIWARDEN_CONTAINMENT__"))}
            env["AIWARDEN_CONFIG"] = str(self.estate)
        env.update(self.overrides)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "streams.cli", *self.command],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
            )
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_for_log(self, text: str, timeout_s: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.log_path.exists() and text in self.log_path.read_text(errors="replace"):
                return True
            if not self.running:
                return False
            time.sleep(0.2)
        return False


def new_app_id(settings: Settings, prefix: str) -> str:
    """A fresh app id (``<prefix>-<random>``) whose consumer groups start at the topics' current end:
    a test worker under it reads only what the test publishes."""
    app_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
    start_groups_at_end(settings, app_id)
    return app_id


def start_groups_at_end(settings: Settings, app_id: str, timeout_s: float = 30.0) -> None:
    """Commit the current end of every shared aiwarden topic for a new app id's consumer groups (the
    pipeline engine's, the Faust agents' and the sink's), so a fresh deployment or test worker starts
    from now instead of replaying everything the topics hold. Topics it creates itself (changelogs,
    re-key) are untouched."""
    from confluent_kafka import Consumer, TopicPartition

    from infra.kafka.clients import confluent_config, partition_ids
    from infra.kafka.lag import watermarks
    from streams import topics
    from streams.pipeline.build import pipeline_groups

    ends: list[TopicPartition] = []  # read once, committed for both groups
    for group in (*pipeline_groups(app_id), app_id, f"{app_id}-sink"):
        consumer = Consumer(confluent_config(settings, **{"group.id": group, "enable.auto.commit": False}))
        try:
            if not ends:
                for name in topics.ALL_TOPICS:
                    for partition in partition_ids(consumer, name, timeout_s):
                        high = watermarks(consumer, name, partition, timeout_s)[1]
                        ends.append(TopicPartition(name, partition, high))
            consumer.commit(offsets=ends, asynchronous=False)
        finally:
            consumer.close()


