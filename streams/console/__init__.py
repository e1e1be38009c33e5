"""The SOC console: the live alert feed (SSE), read-only views over ClickHouse and the web page."""
