"""Dead letters on the real services: records just under, at and over the broker's stock 1 MB limit each
leave one dead letter that fits, and every record after them is published; `aiwarden dlq replay` after a
wrong setting is fixed lands exactly the missing events in ClickHouse, once, however often it runs."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from infra.kafka.limits import TopicLimits
from infra.settings import Settings
from schemas.dead_letter import KAFKA_DEFAULT_MAX_MESSAGE_BYTES, DeadLetter, letter_id, record_budget
from schemas.sources import normalize_bytes
from streams import topics
from streams.dlq import REPLAY_HEADER
from streams.worker_process import WorkerProcess, new_app_id, settings_env
from tests.integration.test_pipeline_e2e import wait_for
from tests.integration.test_publish import end_offsets, read_from

pytestmark = pytest.mark.integration

FALCO = (b'{"uuid": "%s", "time": "2026-11-25T10:00:00.000000000Z", "rule": "Terminal shell in container", '
         b'"priority": "Notice", "source": "syscall", "output": "%s", "output_fields": {"container.id": '
         b'"3f2a9c1b7d4e", "proc.name": "bash", "proc.cmdline": "bash -i"}}')


def falco(uid: str, size: int = 0) -> bytes:
    """A Falco record, padded to exactly ``size`` bytes when given."""
    line = FALCO % (uid.encode(), b"")
    return FALCO % (uid.encode(), b"x" * max(0, size - len(line)))


def big_event_record(uid: str) -> bytes:
    """~800 KB of Falco record, every string short: its event, with the raw text escaped in it, is ~1.6 MB."""
    fields = {"container.id": "3f2a9c1b7d4e", "proc.name": "bash", "proc.cmdline": "bash -i"}
    fields.update({f"evt.arg.data{i}": '"' * 1000 for i in range(400)})
    return orjson.dumps({"uuid": uid, "time": "2026-11-25T10:00:00.000000000Z", "rule": "Terminal shell in container",
                         "priority": "Notice", "source": "syscall", "output": "shell", "output_fields": fields})


def cli(settings: Settings, *args: str, **env_overrides: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIWARDEN_")}
    env.update(settings_env(settings))
    env.update(env_overrides)
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def publish_around_the_limit(settings: Settings, tmp_path: Path, name: str, **env: str) -> tuple[
        subprocess.CompletedProcess[str], dict[int, bytes], list[bytes], list[dict], list[bytes]]:
    """Publish small bad records, then records just under, at and over the DLQ's limit each followed by
    good ones; returns the run, the big records by line, the good ones, this file's dead letters and
    the raw values of the runtime topic published meanwhile."""
    limit = TopicLimits(settings, (topics.DLQ,)).max_bytes(topics.DLQ)
    run = uuid.uuid4().hex[:8]
    lines: list[bytes] = [b'{"truncated": ', b"\xff\xfe binary"]  # dead letters queued before the big ones
    big: dict[int, bytes] = {}
    good: list[bytes] = []
    for size in (limit - 1, limit, limit + 1):
        big[len(lines) + 1] = falco(f"{run}-big-{size}", size)
        lines.append(big[len(lines) + 1])
        for n in range(3):
            good.append(falco(f"{run}-good-{size}-{n}"))
            lines.append(good[-1])
    assert [len(b) for b in big.values()] == [limit - 1, limit, limit + 1]
    path = tmp_path / f"{name}.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    before = {t: end_offsets(settings, t) for t in (topics.RAW_RUNTIME, topics.DLQ)}
    result = cli(settings, "publish", "--source", "falco", str(path), **env)
    letters = [orjson.loads(v) for _, _, v, _ in read_from(settings, topics.DLQ, before[topics.DLQ])]
    mine = [x for x in letters if x["position"].get("file") == str(path)]
    raw = [v for _, _, v, _ in read_from(settings, topics.RAW_RUNTIME, before[topics.RAW_RUNTIME])]
    return result, big, good, mine, [v for v in raw if run.encode() in v[:60]]


def check_letters(big: dict[int, bytes], letters: list[dict], limit: int) -> None:
    by_line = {x["position"]["line"]: x for x in letters}
    assert sorted(by_line) == [1, 2, *big], sorted(by_line)
    assert len(letters) == len(by_line), "one dead letter per record"
    for line, original in big.items():
        letter = DeadLetter.from_dict(by_line[line])
        assert letter.truncated and letter.raw_bytes == len(original)
        assert letter.raw_sha256 == hashlib.sha256(original).hexdigest()
        kept = letter.original()
        assert original.startswith(kept) and len(kept) > limit // 2
        assert len(letter.encode()) <= record_budget(limit)
    for line in (1, 2):
        assert not by_line[line]["truncated"]


def test_records_around_the_stock_limit_each_leave_one_dead_letter_and_the_run_goes_on(
    service_settings: Settings, tmp_path: Path
) -> None:
    limit = TopicLimits(service_settings, (topics.DLQ,)).max_bytes(topics.DLQ)
    assert limit == KAFKA_DEFAULT_MAX_MESSAGE_BYTES, "the broker under test must run Kafka's stock 1 MB limit"

    # Over AIWARDEN_INGEST__MAX_RECORD_BYTES (1 MiB): refused for their content, dead-lettered, exit 0.
    result, big, good, letters, raw = publish_around_the_limit(service_settings, tmp_path, "refused")
    assert result.returncode == 0, result.stderr
    assert sorted(raw) == sorted(good), "every record after the big ones was published"
    check_letters(big, letters, limit)
    assert all("over the 1048576-byte limit" in x["reason"] for x in letters if x["position"]["line"] in big)
    assert "3 dead letters keep only the first part" in result.stdout

    # Ingest limits raised past the broker's: the broker cannot take them. Dead-lettered all the same,
    # counted as failed with their lines, exit 1.
    result, big, good, letters, raw = publish_around_the_limit(
        service_settings, tmp_path, "broker", AIWARDEN_INGEST__MAX_RECORD_BYTES="4194304",
        AIWARDEN_INGEST__MAX_STRING_CHARS="4194304")
    assert result.returncode == 1, result.stdout + result.stderr
    assert sorted(raw) == sorted(good)
    check_letters(big, letters, limit)
    assert all("over what aiwarden.raw.runtime takes" in x["reason"] for x in letters
               if x["position"]["line"] in big)
    assert "3 records failed" in result.stderr
    for line in big:
        assert f"broker.jsonl:{line}:" in result.stderr, result.stderr


def test_replay_after_a_wrong_setting_is_fixed_lands_the_missing_events_once(
    service_settings: Settings, ch, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    run = uuid.uuid4().hex[:8]
    wrong = 1024 + uuid.uuid4().int % 1000  # a worker limit no other test uses: its reason names it
    reason = f"over the {wrong}-byte limit"
    small = [falco(f"{run}-small-{n}") for n in range(12)]
    large = [falco(f"{run}-large-{n}", 3_000 + n) for n in range(8)]
    huge = falco(f"{run}-huge", 1_200_000)
    lines = [*small[:6], *large, huge, *small[6:]]
    path = tmp_path / "replay.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    huge_id = letter_id("publish", "falco", {"file": str(path), "line": lines.index(huge) + 1},
                        hashlib.sha256(huge).hexdigest())
    ids = {line: normalize_bytes(line, "falco").event_id for line in [*small, *large]}
    count_sql = ("SELECT count(), uniqExact(event_id) FROM aiwarden.events WHERE event_id IN {ids:Array(String)}")

    def landed() -> tuple[int, int]:
        rows, unique = ch.query(count_sql, parameters={"ids": list(ids.values())}).result_rows[0]
        return int(rows), int(unique)

    def letters_in_clickhouse() -> int:
        return int(ch.query("SELECT uniqExact(letter_id) FROM aiwarden.dead_letters WHERE position(reason, {r:String})"
                            " > 0 AND has({ids:Array(String)}, extract(raw, '\"uuid\": \"([^\"]+)\"'))",
                            parameters={"r": reason, "ids": [f"{run}-large-{n}" for n in range(8)]}
                            ).result_rows[0][0])

    app_id = new_app_id(service_settings, "dlq-replay")
    # 1. A worker with a wrong limit: the large records are dead-lettered by normalize.
    worker = WorkerProcess(service_settings, tmp_path / "wrong.log", AIWARDEN_WORKER__APP_ID=app_id,
                           AIWARDEN_INGEST__MAX_RECORD_BYTES=str(wrong)).start()
    try:
        published = cli(service_settings, "publish", "--source", "falco", str(path))
        assert published.returncode == 0, published.stderr  # the huge one dead-lettered at publish, truncated
        assert wait_for(lambda: landed() == (12, 12), 180, worker), worker.log_tail()
        assert wait_for(lambda: letters_in_clickhouse() == 8, 120, worker), worker.log_tail()
    finally:
        worker.stop()
    assert landed() == (12, 12)

    # 2. The setting fixed; the letters replayed while the fixed worker runs.
    worker = WorkerProcess(service_settings, tmp_path / "fixed.log", AIWARDEN_WORKER__APP_ID=app_id).start()
    try:
        listed = cli(service_settings, "dlq", "list", "--since", "1h", "--reason", reason, "--format", "json")
        assert listed.returncode == 0, listed.stderr
        (row,) = [orjson.loads(line) for line in listed.stdout.splitlines()]
        assert (row["source"], row["stage"], row["letters"], row["replayed"]) == ("falco", "normalize", 8, 0), row

        before = end_offsets(service_settings, topics.RAW_RUNTIME)
        first = cli(service_settings, "dlq", "replay", "--since", "1h", "--reason", reason)
        assert first.returncode == 0, first.stderr
        assert "replayed 8; already replayed 0; not replayable 0; failed 0" in first.stdout, first.stdout
        assert wait_for(lambda: landed()[1] == 20, 180, worker), worker.log_tail()

        second = cli(service_settings, "dlq", "replay", "--since", "1h", "--reason", reason)
        assert second.returncode == 0, second.stderr
        assert "replayed 0; already replayed 8; not replayable 0; failed 0" in second.stdout, second.stdout
        replayed = read_from(service_settings, topics.RAW_RUNTIME, before)
        assert sorted(v for _, _, v, _ in replayed) == sorted(large), "each letter re-published once"
        assert all(h[REPLAY_HEADER] and h[topics.SOURCE_HEADER] == b"falco" for _, _, _, h in replayed)

        truncated = cli(service_settings, "dlq", "replay", "--since", "1h", "--id", huge_id)
        assert "replayed 0; already replayed 0; not replayable 1" in truncated.stdout, truncated.stdout
        assert "truncated" in truncated.stderr
        shown = cli(service_settings, "dlq", "show", huge_id)
        assert shown.returncode == 0, shown.stderr
        assert "truncated" in shown.stdout and f"{len(huge)} bytes" in shown.stdout
        exported = cli(service_settings, "dlq", "export", "--since", "1h", "--reason", reason)
        assert sorted(orjson.loads(x)["raw"].encode() for x in exported.stdout.splitlines()) == sorted(large)

        listed = cli(service_settings, "dlq", "list", "--since", "1h", "--reason", reason, "--format", "json")
        (row,) = [orjson.loads(line) for line in listed.stdout.splitlines()]
        assert (row["letters"], row["replayed"]) == (8, 8), row

        # A record within every ingest limit whose event is not (its raw text escaped inside the event
        # doubles it past aiwarden.events' limit): dead-lettered by normalize, the worker goes on.
        wide = big_event_record(f"{run}-wide")
        after = falco(f"{run}-after")
        path.write_bytes(wide + b"\n" + after + b"\n")
        assert cli(service_settings, "publish", "--source", "falco", str(path)).returncode == 0
        after_id = normalize_bytes(after, "falco").event_id
        assert wait_for(lambda: ch.query("SELECT count() FROM aiwarden.events WHERE event_id = {i:String}",
                                         parameters={"i": after_id}).result_rows[0][0] == 1, 120, worker)
        sql = ("SELECT stage, reason, truncated, raw_bytes FROM aiwarden.dead_letters WHERE raw_sha256 = {h:String}")
        sha = hashlib.sha256(wide).hexdigest()
        assert wait_for(lambda: ch.query(sql, parameters={"h": sha}).result_rows, 60, worker)
        ((stage, why, cut, size),) = ch.query(sql, parameters={"h": sha}).result_rows
        assert (stage, cut, size) == ("normalize", True, len(wide)) and "over what aiwarden.events takes" in why
        assert "pipeline engine failed" not in worker.log_path.read_text(errors="replace")
    finally:
        worker.stop()
    # Exactly the missing events, none twice: 20 rows for 20 event ids (no FINAL folding them).
    assert landed() == (20, 20)
