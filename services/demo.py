"""`vigil demo`: a simulated fleet of model servers posting to the ingest API, shown live.

The fleet: a credit-risk classifier whose `income` feature drifts halfway through, a
fraud scorer that stays stable, and a document classifier calling a vendor whose latency
creeps up. Event time runs `speed` times faster than the wall clock.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import httpx
import numpy as np
from rich.live import Live
from rich.table import Table

FEATURES = 20


@dataclass
class SimModel:
    model_id: str
    drift_feature: str | None = None  # mean shifts by one standard deviation after the midpoint
    vendor: str | None = None
    sent: int = 0
    duplicates: int = 0
    errors: int = 0
    specs: dict = field(default_factory=dict)

    def spec(self) -> dict:
        return {"task": "binary_classification", "positive_label": 1, "risk_tier": "high" if self.drift_feature else "medium",
                "owners": [f"{self.model_id}-team@example.com"],
                "features": {f"f{j:02d}": {"type": "numeric"} for j in range(FEATURES)}}

    def batch(self, rng: np.random.Generator, n: int, start: datetime, seconds: float, drifted: bool) -> list[dict]:
        x = rng.normal(0.0, 1.0, size=(n, FEATURES))
        if drifted and self.drift_feature is not None:
            x[:, int(self.drift_feature[1:])] += 1.0
        score = 1 / (1 + np.exp(-(x[:, 0] + 0.5 * x[:, 1])))
        offsets = np.sort(rng.uniform(0, seconds, size=n))
        events = []
        for i in range(n):
            e = {"event_id": uuid.uuid4().hex, "model_id": self.model_id, "model_version": "v1",
                 "timestamp": (start + timedelta(seconds=float(offsets[i]))).isoformat(),
                 "features": {f"f{j:02d}": round(float(x[i, j]), 4) for j in range(FEATURES)},
                 "prediction": int(score[i] > 0.5), "confidence": round(float(max(score[i], 1 - score[i])), 4)}
            if self.vendor:
                e["vendor"] = self.vendor
                e["latency_ms"] = round(float(rng.gamma(4.0, 30.0 * (1.5 if drifted else 1.0))), 2)
            events.append(e)
        return events


def fleet() -> list[SimModel]:
    return [SimModel("credit-risk", drift_feature="f03"), SimModel("fraud-score"),
            SimModel("doc-classifier", vendor="acme-ocr")]


def _table(models: list[SimModel], elapsed: float, event_time: datetime) -> Table:
    t = Table(title=f"vigil demo — {elapsed:5.1f}s wall, event time {event_time:%Y-%m-%d %H:%M} UTC")
    for col in ("model", "predictions accepted", "duplicates", "rejected/failed", "note"):
        t.add_column(col, justify="right" if col != "model" and col != "note" else "left")
    for m in models:
        note = f"drifting {m.drift_feature}" if m.drift_feature else (f"vendor {m.vendor}" if m.vendor else "stable")
        t.add_row(m.model_id, f"{m.sent:,}", f"{m.duplicates:,}", f"[red]{m.errors}[/red]" if m.errors else "0", note)
    return t


def run_demo(ingest_url: str, duration: float = 30.0, speed: float = 60.0, rate: float = 2_000.0,
             api_key: str | None = None, seed: int = 7) -> int:
    rng = np.random.default_rng(seed)
    models = fleet()
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    client = httpx.Client(base_url=ingest_url, headers=headers, timeout=30)
    for m in models:
        client.put(f"/v1/models/{m.model_id}", json=m.spec()).raise_for_status()
    event_start = datetime.now(timezone.utc).replace(microsecond=0)
    started = time.monotonic()
    tick = 0.5
    per_tick = max(1, int(rate * tick / len(models)))
    with Live(_table(models, 0.0, event_start), refresh_per_second=4) as live:
        while (elapsed := time.monotonic() - started) < duration:
            event_now = event_start + timedelta(seconds=elapsed * speed)
            for m in models:
                events = m.batch(rng, per_tick, event_now, tick * speed, drifted=elapsed > duration / 2)
                try:
                    r = client.post("/v1/predictions", json=events)
                    if r.status_code == 202:
                        m.sent += r.json()["accepted"]
                        m.duplicates += r.json()["duplicates"]
                    else:
                        m.errors += len(events)
                except httpx.HTTPError:
                    m.errors += len(events)
            live.update(_table(models, elapsed, event_now))
            time.sleep(max(0.0, tick - (time.monotonic() - started - elapsed)))
    client.close()
    total = sum(m.sent for m in models)
    failed = sum(m.errors for m in models)
    print(f"demo done: {total:,} predictions accepted, {failed:,} failed, in {duration:.0f}s")
    return 0 if failed == 0 else 1
