"""The pipeline: the engine (batches on Kafka transactions), the stages it runs (normalize, detect,
correlate) with their state stores, and the ClickHouse sink. The tools around it (cli, simulator,
console, containment, hunt) live beside it in ``streams``."""
