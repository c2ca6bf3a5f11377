"""One drift worker's sustained throughput from the topic: 20 numeric features, findings included.

    python -m bench.drift [--broker kafka|tansu] [--events 300000] [--window-events 30000]

Starts the broker and Redis, registers a model (spec + reference) the way ingest does,
produces `--events` events (records of 1,000, event time spread over windows of
`--window-events` events each, one feature shifted in every other window so findings are
published), then starts one `vigil serve drift` process and follows its count of events
(`vigil_stream_events_total` on its /metrics, every 20 ms). Throughput = events counted from
the first poll past two windows (the first window's close pays the one-off calibration of
the reference's null distributions, about 1 s) to the poll that sees them all / the time
between; the worker's CPU time over the same span is reported. (Following its checkpoints,
as this did before, counted the idle time to the next periodic save once saves stopped
coming with every window close.)
Target: at least 50,000 events/s. Results go to bench/results/drift.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial

import httpx
import numpy as np
import psutil
from rich.console import Console

from bench import scratch, save_result
from shared.runtime import EmbeddedStack, free_port
from shared.settings import Settings
from tests.integration import drift_support as ds

console = Console()
TARGET = 50_000
RECORD = 1_000


def events_counted(url: str, topic: str = "vigil.predictions") -> int:
    """The worker's `vigil_stream_events_total` for `topic` (0 while it does not answer)."""
    try:
        text = httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return 0
    for line in text.splitlines():
        if line.startswith("vigil_stream_events_total{") and f'topic="{topic}"' in line:
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker", choices=("kafka", "tansu"), default="kafka")
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--window-events", type=int, default=30_000)
    args = ap.parse_args(argv)
    workdir = scratch("vigil-bench-drift-")
    worker = None
    rng = np.random.default_rng(0)
    stack = EmbeddedStack(Settings(kafka_bootstrap=None, redis_url=None, embedded_broker=args.broker,
                                   data_dir=workdir))
    try:
        with console.status(f"starting {args.broker} and redis"):
            stack.start()
        bootstrap, redis_url = stack.kafka_bootstrap, stack.redis_url
        model = "bench-drift"
        ds.register(redis_url, model, rng)
        windows = -(-args.events // args.window_events)
        with console.status(f"producing {args.events:,} events"):
            for w in range(windows + 1):
                n = args.window_events if w < windows else 10
                ds.produce(bootstrap, ds.window_events(model, w, n, rng, shift={"f05": 1.0} if w % 2 else None),
                           batch=RECORD)
        total = windows * args.window_events + 10
        group = ds.group()
        log = open(workdir / "worker.log", "wb")
        port = free_port()
        worker = ds.start_worker(bootstrap, redis_url, group, port, log)
        ps = psutil.Process(worker.pid)
        counted = partial(events_counted, f"http://127.0.0.1:{port}/metrics")
        with console.status("draining the topic with one worker"):
            first = ds.wait_for(lambda: (n := counted()) >= 2 * args.window_events and n, 120,
                                "the first two windows counted", 0.02)
            t0, cpu0 = time.monotonic(), sum(ps.cpu_times()[:2])
            ds.wait_for(lambda: counted() >= total, 600, "the worker to reach the end of the topic", 0.02)
            t1, cpu1 = time.monotonic(), sum(ps.cpu_times()[:2])
        done = total - first
        rate = done / (t1 - t0)
        result = {"broker": args.broker, "events": total, "features": len(ds.FEATURES), "record_events": RECORD,
                  "window_events": args.window_events, "measured_events": done, "seconds": t1 - t0,
                  "events_per_s": rate, "worker_cpu_cores": (cpu1 - cpu0) / (t1 - t0), "target": TARGET,
                  "cores": os.cpu_count()}
        console.print(f"[bold]one drift worker: {rate:,.0f} events/s[/bold] ({done:,} events in {t1 - t0:.1f} s, "
                      f"worker CPU {result['worker_cpu_cores']:.2f} cores; target {TARGET:,})")
        save_result("drift", result)
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
