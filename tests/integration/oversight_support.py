"""Helpers for the oversight integration tests and bench: scenarios, producing, workers, expected findings."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson
import redis

from shared import kafka
from shared.events import ModelSpec
from shared.runtime import spawn
from services.oversight import state as st
from services.oversight.evaluate import coverage_at, reviews_at, vendor_at

DAY = 86_400
T0 = 1_699_920_000  # a multiple of 86,400 (2023-11-14 00:00 UTC)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEAM = [f"rev-{i}" for i in range(10)]


def team_reviews(model_id: str, rng: np.random.Generator, days: int = 8, per_day: Sequence[int] | int = 600,
                 rates: Callable[[str, int], float] | None = None, stampers: Sequence[str] = (),
                 anchoring: float | None = None, prefix: str = "rv") -> list[dict]:
    """Reviews of TEAM over `days` days (event time in order). A reviewer's override rate is
    `rates(reviewer, day)` (default 15 %), 0 for `stampers`. With `anchoring` (probability), each
    review carries `human_initial_decision`: the reviewer first disagrees with the AI ~30 % of the
    time and then switches to the AI's answer with that probability."""
    counts = [per_day] * days if isinstance(per_day, int) else list(per_day)
    out = []
    for d, n in enumerate(counts):
        ts = np.sort(T0 + d * DAY + rng.uniform(0, DAY, n))
        who = rng.choice(TEAM, n)
        ai = rng.integers(0, 2, n)
        u = rng.uniform(size=n)
        for i in range(n):
            r = str(who[i])
            p = 0.0 if r in stampers else (rates(r, d) if rates else 0.15)
            a = int(ai[i])
            e = {"review_id": f"{prefix}-{model_id}-{d}-{i}", "model_id": model_id, "case_id": f"p-{model_id}-{d}-{i}",
                 "reviewer_id": r, "ai_prediction": a, "ai_confidence": 0.6, "timestamp": float(ts[i])}
            if anchoring is None:
                e["human_decision"] = 1 - a if u[i] < p else a
            else:
                first = 1 - a if u[i] < 0.3 else a
                e["human_initial_decision"] = first
                e["human_decision"] = a if first != a and rng.uniform() < anchoring else first
            out.append(e)
    return out


def vendor_calls(model_id: str, vendor: str, rng: np.random.Generator, days: Sequence[int], per_day: int = 300,
                 latency_ms: float = 100.0, accuracy: float = 0.92, error_rate: float = 0.001,
                 label_delay: float = 600.0, prefix: str = "vc") -> tuple[list[dict], list[dict]]:
    """Vendor predictions (log-normal latency with median `latency_ms`) and their labels."""
    preds, labels = [], []
    for d in days:
        ts = np.sort(T0 + d * DAY + rng.uniform(0, DAY - 1, per_day))
        y = rng.integers(0, 2, per_day)
        right = rng.uniform(size=per_day) < accuracy
        lat = rng.lognormal(np.log(latency_ms), 0.3, per_day)
        err = rng.uniform(size=per_day) < error_rate
        for i in range(per_day):
            eid = f"{prefix}-{model_id}-{d}-{i}"
            preds.append({"event_id": eid, "model_id": model_id, "timestamp": float(ts[i]), "features": {},
                          "prediction": int(y[i] if right[i] else 1 - y[i]), "confidence": 0.9,
                          "latency_ms": float(lat[i]), "vendor": vendor, "error": bool(err[i])})
            labels.append({"event_id": eid, "model_id": model_id, "label": int(y[i]),
                           "timestamp": float(ts[i] + label_delay)})
    labels.sort(key=lambda e: e["timestamp"])
    return preds, labels


def low_confidence_predictions(model_id: str, reviews: list[dict], rng: np.random.Generator, reviewed: float,
                               extra: int = 0) -> list[dict]:
    """Predictions for the reviewed cases (confidence 0.6), of which only a `reviewed` share keep
    their review's case_id; plus `extra` unreviewed low-confidence predictions."""
    out = []
    for e in reviews:
        eid = e["case_id"] if rng.uniform() < reviewed else "u" + e["case_id"]
        out.append({"event_id": eid, "model_id": model_id, "timestamp": e["timestamp"] - 1.0, "features": {},
                    "prediction": e["ai_prediction"], "confidence": 0.6})
    out.sort(key=lambda e: e["timestamp"])
    return out


