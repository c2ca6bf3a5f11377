"""Drift throughput with 1, 2 and 4 workers sharing 8 partitions, and the findings of each equal.

    python -m bench.scaling [--workers 1,2,4] [--window-events 15000] [--windows 6]

Eight models, one on each partition of `vigil.predictions` (model ids chosen by the producer's
partitioner), each with `--windows` windows of `--window-events` events (20 numeric features,
one shifted in every other window, so findings are published), encoded once as ingest writes
them. For each worker count, on a fresh Apache Kafka and Redis: produce them all, start that
many `vigil serve drift` processes in one consumer group, and follow the sum of their
`vigil_stream_events_total` (every 50 ms). Throughput = the events counted from the first poll
at which every worker has counted some (the group has settled) and the first two windows of
every model are in (their closes pay the one-off calibration of each reference's null
distributions, about 1 s a model), to the poll that sees them all / the time between; the
workers' CPU over the span is reported. A rebalance after that point is in the figure, as it
would be for a user (a revoked partition's state is saved on revoke, so nothing is counted twice).

The mergeable-state promise, checked on every run: the findings read back from `vigil.findings`
(each finding_id once) equal, finding for finding, those of the pure state on the same records
(`expected_findings`, no broker, one process), whatever the number of workers.

On this 2-core machine the broker, Redis and the workers share the two cores: the curve shows
how far a second core carries, and that a third and fourth worker cost nothing in correctness.
Results: bench/results/scaling.json and the plot bench/results/scaling.svg.
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
from rich.table import Table

from bench import RESULTS, events_counted, save_result, scratch
from bench.drift import RECORD
from shared.kafka import TOPICS
from shared.runtime import EmbeddedStack, free_port
from shared.settings import Settings
from shared.svg import line_chart
from tests.integration import drift_support as ds
from tests.support import events_of, read_records

console = Console()
PARTITIONS = 8


def models_one_per_partition(partitions: int = PARTITIONS) -> list[str]:
    """A model id for each partition, in partition order."""
    found: dict[int, str] = {}
    j = 0
    while len(found) < partitions:
        m = f"bench-scaling-{j}"
        found.setdefault(ds.partition_of(m, partitions), m)
        j += 1
    return [found[p] for p in range(partitions)]


def workload(models: list[str], windows: int, window_events: int) -> tuple[dict[str, list[dict]], list]:
    """Each model's events (its own seeded generator) and all of them as ingest's records."""
    events = {}
    for j, m in enumerate(models):
        rng = np.random.default_rng(100 + j)
        events[m] = [e for w in range(windows) for e in
                     ds.window_events(m, w, window_events, rng, shift={f"f{j:02d}": 1.0} if w % 2 else None)]
        events[m] += ds.window_events(m, windows + 1, 5, rng)  # moves the watermark past the last window
    records = ds.as_ingested([e for evs in events.values() for e in evs], RECORD)
    return events, records


def one_run(workers: int, models: list[str], events: dict[str, list[dict]], records: list, windows: int,
            workdir) -> dict:
    """Throughput and findings of `workers` drift workers on a fresh broker and Redis."""
    stack = EmbeddedStack(Settings(kafka_bootstrap=None, redis_url=None, embedded_broker="kafka",
                                   data_dir=workdir / f"{workers}-workers"))
    procs = []
    try:
        stack.start()
        bootstrap, redis_url = stack.kafka_bootstrap, stack.redis_url
        for j, m in enumerate(models):
            ds.register(redis_url, m, np.random.default_rng(200 + j))
        expected = {}
        for m in models:
            expected.update(ds.expected_findings(redis_url, m, events[m], batch=RECORD))
        ds.produce_records(bootstrap, records)
        total = sum(len(v) for v in events.values())
        group = ds.group()
        ports = [free_port() for _ in range(workers)]
        logs = [open(workdir / f"{workers}-workers-{i}.log", "wb") for i in range(workers)]
        procs = [ds.start_worker(bootstrap, redis_url, group, port, log) for port, log in zip(ports, logs)]
        counters = [partial(events_counted, f"http://127.0.0.1:{port}/metrics") for port in ports]
        ps = [psutil.Process(p.pid) for p in procs]

        def counts() -> list[int]:
            return [c() for c in counters]

        warm = total * 2 // windows

        def settled():
            c = counts()
            return all(c) and sum(c) >= warm and sum(c)

        first = ds.wait_for(settled, 180, "every worker counting", 0.05)
        t0, cpu0 = time.monotonic(), sum(sum(p.cpu_times()[:2]) for p in ps)
        ds.wait_for(lambda: sum(counts()) >= total, 600, "the workers to reach the end of the topic", 0.05)
        t1, cpu1 = time.monotonic(), sum(sum(p.cpu_times()[:2]) for p in ps)
        found = events_of(read_records(bootstrap, TOPICS["findings"], keys=set(models), expect=len(expected),
                                       quiet=2.0, timeout=120))
        by_id: dict[str, dict] = {}
        repeats_differ = sum(by_id.setdefault(f["finding_id"], f) != f for f in found)
        per_worker = counts()
        return {"workers": workers, "events": total, "measured_events": total - first, "seconds": t1 - t0,
                "events_per_s": (total - first) / (t1 - t0), "cpu_cores": (cpu1 - cpu0) / (t1 - t0),
                "events_counted_per_worker": per_worker, "findings": len(by_id), "expected_findings": len(expected),
                "findings_equal_pure_state": by_id == expected, "repeated_findings_that_differ": repeats_differ,
                "_findings": by_id}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        stack.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    ap.add_argument("--window-events", type=int, default=15_000, help="events per window of each model")
    ap.add_argument("--windows", type=int, default=6, help="windows of each model (>= 3; the first two warm up)")
    args = ap.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",")]
    if args.windows < 3 or not counts or min(counts) < 1 or max(counts) > PARTITIONS:
        ap.error(f"--windows must be >= 3 and each worker count in 1..{PARTITIONS}")
    workdir = scratch("vigil-bench-scaling-")
    models = models_one_per_partition()
    with console.status(f"{len(models)} models x {args.windows} windows of {args.window_events:,} events, "
                        "encoded as ingest writes them"):
        events, records = workload(models, args.windows, args.window_events)
    runs = []
    for n in counts:
        with console.status(f"{n} worker(s) on {PARTITIONS} partitions"):
            run = one_run(n, models, events, records, args.windows, workdir)
        runs.append(run)
        console.print(f"{n} worker(s): {run['events_per_s']:,.0f} events/s, {run['cpu_cores']:.2f} cores, "
                      f"{run['findings']} findings, equal to the pure state's: {run['findings_equal_pure_state']}")
    same_across = all(r["_findings"] == runs[0]["_findings"] for r in runs)
    base = runs[0]["events_per_s"] / counts[0]
    table = Table(title=f"drift: workers sharing {PARTITIONS} partitions on Apache Kafka ({os.cpu_count()} cores)")
    for col in ("workers", "events/s", "x one worker", "CPU (cores)", "findings", "= pure state"):
        table.add_column(col, justify="right")
    for r in runs:
        table.add_row(str(r["workers"]), f"{r['events_per_s']:,.0f}", f"{r['events_per_s'] / runs[0]['events_per_s']:.2f}",
                      f"{r['cpu_cores']:.2f}", f"{r['findings']}/{r['expected_findings']}",
                      "[green]yes[/green]" if r["findings_equal_pure_state"] else "[red]NO[/red]")
    console.print(table)
    console.print(f"findings identical across {', '.join(map(str, counts))} workers: "
                  + ("[green]yes[/green]" if same_across else "[red]NO[/red]"))
    RESULTS.mkdir(exist_ok=True)
    svg = line_chart(counts, {"events/s": [r["events_per_s"] for r in runs],
                              "linear (n x the first)": [base * n for n in counts]},
                     title=f"Drift throughput, workers sharing {PARTITIONS} partitions ({os.cpu_count()} cores)",
                     x_label="drift workers", y_label="events/s")
    (RESULTS / "scaling.svg").write_text(svg)
    save_result("scaling", {"partitions": PARTITIONS, "models": models, "window_events": args.window_events,
                            "windows": args.windows, "cores": os.cpu_count(), "findings_identical": same_across,
                            "runs": [{k: v for k, v in r.items() if not k.startswith("_")} for r in runs]})
    console.print(f"results: {RESULTS / 'scaling.json'}, plot: {RESULTS / 'scaling.svg'}")
    return 0 if same_across and all(r["findings_equal_pure_state"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
