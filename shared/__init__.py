"""Vigil's shared library: contract models, settings, Kafka/Redis helpers, pure statistics."""

__version__ = "0.1.0"
