"""A real Prometheus (Debian's) scrapes the real ingest /metrics and sees the contract metrics."""

from __future__ import annotations

import shutil
import subprocess
import time

import httpx
import pytest

from tests.support import free_port, model_id, prediction, running_ingest


@pytest.fixture
def prometheus(tmp_path):
    """Start Prometheus on a free loopback port; yields (url, write_targets)."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed: apt-get install prometheus (make test-deps does)", pytrace=False)
    port = free_port()
    config = tmp_path / "prometheus.yml"
    proc = None

    def start(target: str):
        nonlocal proc
        config.write_text(f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: vigil
    static_configs: [{{targets: ["{target}"], labels: {{service: ingest}}}}]
""")
        proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=2).status_code == 200:
                    return f"http://127.0.0.1:{port}"
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError("prometheus did not become ready: " + (tmp_path / "prometheus.log").read_text()[-2000:])

    yield start
    if proc is not None:
        proc.terminate()
        proc.wait(20)


def query(prom: str, expr: str) -> list[dict]:
    r = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10)
    r.raise_for_status()
    return r.json()["data"]["result"]


def test_prometheus_scrapes_ingested_and_rejected_counts(tansu, redis_url, prometheus):
    m = model_id("prom")
    with running_ingest(tansu.address, redis_url) as url:
        prom = prometheus(url.removeprefix("http://"))
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
