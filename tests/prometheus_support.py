"""A real Prometheus (Debian's package) for tests: started on a free loopback port with the
deploy/ config's scrape jobs pointed at the test's services, and queried over its HTTP API."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support import free_port

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"


def binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.fail("prometheus is not installed: apt-get install prometheus (make test-deps does)", pytrace=False)
    return path


def config_for(targets: Mapping[str, str], interval: str = "1s", rules: bool = True) -> dict:
    """deploy/prometheus/prometheus.yml with its `vigil` job's targets replaced by `targets`
    (service -> host:port), scraping and evaluating every `interval`, loading the real rules."""
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["global"].update(scrape_interval=interval, evaluation_interval=interval)
    cfg["rule_files"] = [str(RULES)] if rules else []
    (job,) = [j for j in cfg["scrape_configs"] if j["job_name"] == "vigil"]
    job["scrape_interval"] = interval
    job["static_configs"] = [{"targets": [addr], "labels": {"service": name}} for name, addr in targets.items()]
    cfg["scrape_configs"] = [job]
    return cfg


@contextlib.contextmanager
def running_prometheus(tmp_path: Path, targets: Mapping[str, str], **kw) -> Iterator[str]:
    """Prometheus scraping `targets` until the block ends; yields its base URL."""
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(config_for(targets, **kw)))
    log = tmp_path / "prometheus.log"
    proc = subprocess.Popen([binary(), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=log.open("w"))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("prometheus did not become ready: " + log.read_text()[-2000:])
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def query(prom: str, expr: str, at: float | None = None) -> list[dict]:
    """An instant query's result vector (raises on a PromQL error)."""
    params = {"query": expr} if at is None else {"query": expr, "time": at}
    r = httpx.get(f"{prom}/api/v1/query", params=params, timeout=30)
    assert r.status_code == 200, f"{expr}: {r.text}"
    return r.json()["data"]["result"]


def query_range(prom: str, expr: str, start: float, end: float, step: float = 2.0) -> list[dict]:
    """A range query's result matrix over [start, end] (raises on a PromQL error)."""
    r = httpx.get(f"{prom}/api/v1/query_range",
                  params={"query": expr, "start": start, "end": end, "step": step}, timeout=30)
    assert r.status_code == 200, f"{expr}: {r.text}"
    return r.json()["data"]["result"]


def panels_of(panels: list[dict]):
    """A dashboard's panels, those inside rows included."""
    for p in panels:
        yield p
        yield from panels_of(p.get("panels") or [])


def concrete(expr: str, values: Mapping[str, str]) -> str:
    """A dashboard query with its Grafana variables ($name, ${name}) replaced by `values`."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], expr)
