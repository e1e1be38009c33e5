"""Collectors: ``aiwarden ingest`` (HTTP endpoints senders post to) and ``aiwarden collect`` (pulled sources)."""
