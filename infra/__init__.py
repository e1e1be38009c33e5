"""Infrastructure: settings and the local Kafka and ClickHouse services."""
