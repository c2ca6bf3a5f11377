"""Ingest: HTTP API that validates events and publishes them to Kafka."""