# --- broker, registry, workers ----------------------------------------------------------------

async def _produce(bootstrap: str, topic: str, events: list[dict], batch: int) -> None:
    producer = await kafka.start_producer(bootstrap, "off")
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in kafka.pack_records(events, batch)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def produce(bootstrap: str, kind: str, events: list[dict], batch: int = 500) -> None:
    asyncio.run(_produce(bootstrap, kafka.TOPICS[kind], events, batch))


def register(redis_url: str, model_id: str, **spec: Any) -> None:
    r = redis.Redis.from_url(redis_url)
    r.set(f"vigil:registry:model:{model_id}", orjson.dumps(ModelSpec(**spec).model_dump(mode="json")))
    r.close()


def register_sla(redis_url: str, vendor: str, sla: dict) -> None:
    from shared.events import VendorSLA
    r = redis.Redis.from_url(redis_url)
    r.set(f"vigil:registry:vendor:{vendor}", orjson.dumps(VendorSLA(**sla).model_dump(mode="json")))
    r.close()


def group() -> str:
    return f"oversight-test-{uuid.uuid4().hex[:8]}"


def start_worker(bootstrap: str, redis_url: str, group_id: str, port: int, log, **env: str) -> subprocess.Popen:
    environ = {**os.environ, "VIGIL_KAFKA_BOOTSTRAP": bootstrap, "VIGIL_REDIS_URL": redis_url,
               "VIGIL_OVERSIGHT_GROUP": group_id, "VIGIL_OVERSIGHT_PORT": str(port),
               "VIGIL_OVERSIGHT_CHECKPOINT_SECONDS": "0.5", "VIGIL_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1", **env}
    return spawn([sys.executable, "-m", "services.oversight.app"], stdout=log, env=environ, cwd=ROOT)


def checkpoint_offsets(redis_url: str, group_id: str) -> dict[int, dict[str, int]]:
    r = redis.Redis.from_url(redis_url)
    out = {}
    for k in r.scan_iter(f"vigil:checkpoint:{group_id}:*"):
        if k.endswith(b":owner"):
            continue
        out[int(k.rsplit(b":", 1)[1])] = orjson.loads(r.get(k))["offsets"]
    r.close()
    return out


# --- the findings of an uninterrupted run, from the pure pieces -------------------------------

def expected_findings(streams: dict[str, list[dict]], spec: ModelSpec | None = None,
                      slas: dict[str, dict | None] | None = None, order: Sequence[str] | None = None,
                      batch: int = 500, cfg: st.Config | None = None, min_reviews: int = 50) -> dict[str, dict]:
    """Run the pure state and evaluation over each topic's records (as `pack_records` cuts them),
    interleaving the topics round-robin in `order`: finding_id -> finding."""
    from shared.events import VendorSLA
    spec, cfg = spec or ModelSpec(), cfg or st.Config()
    slas = {v: None if s is None else VendorSLA(**s).model_dump(mode="json") for v, s in (slas or {}).items()}
    state, out = st.State(), {}
    queues = {k: [orjson.loads(v) for _, v in kafka.pack_records(evs, batch)] for k, evs in streams.items()}
    order = list(order or queues)
    adders = {"reviews": st.add_reviews, "predictions": st.add_predictions, "labels": st.add_labels}
    period = lambda v: int((slas.get(v) or {}).get("period_days", 7))  # noqa: E731
    while any(queues.values()):
        for kind in order:
            if not queues.get(kind):
                continue
            events = queues[kind].pop(0)
            by_model: dict[str, list] = {}
            for e in events:
                by_model.setdefault(e["model_id"], []).append(e)
            for model_id, evs in by_model.items():
                ms = state.model(model_id)
                adders[kind](ms, evs, cfg)
                found = []
                for h in st.due_reviews(ms, cfg):
                    found += reviews_at(model_id, ms, h, cfg, spec, min_reviews)[0]
                for h in st.due_coverage(ms, cfg):
                    found += coverage_at(model_id, ms, h, cfg, spec)[0]
                positive = spec.positive_label if spec.positive_label is not None else 1
                for d in st.due_vendor_days(ms, cfg, spec.label_wait_seconds, positive, period):
                    found += vendor_at(model_id, ms, d.vendor, d.end, spec, slas.get(d.vendor))[0]
                st.prune(ms, cfg, period)
                for f in found:
                    out[f.finding_id] = f.model_dump(mode="json")
    return out
