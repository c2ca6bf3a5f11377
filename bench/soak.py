"""Soak: the whole stack under the demo fleet's steady traffic for `--minutes`, resident memory
of every service sampled as it runs.

    python -m bench.soak [--minutes 10] [--rate 2000] [--broker tansu|kafka]

Starts what `vigil demo` starts (the embedded broker and Redis, the four services, the local
Slack and PagerDuty receivers) and sends the demo fleet's traffic at `--rate` predictions/s
(plus their reviews and labels) for `--minutes`, sampling each process's RSS every
`--every` seconds. Memory is called flat when, over the second half of the run (after the
label join, the windows and the 7-day oversight history have filled), each service's RSS
grows by less than 10% and less than 32 MiB. The broker's and Redis's memory is reported, not
judged: Tansu keeps its log in memory and applies no retention, and Redis holds the ingest
idempotency keys for their TTL, so both grow with the traffic of a run shorter than those. Results: bench/results/soak.json, and the RSS over
time as a plot, bench/results/soak.svg.
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import numpy as np
import psutil
from rich.console import Console
from rich.table import Table

from bench import RESULTS, scratch, save_result

console = Console()
MIB = 1024 * 1024
FLAT_SHARE, FLAT_MIB = 0.10, 32
SERVICES = ("ingest", "drift", "oversight", "alerts")  # judged; the broker and Redis are reported


def verdict(times: list[float], rss: list[float]) -> dict:
    """Growth of one process's RSS over the second half of the run: first and last quarter-of-
    the-half medians, and the least-squares slope (MiB per minute)."""
    t, r = np.asarray(times), np.asarray(rss) / MIB
    half = t >= t[0] + (t[-1] - t[0]) / 2
    th, rh = t[half], r[half]
    q = max(1, len(rh) // 4)
    start, end = float(np.median(rh[:q])), float(np.median(rh[-q:]))
    slope = float(np.polyfit(th / 60, rh, 1)[0]) if len(th) > 1 else 0.0
    growth = end - start
    return {"rss_mib_start_of_second_half": round(start, 1), "rss_mib_end": round(end, 1),
            "rss_mib_peak": round(float(r.max()), 1), "growth_mib": round(growth, 1),
            "growth_share": round(growth / start, 4) if start else None, "slope_mib_per_min": round(slope, 3),
            "flat": growth < FLAT_MIB and (growth / start if start else 0) < FLAT_SHARE}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=2_000.0, help="predictions per second")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between memory samples")
    parser.add_argument("--broker", choices=("tansu", "kafka"), default="tansu")
    args = parser.parse_args(argv)

    from services.commands import Stack
    from services.demo import run_demo
    from services.receivers import PagerDutyReceiver, SlackReceiver
    from shared.settings import Settings

    home = scratch("vigil-soak-")
    for k in [k for k in os.environ if k.startswith("VIGIL_")]:
        del os.environ[k]
    os.environ.update(VIGIL_DATA_DIR=str(home), VIGIL_LOG_LEVEL="WARNING", VIGIL_GROUP_WAIT_SECONDS="2",
                      VIGIL_GROUP_INTERVAL_SECONDS="10")
    seconds = args.minutes * 60
    samples: list[dict] = []
    with SlackReceiver() as slack, PagerDutyReceiver() as pagerduty:
        os.environ.update(VIGIL_SLACK_WEBHOOK_URL=slack.url, VIGIL_PAGERDUTY_URL=pagerduty.url,
                          VIGIL_PAGERDUTY_ROUTING_KEY="vigil-soak")
        settings = Settings(embedded_broker=args.broker)
        with Stack(settings) as stack:
            procs = {name: psutil.Process(c.pid) for name, c in zip(SERVICES, stack.children)}
            for name, proc in stack.embedded.procs.items():  # the embedded broker and Redis
                if proc.pid:
                    procs[name] = psutil.Process(proc.pid)
            result: dict = {}
            sender = threading.Thread(target=lambda: result.setdefault("code", run_demo(
                stack.urls["ingest"], duration=seconds, speed=86400 * 9 / seconds, rate=args.rate,
                alerts_url=stack.urls["alerts"], settle=5.0, summary_path=home / "soak-summary.json",
                bootstrap=stack.embedded.kafka_bootstrap,
                receivers={"slack": slack, "pagerduty": pagerduty})), daemon=True)
            t0 = time.monotonic()
            sender.start()
            while sender.is_alive():
                row = {"t": round(time.monotonic() - t0, 1)}
                for name, p in procs.items():
                    try:
                        row[name] = p.memory_info().rss
                    except psutil.Error:
                        row[name] = None
                samples.append(row)
                sender.join(args.every)
    names = [n for n in samples[0] if n != "t"]
    times = [s["t"] for s in samples]
    per = {n: verdict([s["t"] for s in samples if s[n]], [s[n] for s in samples if s[n]]) for n in names}
    out = {"minutes": args.minutes, "rate": args.rate, "broker": args.broker, "every": args.every,
           "samples": samples, "services": per, "demo_exit": result.get("code"),
           "flat": all(v["flat"] for n, v in per.items() if n in SERVICES)}
    save_result("soak", out)
    plot(times, {n: [s[n] / MIB if s[n] else None for s in samples] for n in names}, RESULTS / "soak.svg",
         f"Vigil soak: resident memory over {args.minutes:g} min at {args.rate:,.0f} predictions/s ({args.broker})")
    t = Table(title=f"soak: {args.minutes:g} min, {args.rate:,.0f} predictions/s, {args.broker}")
    for col in ("process", "RSS MiB (2nd half start)", "end", "peak", "growth MiB", "MiB/min", "flat"):
        t.add_column(col, justify="left" if col == "process" else "right")
    for n, v in per.items():
        t.add_row(n, f"{v['rss_mib_start_of_second_half']:.1f}", f"{v['rss_mib_end']:.1f}", f"{v['rss_mib_peak']:.1f}",
                  f"{v['growth_mib']:+.1f}", f"{v['slope_mib_per_min']:+.2f}",
                  ("[green]yes[/]" if v["flat"] else "[red]no[/]") if n in SERVICES else "[dim]not judged[/]")
    console.print(t)
    console.print(f"Vigil's services flat: {'[green]yes[/]' if out['flat'] else '[red]NO[/]'}; "
                  f"results: {RESULTS / 'soak.json'}, plot: {RESULTS / 'soak.svg'}")
    return out


def plot(times: list[float], series: dict[str, list[float | None]], path, title: str) -> None:
    """A line plot of each series over time, as a self-contained SVG."""
    from shared.svg import line_chart
    path.write_text(line_chart([t / 60 for t in times], series, title=title, x_label="minutes", y_label="RSS MiB"))


if __name__ == "__main__":
    main()
