"""From finding published to notification received: the alerts service end to end.

    python -m bench.alerts [--broker kafka|tansu] [--rates 250,500,750,1000] [--seconds 10]

Starts the broker and Redis, then for each rate runs the alerts service as its own process
(`vigil serve alerts`, group_wait and group_interval 0, a local webhook receiver), publishes
findings to `vigil.findings` at that rate for `--seconds` (each finding opens a new alert of a
new model: the worst case, one notification per finding), and times each finding from its
publication to the arrival of the notification that carries it
(`tests.integration.alerts_support.measure_latency`). Reports p50/p99 per rate and the
highest rate sustained with p99 under 1 s; the ceiling in the same run is the dispatcher
alone (`bench.delivery`'s measurement, submit -> receiver, no Kafka, no lifecycle).
Results go to bench/results/alerts.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench import scratch
from shared.runtime import EmbeddedStack
from shared.settings import Settings
from tests.integration.alerts_support import measure_latency

console = Console()
TARGET_RATE, TARGET_P99 = 500, 1.0


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
                rows.append({"rate": rate, **measure_latency(stack.kafka_bootstrap, stack.redis_url, rate,
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
