"""From finding published to notification received: the alerts service end to end.

    python -m bench.alerts [--broker kafka|tansu] [--rates 250,500,750,1000] [--seconds 10] [--models 0]

Starts the broker and Redis, then for each rate (on an empty Redis database of its own) runs
the alerts service as its own process (`vigil serve alerts`, group_wait and group_interval 0)
and a webhook receiver as another (`bench.delivery`'s), publishes findings to `vigil.findings` at that rate for `--seconds`
(each finding opens a new alert of a new model: the worst case, one notification per
finding; `--models N` spreads them over N models), and times each finding from its
publication to the arrival of the notification that carries it (`measure_latency`). Reports
p50/p99 per rate, the same up to the service applying the finding, the service's CPU per
finding, and the highest rate sustained with p99 under 1 s; the ceiling in the same run is
the dispatcher alone (`bench.delivery`'s measurement, submit -> receiver, no Kafka, no
lifecycle). Results go to bench/results/alerts.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np
import orjson
import psutil

from rich.console import Console
from rich.table import Table

from bench import paced, scratch
from shared import kafka
from shared.runtime import EmbeddedStack, spawn
from shared.settings import Settings
from tests.integration.alerts_support import (ROOT, finding, free_port, private_db, publish, start_at_end,
                                              start_process, wait_for)

console = Console()
TARGET_RATE, TARGET_P99 = 500, 1.0


async def _produce_paced(bootstrap: str, findings: list[dict], rate: float, sent: dict[str, float]) -> float:
    producer = await kafka.start_producer(bootstrap, "off")
    try:
        t0 = time.time()
        futures = []
        async for due in paced(len(findings), rate):
            for f in (findings[k] for k in due):
                sent[f["finding_id"]] = time.time()
                futures.append(await producer.send(kafka.TOPICS["findings"], orjson.dumps(f),
                                                   key=f["model_id"].encode()))
        await asyncio.gather(*futures)
        return time.time() - t0
    finally:
        await producer.stop()


def measure_latency(bootstrap: str, redis_url: str, rate: float, seconds: float, log, models: int = 0,
                    env: dict | None = None, timeout: float = 120.0) -> dict:
    """Run the alerts service as its own process with a webhook receiver in another
    (`bench.delivery`'s), group_wait and group_interval 0, publish `rate` findings/s for
    `seconds`, each opening a new alert (a new model each when `models` is 0, else spread over
    `models` models), and time each from its publication to the arrival of the notification
    carrying it. Returns the percentiles (s), the same from publication to the service applying
    it, and the service's CPU per finding."""
    run = uuid.uuid4().hex[:6]
    n = int(rate * seconds)
    now = datetime.now(timezone.utc)
    model = (lambda i: f"lat-{run}-{i}") if models == 0 else (lambda i: f"lat-{run}-{i % models}")
    findings = [finding(model(i), i, "high", feature=f"f{i}", window_end=now) for i in range(n)]
    port, hook_port = free_port(), free_port()
    url, hook = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{hook_port}"
    receiver = spawn([sys.executable, "-m", "bench.delivery", "--serve", str(hook_port)], stdout=log, cwd=ROOT)
    group = start_at_end(bootstrap, f"bench-alerts-{run}")
    proc = start_process(bootstrap, redis_url, port, group, log, VIGIL_WEBHOOK_URL=hook, VIGIL_GROUP_WAIT_SECONDS=0,
                         VIGIL_GROUP_INTERVAL_SECONDS=0, VIGIL_LOG_LEVEL="WARNING", **(env or {}))
    try:
        def ready():
            if proc.poll() is not None:
                raise RuntimeError(f"the alerts service exited with code {proc.returncode}")
            try:
                return httpx.get(f"{url}/readyz", timeout=2).status_code == 200 and httpx.get(hook, timeout=2)
            except httpx.HTTPError:
                return False
        wait_for(ready, 60, "the alerts service and the receiver ready", 0.2)
        warm = [finding(f"warm-{run}-{i}", i, "high", window_end=now) for i in range(20)]
        publish(bootstrap, warm)
        wait_for(lambda: len(httpx.get(hook, timeout=10).json()) >= 20, 60, "the warm-up notifications", 0.2)
        sent: dict[str, float] = {}
        cpu0 = _cpu_seconds(proc.pid)
        took = asyncio.run(_produce_paced(bootstrap, findings, rate, sent))
        got = wait_for(lambda: (r := httpx.get(f"{hook}/all", timeout=10).json()) and
                       sum(f in r["arrivals"] for f in sent) == n and r, timeout, "every notification", 0.5)
        cpu = _cpu_seconds(proc.pid) - cpu0
    finally:
        proc.terminate()
        receiver.terminate()
        proc.wait(30)
        receiver.wait(10)
    seen, applied = got["arrivals"], got["applied"]
    lat = np.array([seen[f] - sent[f] for f in sent])
    to_apply = np.array([datetime.fromisoformat(applied[f].replace("Z", "+00:00")).timestamp() - sent[f] for f in sent])
    return {"findings": n, "offered_per_s": n / took, "notified": len(lat),
            "p50_s": float(np.percentile(lat, 50)), "p99_s": float(np.percentile(lat, 99)), "max_s": float(lat.max()),
            "applied_p50_s": float(np.percentile(to_apply, 50)), "applied_p99_s": float(np.percentile(to_apply, 99)),
            "cpu_ms_per_finding": 1000 * cpu / n}


def _cpu_seconds(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker", choices=("kafka", "tansu"), default="kafka")
    ap.add_argument("--rates", default="250,500,750,1000", help="findings/s, comma-separated")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--models", type=int, default=0,
                    help="spread the findings over this many models (0: a new model per finding, the worst case)")
    args = ap.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    workdir = scratch("vigil-bench-alerts-")
    stack = EmbeddedStack(Settings(kafka_bootstrap=None, redis_url=None, embedded_broker=args.broker,
                                   data_dir=workdir))
    rows = []
    try:
        with console.status(f"starting {args.broker} and redis"):
            stack.start()
        for rate in rates:
            with console.status(f"{rate:.0f} findings/s for {args.seconds:.0f} s"), \
                    open(workdir / f"alerts-{rate:.0f}.log", "wb") as log:
                rows.append({"rate": rate, **measure_latency(stack.kafka_bootstrap, private_db(stack.redis_url), rate,
                                                             args.seconds, log, models=args.models)})
    finally:
        stack.stop()
    sustained = max((r["rate"] for r in rows if r["p99_s"] < TARGET_P99 and r["notified"] == r["findings"]),
                    default=None)
    t = Table(title=f"alerts: finding published -> notification received ({args.broker}, group_wait 0)")
    for col in ("findings/s offered", "findings", "notified", "p50", "p99", "max", "applied p50 / p99", "CPU/finding"):
        t.add_column(col, justify="right")
    for r in rows:
        ok = r["p99_s"] < TARGET_P99
        t.add_row(f"{r['offered_per_s']:.0f}", f"{r['findings']:,}", f"{r['notified']:,}", f"{r['p50_s'] * 1000:.0f} ms",
                  f"[{'green' if ok else 'red'}]{r['p99_s'] * 1000:.0f} ms[/]", f"{r['max_s'] * 1000:.0f} ms",
                  f"{r['applied_p50_s'] * 1000:.0f} / {r['applied_p99_s'] * 1000:.0f} ms",
                  f"{r['cpu_ms_per_finding']:.2f} ms")
    console.print(t)
    console.print(f"highest rate with p99 < {TARGET_P99:.0f} s: "
                  f"{'none' if sustained is None else f'{sustained:.0f} findings/s'} (target {TARGET_RATE})")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "alerts.json").write_text(json.dumps({"broker": args.broker, "seconds": args.seconds, "runs": rows,
                                                 "sustained_per_s": sustained, "target_rate": TARGET_RATE,
                                                 "target_p99_s": TARGET_P99},
                                                indent=1))
    console.print("the ceiling: the dispatcher alone at the same rates (no Kafka, no lifecycle)")
    from bench import delivery
    return delivery.main(["--seconds", str(args.seconds), "--rates", ",".join(f"{r:.0f}" for r in rates)])


if __name__ == "__main__":
    raise SystemExit(main())
