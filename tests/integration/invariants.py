"""The invariants every fault-injection test checks, and the harness around them.

After a fault (a killed worker, a rebalance, a broker or ClickHouse restart, a failing webhook
receiver) and once the pipeline has caught up:

1. every published event is in ClickHouse exactly once as hunters see it
   (``SELECT count(), uniqExact(event_id) … FINAL`` equals the number of distinct events published);
2. every labelled attack of the simulator run has exactly one alert (``streams.evaluate.matches``),
   and no alert id has two rows under ``FINAL``;
3. no containment action is executed twice: the receiver handled each action id once (redeliveries
   it absorbed by id are counted, they are the "duplicates seen before dedup").

``Feeder`` publishes a run in paced chunks from a thread so a fault lands mid-stream; ``Pipeline``
waits, with bounded waits that fail with a message, until every consumer group is committed to the
end of what it reads and the invariants can be read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
from confluent_kafka.admin import AdminClient

from infra.kafka.clients import confluent_config
from infra.settings import Settings
from schemas.sources import SOURCES
from streams import topics
from streams.containment.receiver import Receiver
from streams.evaluate import matches
from streams.pipeline.build import pipeline_groups
from streams.publish import Publisher
from streams.simulator import AttackLabel, SimConfig, SimRecord, Simulator
from streams.worker_process import WorkerProcess
from tests.integration.test_sink import Kafka

T = TypeVar("T")

SECRET = "whsec_" + "ZmF1bHQtaW5qZWN0aW9uLXdlYmhvb2stc2VjcmV0"  # base64 of a test secret
# Rule-based attacks that raise one alert each and, for the first two, a quarantine (+ notify).
SCENARIOS = ("model_server_shell", "cryptominer", "logging_tampering")
SLACK_MS = 180_000  # streams.evaluate's default lateness for windowed detectors
SESSION_HOUR = int(time.time()) // 3600  # fixed per session: runs of different tests never share an hour


def wait_until(predicate: Callable[[], T], timeout_s: float, what: str, workers: Iterable[WorkerProcess] = (),
               interval_s: float = 1.0, detail: Callable[[], str] | None = None) -> T:
    """Poll ``predicate`` until truthy; fail with ``what`` (and the workers' logs) after ``timeout_s``,
    or at once if a worker that should be running exited."""
    workers = list(workers)
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        for worker in workers:
            assert worker.running, f"{what}: worker {worker.log_path.name} exited\n{worker.log_tail(60)}"
        if time.monotonic() >= deadline:
            logs = "\n".join(f"--- {w.log_path.name}\n{w.log_tail(30)}" for w in workers)
            raise AssertionError(f"{what}: not after {timeout_s:.0f}s {detail() if detail else ''}\n{logs}")
        time.sleep(interval_s)


# -- the published run
@dataclass
class Run:
    """A simulator run with unique event times: its records, distinct event ids and attack labels."""

    records: list[SimRecord]
    event_ids: list[str]
    labels: list[AttackLabel]
    start_ms: int
    end_ms: int

    @classmethod
    def simulate(cls, seed: int, duration_s: float = 60, rate: float = 100,
                 scenarios: tuple[str, ...] = SCENARIOS, hours_back: int | None = None) -> Run:
        # Event times 31 to 40 hours before the session's start, an hour apart per seed (or ``hours_back``,
        # from 74 on): a run is told apart by its time range (other test modules use the last few hours
        # and two to three days back).
        start_ms = (SESSION_HOUR - (31 + seed % 10 if hours_back is None else hours_back)) * 3_600_000
        simulator = Simulator(SimConfig(seed=seed, duration_s=duration_s, rate=rate, scenarios=scenarios,
                                        start_ms=start_ms))
        records = list(simulator.records())
        ids = sorted({SOURCES[r.source].normalize(r.record).event_id for r in records})
        return cls(records, ids, simulator.labels(), start_ms, start_ms + int(duration_s * 1000))


class Feeder(threading.Thread):
    """Publishes a run in ``chunks`` over about ``seconds`` with one idempotent producer, from a thread."""

    def __init__(self, settings: Settings, run: Run, seconds: float, chunks: int = 20) -> None:
        super().__init__(name="feeder", daemon=True)
        self.publisher = Publisher(settings)
        self.run_ = run
        self.seconds, self.chunks = seconds, chunks
        self.published = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        self.started = time.monotonic()
        try:
            records = self.run_.records
            size = -(-len(records) // self.chunks)
            for start in range(0, len(records), size):
                for record in records[start:start + size]:
                    self.publisher.publish_record(record.source, record.record,
                                                  SOURCES[record.source].primary_key(record.record))
                self.published = min(len(records), start + size)
                # poll returns as soon as it served a delivery report: pace on the clock
                pause_until = time.monotonic() + self.seconds / self.chunks
                while (left := pause_until - time.monotonic()) > 0:
                    self.publisher.producer.poll(left)
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc

    def finish(self, timeout_s: float = 180.0) -> int:
        """Wait for the thread (what is left of its paced feed, plus ``timeout_s``), flush; every record
        must be acknowledged. Returns the count."""
        left = max(0.0, getattr(self, "started", time.monotonic()) + self.seconds - time.monotonic())
        self.join(left + timeout_s)
        assert not self.is_alive(), "the feeder did not finish publishing"
        assert self.error is None, f"the feeder failed: {self.error!r}"
        summary = self.publisher.flush(timeout_s)
        assert summary.failed == 0, f"the producer lost records: {summary.errors}"
        return sum(summary.published.values())


# -- workers and the receiver
def worker(settings: Settings, log_path: Path, app_id: str, webhook_url: str | None = None,
           **overrides: str) -> WorkerProcess:
    """A started worker of ``app_id``; with ``webhook_url`` containment is live (not dry-run)."""
    env = {"AIWARDEN_WORKER__APP_ID": app_id, "AIWARDEN_WORKER__SINK_BATCH_SECONDS": "0.5"}
    if webhook_url:
        env.update({
            "AIWARDEN_CONTAINMENT__WEBHOOK_URL": webhook_url, "AIWARDEN_CONTAINMENT__SECRET": SECRET,
            "AIWARDEN_CONTAINMENT__DRY_RUN": "false", "AIWARDEN_CONTAINMENT__MAX_ATTEMPTS": "200",
            "AIWARDEN_CONTAINMENT__BACKOFF_BASE_S": "0.5", "AIWARDEN_CONTAINMENT__BACKOFF_CAP_S": "4",
            "AIWARDEN_CONTAINMENT__TIMEOUT_S": "2",
        })
    return WorkerProcess(settings, log_path, **{**env, **overrides}).start()


def rss_mib(proc_pid: int) -> float:
    """Resident memory of a process, MiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{proc_pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# -- consumer groups
def group_lag(settings: Settings, group: str) -> dict[str, int] | None:
    """Records per topic the group has not committed on the partitions assigned to its members; None
    while the group has no stable assignment (joining, rebalancing, no member). Changelog topics are
    left out: Faust assigns them to standbys and reads them without committing."""
    admin = AdminClient(confluent_config(settings))
    description = admin.describe_consumer_groups([group], request_timeout=15)[group].result()
    assigned = sorted({tp.topic for m in description.members for tp in m.assignment.topic_partitions
                       if not tp.topic.endswith("-changelog")})
    if description.state.name != "STABLE" or not assigned:
        return None
    kafka = Kafka(settings)
    return {topic: kafka.lag(group, topic) for topic in assigned}


def lags(settings: Settings, app_id: str) -> dict[str, dict[str, int] | None]:
    return {g: group_lag(settings, g) for g in (*pipeline_groups(app_id), app_id, f"{app_id}-sink")}


def caught_up(settings: Settings, app_id: str) -> bool:
    """The pipeline's groups, the Faust agents' group (containment) and the sink group have committed all they read."""
    return all(lag is not None and not any(lag.values()) for lag in lags(settings, app_id).values())


# -- the invariants
@dataclass
class Outcome:
    """What the invariants measured (printed by each test, copied into RELIABILITY.md)."""

    events: int = 0
    final_rows: int = 0
    unique_events: int = 0
    raw_rows: int = 0  # rows before FINAL: redelivered rows the ReplacingMergeTree folds away
    labels: int = 0
    alerts_per_label: dict[str, int] = field(default_factory=dict)
    actions: dict[str, int] = field(default_factory=dict)  # action id -> times executed at the receiver
    redeliveries: int = 0  # deliveries the receiver absorbed as duplicates of an executed id
    topic_duplicates: dict[str, int] = field(default_factory=dict)  # per pipeline topic, read_committed

    def summary(self) -> str:
        return (f"events {self.events}: FINAL rows {self.final_rows}, uniqExact {self.unique_events}, raw rows "
                f"{self.raw_rows} ({self.raw_rows - self.events} duplicates before dedup); labels {self.labels}, "
                f"alerts per label {sorted(self.alerts_per_label.values())}; actions executed "
                f"{sorted(self.actions.values())}, redeliveries absorbed {self.redeliveries}; duplicate records "
                f"on the pipeline's topics (read_committed) {self.topic_duplicates}")


def event_counts(ch: Any, run: Run) -> tuple[int, int, int]:
    """(count FINAL, uniqExact FINAL, count without FINAL) of the run's events (its time range is its own;
    second-precision sources floor a record's time by up to a second)."""
    where = "WHERE time_ms >= {start:Int64} - 1000 AND time_ms < {end:Int64} + 1000"
    window = {"start": run.start_ms, "end": run.end_ms}
    final = ch.query(f"SELECT count(), uniqExact(event_id) FROM aiwarden.events FINAL {where}",  # noqa: S608
                     parameters=window).result_rows[0]
    raw = ch.query(f"SELECT count() FROM aiwarden.events {where}", parameters=window).result_rows[0][0]  # noqa: S608
    return int(final[0]), int(final[1]), int(raw)


def run_alerts(ch: Any, run: Run) -> list[dict[str, Any]]:
    return list(ch.query(
        "SELECT alert_id, first_seen, last_seen, entities, detectors FROM aiwarden.alerts FINAL "
        "WHERE last_seen >= {start:Int64} - {slack:Int64} AND first_seen <= {end:Int64} + {slack:Int64} "
        "AND NOT has(detectors, 'containment')",
        parameters={"start": run.start_ms, "end": run.end_ms, "slack": SLACK_MS},
    ).named_results())


def alerts_by_label(ch: Any, run: Run) -> dict[str, list[str]]:
    alerts = run_alerts(ch, run)
    return {label.attack_id: sorted(a["alert_id"] for a in alerts if matches(a, label, SLACK_MS))
            for label in run.labels}


def one_alert_per_attack(labels: list[AttackLabel], by_label: dict[str, list[str]]) -> bool:
    """Every attack has an alert, and each attack class has as many distinct alerts as attacks. Per class,
    not per label: two attacks of one class in a long run can share an entity (a node, a namespace) and
    overlap in time, and then ``matches`` pairs each of their alerts with both."""
    per_class: dict[str, tuple[int, set[str]]] = {}
    for label in labels:
        count, alerts = per_class.get(label.scenario, (0, set()))
        per_class[label.scenario] = (count + 1, alerts | set(by_label[label.attack_id]))
    return all(by_label.values()) and all(count == len(alerts) for count, alerts in per_class.values())


# -- records on the pipeline's own topics, as a read_committed consumer sees them
ID_FIELDS = {topics.EVENTS: "event_id", topics.FINDINGS: "finding_id"}


def topic_ends(settings: Settings, topic: str) -> dict[int, int]:
    return Kafka(settings).ends(topic)


def duplicate_records(settings: Settings, topic: str, since: dict[int, int], ids: set[str] | None = None) -> int:
    """Records on ``topic`` after ``since`` (offsets per partition) whose id another record there already
    has, read ``read_committed`` to the current end; only ids in ``ids`` when given."""
    from confluent_kafka import Consumer, TopicPartition

    ends = topic_ends(settings, topic)
    consumer = Consumer(confluent_config(settings, **{
        "group.id": "invariants-reader", "enable.auto.commit": False, "isolation.level": "read_committed",
        "enable.partition.eof": True,
    }))
    pending = {p for p, end in ends.items() if end > since.get(p, 0)}
    consumer.assign([TopicPartition(topic, p, since.get(p, 0)) for p in pending])
    seen: set[str] = set()
    duplicates = 0
    deadline = time.monotonic() + 120
    try:
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(1000, 1.0):
                if message.error() is not None:
                    pending.discard(message.partition())
                    continue
                if message.offset() + 1 >= ends[message.partition()]:
                    pending.discard(message.partition())
                if topics.forwarded(message):  # the correlate stage's re-keyed copy of a finding
                    continue
                record_id = orjson.loads(message.value())[ID_FIELDS[topic]]
                if ids is not None and record_id not in ids:
                    continue
                duplicates += record_id in seen
                seen.add(record_id)
        assert not pending, f"could not read {topic} to its end"
    finally:
        consumer.close()
    return duplicates


class Pipeline:
    """The workers of one app id, the run they process and (optionally) the receiver they deliver to."""

    def __init__(self, settings: Settings, ch: Any, app_id: str, run: Run, receiver: Receiver | None = None) -> None:
        self.settings, self.ch, self.app_id, self.run, self.receiver = settings, ch, app_id, run, receiver
        self.workers: list[WorkerProcess] = []
        self.topics_from = {topic: topic_ends(settings, topic) for topic in ID_FIELDS}

    def running(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.running]

    def start_worker(self, log_path: Path, webhook_url: str | None = None, **overrides: str) -> WorkerProcess:
        started = worker(self.settings, log_path, self.app_id, webhook_url, **overrides)
        self.workers.append(started)
        return started

    def landed(self) -> int:
        return event_counts(self.ch, self.run)[1]

    def wait_landed(self, fraction: float, timeout_s: float = 180.0) -> int:
        """Wait until ``fraction`` of the run's events are in ClickHouse (a fault then lands mid-stream)."""
        wanted = int(len(self.run.event_ids) * fraction)
        wait_until(lambda: self.landed() >= wanted, timeout_s, f"{wanted} events landed", self.running())
        return self.landed()

    def decided_actions(self) -> set[str]:
        """Action ids containment decided to send for this run's alerts (status ``pending`` logged)."""
        alert_ids = sorted({a for ids in alerts_by_label(self.ch, self.run).values() for a in ids})
        rows = self.ch.query(
            "SELECT DISTINCT action_id FROM aiwarden.actions WHERE alert_id IN {ids:Array(String)} "
            "AND status = 'pending'", parameters={"ids": alert_ids}).result_rows
        return {r[0] for r in rows}

    def settle(self, timeout_s: float = 240.0, actions: bool = False) -> Outcome:
        """Wait until everything is processed, then check the three invariants."""
        run, workers = self.run, self.running()
        wait_until(lambda: self.landed() >= len(run.event_ids), timeout_s,
                   f"{len(run.event_ids)} events in ClickHouse", workers,
                   detail=lambda: f"(have {self.landed()}; lag per group and topic: "
                                  f"{lags(self.settings, self.app_id)})")
        wait_until(lambda: all(alerts_by_label(self.ch, run).values()), timeout_s,
                   "an alert for every labelled attack", workers, detail=lambda: f"({alerts_by_label(self.ch, run)})")
        if actions:
            assert self.receiver is not None
            receiver = self.receiver

            def delivered() -> bool:
                decided = self.decided_actions()
                return bool(decided) and decided <= set(receiver.handled_ids)

            wait_until(delivered, timeout_s, "every decided action executed at the receiver", workers,
                       detail=lambda: f"(decided {sorted(self.decided_actions())}, "
                                      f"executed {dict(receiver.handled_ids)})")
        wait_until(lambda: caught_up(self.settings, self.app_id), timeout_s,
                   "the worker and sink groups committed to the end of their topics", workers, interval_s=2.0,
                   detail=lambda: f"lag per group and topic: {lags(self.settings, self.app_id)}")
        final, unique, raw = event_counts(self.ch, run)
        by_label = alerts_by_label(self.ch, run)
        alert_rows = self.ch.query(
            "SELECT count(), uniqExact(alert_id) FROM aiwarden.alerts FINAL WHERE alert_id IN {ids:Array(String)}",
            parameters={"ids": sorted({a for ids in by_label.values() for a in ids})}).result_rows[0]
        outcome = Outcome(len(run.event_ids), final, unique, raw, len(run.labels),
                          {k: len(v) for k, v in by_label.items()})
        if self.receiver is not None:
            outcome.actions = dict(self.receiver.handled_ids)
            outcome.redeliveries = self.receiver.snapshot()["duplicates"]
        outcome.topic_duplicates = {
            topics.EVENTS: duplicate_records(self.settings, topics.EVENTS, self.topics_from[topics.EVENTS],
                                             set(run.event_ids)),
            topics.FINDINGS: duplicate_records(self.settings, topics.FINDINGS, self.topics_from[topics.FINDINGS]),
        }
        assert final == unique == len(run.event_ids), f"events not exactly once: {outcome.summary()}"
        assert not any(outcome.topic_duplicates.values()), f"duplicate records on the pipeline's topics: " \
            f"{outcome.summary()}"
        assert alert_rows[0] == alert_rows[1], f"alert ids with two rows under FINAL: {alert_rows}"
        assert one_alert_per_attack(run.labels, by_label), f"labelled attacks without exactly one alert: {by_label}"
        assert all(n == 1 for n in outcome.actions.values()), f"an action executed twice: {outcome.actions}"
        return outcome

    def complete(self, feeder: Feeder, since: float, actions: bool = False) -> tuple[Outcome, float]:
        """Let the feeder finish, settle, check the invariants; also the seconds since ``since``."""
        feeder.finish()
        outcome = self.settle(actions=actions)
        return outcome, time.monotonic() - since

    def stop(self) -> None:
        for w in self.workers:
            w.stop()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
