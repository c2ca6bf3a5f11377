"""Settings: defaults, VIGIL_* environment variables, and a YAML file named by VIGIL_CONFIG."""

from __future__ import annotations

import pytest

from shared.settings import Settings


def test_every_setting_has_a_working_default(monkeypatch):
    for key in [k for k in __import__("os").environ if k.startswith("VIGIL_")]:
        monkeypatch.delenv(key)
    s = Settings()
    assert (s.ingest_port, s.drift_port, s.oversight_port, s.alerts_port) == (8000, 8001, 8002, 8003)
    assert s.kafka_bootstrap is None and s.redis_url is None and s.embedded_broker == "tansu"
    assert s.api_key_list() == []


def test_yaml_file_is_read_and_environment_wins(tmp_path, monkeypatch):
    config = tmp_path / "vigil.yaml"
    config.write_text("ingest_port: 9100\nredis_url: redis://cache:6379/0\napi_keys: a, b\n")
    monkeypatch.setenv("VIGIL_CONFIG", str(config))
    monkeypatch.setenv("VIGIL_INGEST_PORT", "9200")
    s = Settings()
    assert s.ingest_port == 9200  # the environment wins over the file
    assert s.redis_url == "redis://cache:6379/0"
    assert s.api_key_list() == ["a", "b"]
    assert "a, b" not in repr(s)  # keys are secret: never in a repr or a log line


def test_bad_values_are_refused_with_the_setting_named(tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIL_BATCH_EVENTS", "0")
    with pytest.raises(ValueError, match="batch_events=0: must be >= 1"):
        Settings()
    monkeypatch.delenv("VIGIL_BATCH_EVENTS")
    config = tmp_path / "list.yaml"
    config.write_text("- 1\n- 2\n")
    monkeypatch.setenv("VIGIL_CONFIG", str(config))
    with pytest.raises(ValueError, match="must hold a mapping"):
        Settings()
