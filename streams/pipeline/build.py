"""The pipeline as the worker runs it: the engine with the normalize, detect and correlate stages."""

from __future__ import annotations

from typing import Any

from infra.settings import Settings
from streams import topics
from streams.pipeline.correlate import Correlation
from streams.pipeline.detect import Detection, rekey_topic, rekey_topic_of
from streams.pipeline.engine import Engine, hop_group
from streams.pipeline.normalize import Normalization
from streams.soc.compacted import TopicView
from streams.soc.exceptions import Exceptions


def pipeline_groups(app_id: str) -> dict[str, tuple[str, ...]]:
    """The pipeline's consumer groups of app ``app_id`` and the topics each reads (as ``build_pipeline``
    routes them): for tools that position or watch them."""
    return {
        hop_group(app_id, "normalize"): topics.RAW_TOPICS,
        hop_group(app_id, "detect"): (topics.EVENTS, rekey_topic_of(app_id)),
        hop_group(app_id, "correlate"): (topics.FINDINGS,),
    }


def build_pipeline(settings: Settings) -> tuple[Engine, dict[str, Any]]:
    """The engine with every stage routed and its stores declared; also the stages by name."""
    engine = Engine(settings)
    normalization = Normalization(settings, engine.output)
    engine.route("normalize", topics.RAW_TOPICS, normalization.raw_batch)

    rekey = engine.internal_topic(rekey_topic(settings), settings.kafka.partitions)
    detection = Detection(
        settings, engine.output,
        states=engine.store("detector-state", topics.EVENTS),
        rekeyed=engine.store("rekeyed-state", rekey),
        assets=engine.store("inventory-state", topics.EVENTS),
        models=engine.store("model-checkpoints", topics.EVENTS),
    )
    engine.route("detect", [topics.EVENTS], detection.events_batch)
    engine.route("detect", [rekey], detection.rekeyed_batch)

    def restore_models(assigned: set[str]) -> None:  # once per assignment, not once per partition
        if topics.EVENTS in assigned:
            detection.checkpoints.restore()

    engine.on_assigned(restore_models)
    # Models learn while events flow; a checkpoint is also due when they stop (a backlog drained
    # within one interval would otherwise leave only the checkpoint of the first batch).
    checkpoints = engine.stores["model-checkpoints"]
    engine.every_loop(lambda: detection.checkpoints.maybe_save(sorted(checkpoints.partitions)))

    exceptions = Exceptions()
    correlation = Correlation(settings, engine.output, states=engine.store("correlation-state", topics.FINDINGS),
                              exceptions=exceptions)
    engine.route("correlate", [topics.FINDINGS], correlation.findings_batch)
    return engine, {"normalize": normalization, "detect": detection, "correlate": correlation,
                    "exceptions": TopicView(settings, topics.EXCEPTIONS, exceptions.apply)}
