"""The pySigma processing pipeline that maps Sigma field names onto aiwarden fields, per log source.

Built from ``fields.LOGSOURCES``: for every log source one ``FieldMappingTransformation`` under a
``LogsourceCondition``; for the cloud audit logs (``raw_fallback``) every other field is prefixed
``raw.`` first, so any CloudTrail / audit field can be named by its dotted path. Both engines use
it: the stream matcher applies it before compiling, the ClickHouse backend as its backend pipeline.
A pipeline object is applied to one rule at a time: build one per use.
"""

from __future__ import annotations

from sigma.processing.conditions import ExcludeFieldCondition, LogsourceCondition
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import AddFieldnamePrefixTransformation, FieldMappingTransformation

from detectors.sigma.fields import LOGSOURCES, RAW_PREFIX, LogSource


def aiwarden_pipeline() -> ProcessingPipeline:
    items: list[ProcessingItem] = []
    for key, source in LOGSOURCES.items():
        def condition(source: LogSource = source) -> LogsourceCondition:  # one per processing item
            return LogsourceCondition(product=source.product, service=source.service, category=source.category)

        ident = key.replace("/", "_")
        if source.raw_fallback:
            items.append(
                ProcessingItem(
                    AddFieldnamePrefixTransformation(RAW_PREFIX),
                    identifier=f"aiwarden_{ident}_raw",
                    rule_conditions=[condition()],
                    field_name_conditions=[ExcludeFieldCondition(fields=list(source.fields) or ["\0"])],
                )
            )
        mapping: dict[str | None, str | list[str]] = dict(source.fields.items())
        items.append(
            ProcessingItem(
                FieldMappingTransformation(mapping),
                identifier=f"aiwarden_{ident}_fields",
                rule_conditions=[condition()],
            )
        )
    return ProcessingPipeline(items=items, name="aiwarden events", priority=20)
