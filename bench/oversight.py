"""One oversight worker's sustained throughput from the topics, its pure ceiling, and the vendor path.

    python -m bench.oversight [--broker kafka|tansu] [--reviews 300000] [--calls 100000]

Reviews: starts the broker and Redis, produces `--reviews` review events (records of 1,000; a
team of 10 reviewers, 4 of them rubber-stamping, event time over 8 days so every hour is
evaluated and findings are published), then starts one oversight worker process and follows
its count of events (`vigil_stream_events_total` on its /metrics, every 20 ms). Throughput =
all events / the time from the worker's partition assignment to the poll that sees them all
counted (group join and start-up excluded; the first fetch and the periodic checkpoints
included); the worker's CPU over the same span is reported. (Following its Redis checkpoints,
as this did before, counted the wait for the next periodic save: runs here last about a
second, so that wait was a good part of the figure.) Target: at least 50,000 review events/s.

Vendor path: on a fresh broker, `--calls` vendor predictions and their `--calls` labels (over
10 days, an SLA registered, so every day is joined, evaluated and reported), measured the same
way, in prediction + label events/s.

Pure ceiling: the same records decoded and applied with the pure pieces in this process
(`services.oversight.state` + evaluation), no broker. Results go to bench/results/oversight.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import psutil
from rich.console import Console
from rich.table import Table

from bench import events_counted, scratch, save_result
from shared import kafka
from shared.events import ModelSpec
from shared.runtime import EmbeddedStack, free_port
from shared.settings import Settings
from services.oversight import state as st
from services.oversight.evaluate import reviews_at, vendor_at
from tests.integration import oversight_support as os_
from tests.integration.drift_support import wait_for

console = Console()
TARGET = 50_000
RECORD = 1_000
SLA = {"accuracy": 0.9, "latency_p95_ms": 150.0, "latency_p99_ms": 400.0, "uptime": 0.99, "min_samples": 100,
       "period_days": 7}


def _pure(streams: dict[str, list[dict]], slas: dict) -> float:
    """Seconds to decode and apply the records and evaluate what became due, in this process."""
    from shared.events import VendorSLA
    slas = {v: VendorSLA(**s).model_dump(mode="json") for v, s in slas.items()}
    records = {k: [v for _, v in kafka.pack_records(evs, RECORD)] for k, evs in streams.items()}
    cfg, spec, state = st.Config(), ModelSpec(), st.State()
    adders = {"reviews": st.add_reviews, "predictions": st.add_predictions, "labels": st.add_labels}
    t0 = time.perf_counter()
    for kind, values in records.items():
        for value in values:
            events, ts, _ = st.validate(kind, kafka.decode_record(value))
            ms = state.model(events[0]["model_id"])
            adders[kind](ms, events, cfg, ts)
            for h in st.due_reviews(ms, cfg):
                [f.model_dump(mode="json") for f in reviews_at("bench", ms, h, cfg, spec, 50)[0]]
            for d in st.due_vendor_days(ms, cfg, spec.label_wait_seconds, 1, lambda v: 7):
                [f.model_dump(mode="json") for f in vendor_at("bench", ms, d.vendor, d.end, spec, slas.get(d.vendor))[0]]
            st.prune(ms, cfg, lambda v: 7)
    return time.perf_counter() - t0


def _through_worker(args, workdir: Path, name: str, streams: dict[str, list[dict]], slas: dict) -> dict:
    stack = EmbeddedStack(Settings(kafka_bootstrap=None, redis_url=None, embedded_broker=args.broker,
                                   data_dir=workdir / name))
    worker = None
    try:
        with console.status(f"{name}: starting {args.broker} and redis"):
            stack.start()
        bootstrap, redis_url = stack.kafka_bootstrap, stack.redis_url
        for vendor, sla in slas.items():
            os_.register_sla(redis_url, vendor, sla)
        records = 0
        with console.status(f"{name}: producing {sum(map(len, streams.values())):,} events"):
            for kind, events in streams.items():
                os_.produce(bootstrap, kind, events, batch=RECORD)
                records += len(list(kafka.pack_records(events, RECORD)))
        group = os_.group()
        log = open(workdir / f"{name}-worker.log", "wb")
        port = free_port()
        worker = os_.start_worker(bootstrap, redis_url, group, port, log)
        ps = psutil.Process(worker.pid)
        done = sum(map(len, streams.values()))
        counted = partial(events_counted, f"http://127.0.0.1:{port}/metrics", *(kafka.TOPICS[k] for k in streams))
        logpath = workdir / f"{name}-worker.log"
        with console.status(f"{name}: draining the topics with one worker"):
            wait_for(lambda: b"worker holds partitions" in logpath.read_bytes(), 120, "the worker's assignment", 0.01)
            t0, cpu0 = time.monotonic(), sum(ps.cpu_times()[:2])
            wait_for(lambda: counted() >= done, 600, "the worker to count every event", 0.02)
            t1, cpu1 = time.monotonic(), sum(ps.cpu_times()[:2])
        return {"events": done, "records": records, "seconds": t1 - t0, "events_per_s": done / (t1 - t0),
                "worker_cpu_cores": (cpu1 - cpu0) / (t1 - t0)}
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        stack.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker", choices=("kafka", "tansu"), default="kafka")
    ap.add_argument("--reviews", type=int, default=300_000)
    ap.add_argument("--calls", type=int, default=100_000)
    args = ap.parse_args(argv)
    workdir = scratch("vigil-bench-oversight-")
    rng = np.random.default_rng(0)
    days = 8
    reviews = os_.team_reviews("bench", rng, days=days, per_day=args.reviews // days,
                               stampers=("rev-0", "rev-3", "rev-5", "rev-8"))
    reviews.append({**reviews[-1], "review_id": "clock", "timestamp": os_.T0 + (days + 1) * os_.DAY})
    preds, labels = os_.vendor_calls("bench", "bench-vendor", rng, range(10), per_day=args.calls // 10,
                                     latency_ms=120.0)
    vendor_streams = {"predictions": preds, "labels": labels}

    with console.status("pure ceiling"):
        pure_reviews = len(reviews) / _pure({"reviews": reviews}, {})
        pure_vendor = (len(preds) + len(labels)) / _pure(vendor_streams, {"bench-vendor": SLA})
    rev = _through_worker(args, workdir, "reviews", {"reviews": reviews}, {})
    ven = _through_worker(args, workdir, "vendor", vendor_streams, {"bench-vendor": SLA})

    table = Table(title=f"oversight: one worker on {args.broker} (target {TARGET:,} review events/s)")
    for col in ("path", "events", "worker events/s", "worker CPU (cores)", "pure ceiling events/s"):
        table.add_column(col, justify="right" if col != "path" else "left")
    table.add_row("reviews", f"{rev['events']:,}", f"{rev['events_per_s']:,.0f}", f"{rev['worker_cpu_cores']:.2f}",
                  f"{pure_reviews:,.0f}")
    table.add_row("vendor (predictions + labels)", f"{ven['events']:,}", f"{ven['events_per_s']:,.0f}",
                  f"{ven['worker_cpu_cores']:.2f}", f"{pure_vendor:,.0f}")
    console.print(table)
    result = {"broker": args.broker, "record_events": RECORD, "target_review_events_per_s": TARGET,
              "reviews": {**rev, "pure_events_per_s": pure_reviews},
              "vendor": {**ven, "pure_events_per_s": pure_vendor}, "cores": os.cpu_count()}
    save_result("oversight", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
