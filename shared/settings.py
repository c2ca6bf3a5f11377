"""Settings: `VIGIL_*` environment variables, optionally a YAML file named by `VIGIL_CONFIG`.

Every setting has a working default. Environment variables win over the YAML file.

>>> Settings(ingest_port=9000).ingest_port
9000
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by VIGIL_CONFIG (keys are setting names without prefix)."""

    def __init__(self, settings_cls: type[BaseSettings]):
        super().__init__(settings_cls)
        path = os.environ.get("VIGIL_CONFIG")
        self._data: dict[str, Any] = {}
        if path:
            text = Path(path).read_text()
            data = yaml.safe_load(text) or {}
            if not isinstance(data, dict):
                raise ValueError(f"VIGIL_CONFIG={path}: must hold a mapping of setting -> value")
            self._data = {str(k).lower(): v for k, v in data.items()}

    def get_field_value(self, field, field_name):  # pragma: no cover - __call__ is used
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_", extra="ignore")

    # Where things run. Unset bootstrap / redis_url -> `vigil up` embeds them.
    kafka_bootstrap: str | None = None
    redis_url: str | None = None
    embedded_broker: Literal["tansu", "kafka"] = "tansu"
    data_dir: Path = Field(default_factory=lambda: Path.home() / ".vigil")
    host: str = "127.0.0.1"
    ingest_port: int = 8000
    drift_port: int = 8001
    oversight_port: int = 8002
    alerts_port: int = 8003

    # Kafka
    topic_partitions: int = 8  # input topics
    replication_factor: int = 1
    kafka_idempotence: Literal["auto", "on", "off"] = "auto"
    max_record_bytes: int = 900_000  # keep a record under the broker's 1 MiB default
    batch_events: int = 1_000  # events per Kafka record
    publish_timeout_seconds: float = 5.0  # bound for a 503 when the broker is down or hung
    kafka_version: str = "4.1.1"  # Apache Kafka for the embedded `kafka` broker

    # Ingest
    ingest_workers: int = 1  # uvicorn worker processes of `vigil serve ingest`
    api_keys: SecretStr | None = None  # comma-separated bearer keys; unset -> open
    max_body_bytes: int = 32 * 1024 * 1024
    max_events_per_request: int = 50_000
    dedup_ttl_seconds: int = 7 * 86400
    reference_max_rows: int = 1_000_000
    reference_sample: int = 10_000
    redis_timeout_seconds: float = 3.0

    # Drift
    drift_group: str = "vigil-drift"  # consumer group, and the namespace of its Redis checkpoints
    drift_checkpoint_seconds: float = 2.0  # also saved on every window close and on revoke
    drift_label_retention_seconds: int = 7 * 86400  # label time a prediction's key is kept (late vs unmatched)
    drift_max_pending: int = 2_000_000  # predictions waiting for labels per model; past it the oldest windows go

    # Oversight
    oversight_group: str = "vigil-oversight"  # consumer group, and the namespace of its checkpoints
    oversight_checkpoint_seconds: float = 2.0
    oversight_eval_seconds: int = 3600  # evaluated at each event-time hour (the contract's default)
    oversight_days: int = 7  # trailing period of the override analysis
    oversight_lateness_seconds: int = 300  # allowed lateness of reviews and predictions
    oversight_min_reviews: int = 50  # a reviewer's reviews in the period before they are judged
    oversight_low_confidence: float = 0.75  # predictions below this confidence should be reviewed

    # Alerts (grouping and repeats as Prometheus Alertmanager's defaults)
    alerts_group: str = "vigil-alerts"
    group_wait_seconds: float = 30.0
    group_interval_seconds: float = 300.0
    repeat_interval_seconds: float = 4 * 3600.0
    resolve_after_windows: int = 2  # clear windows before an alert resolves
    findings_retention_days: int = 7

    # Notifications (used by the alerts service)
    slack_webhook_url: SecretStr | None = None
    pagerduty_routing_key: SecretStr | None = None
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    webhook_url: str | None = None
    smtp_url: SecretStr | None = None
    routing_file: Path | None = None

    log_level: str = "INFO"

    @field_validator("topic_partitions", "batch_events", "max_record_bytes", "max_body_bytes")
    @classmethod
    def _positive(cls, v: int, info) -> int:
        if v < 1:
            raise ValueError(f"{info.field_name}={v}: must be >= 1")
        return v

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                   dotenv_settings, file_secret_settings):
        return (init_settings, env_settings, _YamlSource(settings_cls), file_secret_settings)

    def api_key_list(self) -> list[str]:
        raw = self.api_keys.get_secret_value() if self.api_keys else ""
        return [k.strip() for k in raw.split(",") if k.strip()]

    def service_urls(self) -> dict[str, str]:
        return {name: f"http://{self.host}:{getattr(self, f'{name}_port')}"
                for name in ("ingest", "drift", "oversight", "alerts")}


@lru_cache
def get_settings() -> Settings:
    return Settings()
