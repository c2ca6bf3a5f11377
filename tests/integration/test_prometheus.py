"""A real Prometheus (Debian's) scrapes the real ingest /metrics and sees the contract metrics."""

from __future__ import annotations

import time

import httpx

from tests.prometheus_support import query, running_prometheus
from tests.support import model_id, prediction, running_ingest


def test_prometheus_scrapes_ingested_and_rejected_counts(tansu, redis_url, tmp_path):
    m = model_id("prom")
    with running_ingest(tansu.address, redis_url) as url, \
            running_prometheus(tmp_path, {"ingest": url.removeprefix("http://")}, rules=False) as prom:
        assert httpx.post(f"{url}/v1/predictions", json=[prediction(m, i) for i in range(37)]).status_code == 202
        assert httpx.post(f"{url}/v1/predictions", json=[{"event_id": "x"}]).status_code == 422
        expr = f'vigil_events_ingested_total{{kind="predictions",model_id="{m}"}}'
        deadline = time.monotonic() + 30
        while not (result := query(prom, expr)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert result, "Prometheus never saw the ingest counter"
        assert float(result[0]["value"][1]) == 37
        assert result[0]["metric"]["service"] == "ingest"
        rejected = query(prom, 'vigil_events_rejected_total{kind="predictions",reason="invalid"}')
        assert rejected and float(rejected[0]["value"][1]) >= 1
        up = query(prom, 'up{job="vigil"}')
        assert up and up[0]["value"][1] == "1"
