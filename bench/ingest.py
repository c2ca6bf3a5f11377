"""Ingest throughput: HTTP end to end into the broker, with the ceilings measured in the same run.

    python -m bench.ingest [--broker kafka|tansu] [--seconds 20] [--concurrency 8]

1. validation alone: `parse_events` + the record encoding on the same 1,000-event bodies;
2. producing alone: the same records sent with the same acks=all producer, no HTTP;
3. HTTP end to end: `vigil serve ingest` as its own process, loaded by a client process
   posting pre-serialised 1,000-event batches (20 features), each a new set of event_ids;
   resident memory of the ingest process sampled under that load.
Results are printed as a table and written to bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psutil
from rich.console import Console
from rich.table import Table

from bench import scratch
from services.commands import wait_ready
from shared import kafka
from shared.runtime import EmbeddedStack, free_port
from shared.settings import Settings

console = Console()
BATCH = 1_000
FEATURES = 20
SETTINGS = Settings()


def make_body(batch_no: int, rng: np.random.Generator) -> bytes:
    """A 1,000-event body as the emitter sends it (RFC 3339 timestamps; epoch seconds, which the
    contract also accepts, take pydantic's path instead of the fast one)."""
    x = rng.normal(size=(BATCH, FEATURES)).round(5)
    at = datetime.fromtimestamp(1_767_225_600 + batch_no, timezone.utc).isoformat().replace("+00:00", "Z")
    events = [{"event_id": f"b{batch_no}-{i}", "model_id": f"bench-{batch_no % 4}", "model_version": "v1",
               "timestamp": at, "features": {f"f{j:02d}": float(x[i, j]) for j in range(FEATURES)},
               "prediction": int(x[i, 0] > 0), "confidence": 0.8, "latency_ms": 12.5} for i in range(BATCH)]
    return json.dumps(events).encode()


def _records(body: bytes) -> list[tuple[bytes, bytes]]:
    """What the ingest route does with a body before publishing: validate, make records."""
    from services.ingest.routes import to_records
    from services.ingest.validation import parse_events
    events, errors, raw = parse_events("predictions", body, "application/json")
    assert not errors
    return to_records("predictions", events, raw, SETTINGS)


def bench_validation(bodies: list[bytes], seconds: float) -> float:
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        _records(bodies[n // BATCH % len(bodies)])
        n += BATCH
    return n / (time.perf_counter() - started)


async def bench_produce(bootstrap: str, bodies: list[bytes], seconds: float, inflight: int = 8) -> float:
    records = [r for body in bodies[:inflight] for r in _records(body)]
    producer = await kafka.start_producer(bootstrap)
    n, started = 0, time.perf_counter()
    try:
        while time.perf_counter() - started < seconds:
            futures = [await producer.send(kafka.TOPICS["predictions"], value=v, key=k) for k, v in records[:inflight]]
            await asyncio.gather(*futures)
            n += BATCH * len(futures)
    finally:
        await producer.stop()
    return n / (time.perf_counter() - started)


LOADER = r"""
import asyncio, sys, time, httpx, json
url, seconds, conc, tag, paths = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4].encode(), sys.argv[5:]
templates = [open(p, 'rb').read() for p in paths]
print('loaded', flush=True)
async def main():
    done, errors, lat, sent = 0, 0, [], 0
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=conc)) as c:
        end = time.perf_counter() + seconds
        async def worker():
            nonlocal done, errors, sent
            while time.perf_counter() < end:
                k, j = sent % len(templates), sent
                sent += 1
                # every request a new set of event_ids: template k's "b<k>-<i>" become "<tag>r<j>-<i>"
                body = templates[k].replace(b'"b%d-' % k, b'"%sr%d-' % (tag, j))
                t = time.perf_counter()
                r = await c.post(url, content=body, headers={'content-type': 'application/json'})
                lat.append(time.perf_counter() - t)
                if r.status_code == 202: done += r.json()['accepted']
                else: errors += 1
        t0 = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(conc)])
        wall = time.perf_counter() - t0
    lat.sort()
    print(json.dumps({'events': done, 'errors': errors, 'seconds': wall,
                      'p50_ms': 1000*lat[len(lat)//2], 'p99_ms': 1000*lat[int(len(lat)*0.99)]}))
asyncio.run(main())
"""


def bench_http(bootstrap: str, redis_url: str, workdir: Path, seconds: float, conc: int,
               pids: dict[str, int], workers: int = 1, profile: Path | None = None) -> dict:
    port = free_port()
    env = {**os.environ, "VIGIL_KAFKA_BOOTSTRAP": bootstrap, "VIGIL_REDIS_URL": redis_url,
           "VIGIL_INGEST_PORT": str(port), "VIGIL_LOG_LEVEL": "WARNING", "VIGIL_INGEST_WORKERS": str(workers)}
    server = subprocess.Popen([sys.executable, "-m", "services.cli", "serve", "ingest"], env=env)
    try:
        wait_ready(f"http://127.0.0.1:{port}", 60, [server])
        rng = np.random.default_rng(1)
        paths = []
        for k in range(16):  # templates; the loader gives each request new event_ids
            p = workdir / f"body{k}.json"
            p.write_bytes(make_body(k, rng))
            paths.append(str(p))
        proc = psutil.Process(server.pid)
        loader = subprocess.Popen([sys.executable, "-c", LOADER, f"http://127.0.0.1:{port}/v1/predictions",
                                   str(seconds), str(conc), workdir.name, *paths], stdout=subprocess.PIPE, text=True)
        spy = None
        if profile is not None:  # py-spy: where the ingest process spends its time under load
            spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(server.pid),
                                    "--duration", str(int(seconds * 0.8)), "--format",
                                    "flamegraph" if profile.suffix == ".svg" else "raw", "--output", str(profile)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert loader.stdout.readline().strip() == "loaded"  # bodies in memory: the clock starts
        groups = {"ingest": [proc, *proc.children(recursive=True)], "loader": [psutil.Process(loader.pid)],
                  **{name: [psutil.Process(pid)] for name, pid in pids.items()}}

        def cpu() -> dict[str, float]:
            return {k: sum(sum(p.cpu_times()[:2]) for p in ps) for k, ps in groups.items()}

        rss: list[int] = []
        cpu0, t0 = cpu(), time.perf_counter()
        while loader.poll() is None:
            rss.append(sum(p.memory_info().rss for p in groups["ingest"]))
            cpu1, wall = cpu(), time.perf_counter() - t0
            time.sleep(0.25)
        result = json.loads(loader.stdout.read())
        if spy is not None:
            spy.wait(60)
        result["cpu_cores"] = {k: (cpu1[k] - cpu0[k]) / wall for k in cpu0}
        result["rss_mb_max"] = max(rss) / 2**20 if rss else None
        result["rss_mb_median"] = float(np.median(rss)) / 2**20 if rss else None
        result["events_per_s"] = result["events"] / result["seconds"]
        return result
    finally:
        server.terminate()
        server.wait(20)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker", choices=("kafka", "tansu"), default="kafka")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--concurrency", type=int, default=12, help="requests in flight (12 keeps two workers busy)")
    ap.add_argument("--workers", default="1,2", help="ingest worker counts to measure, comma-separated")
    ap.add_argument("--profile", type=Path, default=None,
                    help="py-spy the ingest process into this file (a flame graph if it ends in .svg, else collapsed stacks)")
    args = ap.parse_args(argv)

    workdir = scratch("vigil-bench-")
    rng = np.random.default_rng(0)
    bodies = [make_body(b, rng) for b in range(16)]
    stack = EmbeddedStack(Settings(kafka_bootstrap=None, redis_url=None, embedded_broker=args.broker,
                                   data_dir=workdir))
    try:
        with console.status(f"starting {args.broker} and redis"):
            stack.start()
        bootstrap, pids = stack.kafka_bootstrap, {"broker": stack.procs[args.broker].pid,
                                                  "redis": stack.procs["redis"].pid}
        with console.status("ceiling 1: validation + encoding alone"):
            validate = bench_validation(bodies, args.seconds / 2)
        with console.status("ceiling 2: producing alone (acks=all)"):
            produce = asyncio.run(bench_produce(bootstrap, bodies, args.seconds / 2))
        http = {}
        for n, workers in enumerate(int(w) for w in args.workers.split(",")):
            with console.status(f"HTTP end to end, {workers} ingest worker(s), {args.seconds:.0f}s, "
                                f"{args.concurrency} connections"):
                run_dir = workdir / f"http{n}"
                run_dir.mkdir()
                http[workers] = bench_http(bootstrap, stack.redis_url, run_dir, args.seconds, args.concurrency,
                                           pids, workers, args.profile)
    finally:
        stack.stop()
    ceiling = min(validate, produce)
    table = Table(title=f"ingest, {BATCH}-event batches x {FEATURES} features, broker {args.broker}, {os.cpu_count()} cores")
    table.add_column("path")
    table.add_column("events/s", justify="right")
    table.add_column("notes")
    table.add_row("validation + encoding alone", f"{validate:,.0f}", "one core, no I/O")
    table.add_row("producing alone (acks=all)", f"{produce:,.0f}", "same records, no HTTP, no Redis")
    for workers, h in http.items():
        table.add_row(f"[bold]HTTP end to end, {workers} worker(s)[/bold]", f"[bold]{h['events_per_s']:,.0f}[/bold]",
                      f"{h['errors']} errors; per request p50 {h['p50_ms']:.0f} ms, p99 {h['p99_ms']:.0f} ms")
        table.add_row("  share of ceiling", f"{h['events_per_s'] / ceiling:.0%}", "of min(validation, producing)")
        table.add_row("  CPU under load (cores)", "", " / ".join(f"{k} {v:.2f}" for k, v in h["cpu_cores"].items()))
        table.add_row("  ingest RSS under load", f"{h['rss_mb_max']:.0f} MiB", f"all workers, max (median {h['rss_mb_median']:.0f})")
    console.print(table)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "ingest.json").write_text(json.dumps({
        "broker": args.broker, "batch_events": BATCH, "features": FEATURES, "cores": os.cpu_count(),
        "validation_events_per_s": validate, "produce_events_per_s": produce,
        "http_by_workers": http}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
