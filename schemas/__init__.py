"""Data model: raw source formats, the normalized event envelope, findings, the codec, ClickHouse DDL."""
