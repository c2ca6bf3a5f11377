"""One drift worker's sustained throughput from the topic: 20 numeric features, findings included.

    python -m bench.drift [--broker kafka|tansu] [--events 300000] [--window-events 30000]
                          [--checkpoint-seconds 2.0]

Starts the broker and Redis, registers a model (spec + reference) the way ingest does,
produces `--events` events (records of 1,000 as ingest writes them: validated by the
contract's models, RFC 3339 timestamps, `variant` and `error` written out; event time spread
over windows of `--window-events` events each, one feature shifted in every other window so
findings are published), then starts one `vigil serve drift` process (with the shipped checkpoint
interval, as bench.labels runs it; the tests use 0.5 s) and follows its count of events
(`vigil_stream_events_total` on its /metrics, every 20 ms). Throughput = events counted from
the first poll past two windows (the first window's close pays the one-off calibration of
the reference's null distributions, about 1 s) to the poll that sees them all / the time
between; the worker's CPU time over the same span is reported. (Following its checkpoints,
as this did before, counted the idle time to the next periodic save once saves stopped
coming with every window close.)
In the same run, before the broker, two references on windows of the same shape
(`--pure-windows` of them, the first two a warm-up):

- the worker's path without a broker: the same records, decoded, checked and applied by
  `DriftWorker.handle` in process (what the worker does per fetch, minus Kafka and Redis) —
  the ceiling the broker run is measured against;
- the NumPy floor of the same statistics: `WindowState.update` on ready-made columns in
  batches of 1,000 (hash_ids included) plus `evaluate` per window — what no decoding, no
  event check and no per-event Python would cost, in microseconds per event.

Target (issue 10): at least 150,000 events/s. Results go to bench/results/drift.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial

import numpy as np
import psutil
from rich.console import Console

from bench import events_counted, scratch, save_result
from shared.runtime import EmbeddedStack, free_port
from shared.settings import Settings
from tests.integration import drift_support as ds

console = Console()
TARGET = 150_000  # issue 10 (issue 9's, with the label join on: 69,700)
RECORD = 1_000
FETCH_RECORDS = 8  # records per fetch handed to the worker in process (~1 MiB, as the consumer's)


def without_broker(model: str, spec_json: dict, ref_json: dict, windows: int, window_events: int,
                   rng: np.random.Generator, redis_url: str) -> dict:
    """Events/s of `DriftWorker.handle` in process on records of RECORD events (its per-window
    history written to the real Redis at `redis_url`, as the worker's is), and the NumPy floor of
    the same statistics, both over windows 2.. (0 and 1 warm the caches up)."""
    import asyncio
    from types import SimpleNamespace

    import redis.asyncio as aioredis

    from bench.labels import Feed
    from bench.stats import update_in_batches
    from services import stream
    from services.drift.app import TOPIC, DriftWorker, Registry
    from shared.history import History
    from shared.stats.baseline import Baseline
    from shared.stats.window import WindowLayout, evaluate

    settings = Settings()
    if os.environ.get("VIGIL_BENCH_GC") != "default":
        stream.tune_gc()  # as `vigil serve drift` does once started
    worker = DriftWorker(settings)
    worker.registry = Registry(None, worker.window_sample, Feed(spec_json, ref_json, model))
    part = stream.Part(worker.new_state())
    base = Baseline.from_profile(ref_json)
    layout = WindowLayout.of(base, worker.window_sample)
    names = list(ds.FEATURES)

    async def run() -> dict:
        client = aioredis.from_url(redis_url)
        worker.history = History(client, "drift", settings.findings_retention_days * 86400)
        path_s = floor_s = 0.0
        measured = offset = 0
        try:
            for w in range(windows + 1):
                events = ds.window_events(model, w, window_events if w < windows else 10, rng,
                                          shift={"f05": 1.0} if w % 2 else None)
                records = []
                for key, value in ds.as_ingested(events, RECORD):
                    records.append(SimpleNamespace(topic=TOPIC, key=key, value=value, offset=offset))
                    offset += 1
                x = np.array([[e["features"][f] for e in events] for f in names])
                ids = [e["event_id"] for e in events]
                t = time.perf_counter()
                for i in range(0, len(records), FETCH_RECORDS):
                    await worker.handle(part, TOPIC, records[i:i + FETCH_RECORDS])
                spent = time.perf_counter() - t
                t = time.perf_counter()
                evaluate(update_in_batches(layout, ids, names, x), base)
                floor = time.perf_counter() - t
                if 2 <= w < windows:
                    path_s, floor_s, measured = path_s + spent, floor_s + floor, measured + len(events)
        finally:
            await client.aclose()
        return {"windows": windows - 2, "events": measured, "path_events_per_s": measured / path_s,
                "path_us_per_event": path_s / measured * 1e6, "floor_events_per_s": measured / floor_s,
                "floor_us_per_event": floor_s / measured * 1e6}

    return asyncio.run(run())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker", choices=("kafka", "tansu"), default="kafka")
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--window-events", type=int, default=30_000)
    ap.add_argument("--checkpoint-seconds", type=float, default=Settings().drift_checkpoint_seconds,
                    help="the worker's periodic checkpoint (default: the shipped VIGIL_DRIFT_CHECKPOINT_SECONDS)")
    ap.add_argument("--pure-windows", type=int, default=6, help="windows of the in-process references (>= 3)")
    args = ap.parse_args(argv)
    if args.pure_windows < 3:
        ap.error("--pure-windows: must be >= 3 (the first two warm up)")

    workdir = scratch("vigil-bench-drift-")
    worker = None
    rng = np.random.default_rng(0)
    stack = EmbeddedStack(Settings(kafka_bootstrap=None, redis_url=None, embedded_broker=args.broker,
                                   data_dir=workdir))
    try:
        with console.status(f"starting {args.broker} and redis"):
            stack.start()
        bootstrap, redis_url = stack.kafka_bootstrap, stack.redis_url
        with console.status("the worker's path without a broker, and the NumPy floor"):
            pure_rng = np.random.default_rng(1)
            pure = without_broker("bench-drift-pure", ds.spec(), ds.reference(pure_rng), args.pure_windows,
                                  args.window_events, pure_rng, redis_url)
        console.print(f"without a broker: {pure['path_events_per_s']:,.0f} events/s ({pure['path_us_per_event']:.2f} "
                      f"µs an event); NumPy floor of the same statistics {pure['floor_us_per_event']:.2f} µs an event")
        model = "bench-drift"
        ds.register(redis_url, model, rng)
        windows = -(-args.events // args.window_events)
        with console.status(f"producing {args.events:,} events"):
            for w in range(windows + 1):
                n = args.window_events if w < windows else 10
                events = ds.window_events(model, w, n, rng, shift={"f05": 1.0} if w % 2 else None)
                ds.produce_records(bootstrap, ds.as_ingested(events, RECORD))
        total = windows * args.window_events + 10
        group = ds.group()
        log = open(workdir / "worker.log", "wb")
        port = free_port()
        worker = ds.start_worker(bootstrap, redis_url, group, port, log, args.checkpoint_seconds)
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
                  "us_per_event": 1e6 / rate, "without_broker": pure, "cores": os.cpu_count()}
        console.print(f"[bold]one drift worker: {rate:,.0f} events/s[/bold] ({done:,} events in {t1 - t0:.1f} s, "
                      f"{1e6 / rate:.2f} µs an event, worker CPU {result['worker_cpu_cores']:.2f} cores; "
                      f"{rate / pure['path_events_per_s']:.0%} of the path without a broker, "
                      f"{pure['floor_us_per_event'] * rate / 1e6:.0%} of it is the statistics' floor; "
                      f"target {TARGET:,})")
        save_result("drift", result)
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
