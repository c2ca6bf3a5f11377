"""Benchmarks (`make bench`). Each writes its numbers to bench/results/<name>.json."""
from __future__ import annotations

import asyncio
import atexit
import json
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path


RESULTS = Path(__file__).parent / "results"


def events_counted(url: str, *topics: str) -> int:
    """A stream worker's `vigil_stream_events_total` summed over `topics` (default: the
    predictions), read from its /metrics at `url`; 0 while it does not answer."""
    import httpx
    wanted = {f'topic="{t}"' for t in topics or ("vigil.predictions",)}
    try:
        text = httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return 0
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("vigil_stream_events_total{") and any(w in line for w in wanted))


def save_result(name: str, result: dict) -> Path:
    """Write a benchmark's numbers to bench/results/<name>.json; returns the path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2))
    return path


def scratch(prefix: str) -> Path:
    """A fresh directory for a benchmark's brokers and logs, deleted when the benchmark exits.

    A run writes gigabytes of broker log; left behind, a few runs fill the disk. Set
    VIGIL_BENCH_KEEP=1 to keep the directory (its path is printed) for reading the logs.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.environ.get("VIGIL_BENCH_KEEP"):
        print(f"keeping {path}")
    else:
        atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


async def paced(n: int, rate: float, tick: float = 0.005) -> AsyncIterator[range]:
    """The indices 0..n-1 at `rate` a second: every `tick`, the range now due. One timer per
    tick, not one per item: a timer per item cost the alerts benchmark's publisher 0.36 of a
    core at 500/s, 0.18 this way. Each item's own send time is still the caller's to take."""
    t0, i = time.time(), 0
    while i < n:
        due = min(n, int((time.time() - t0) * rate) + 1)
        if due > i:
            yield range(i, due)
            i = due
        await asyncio.sleep(tick)
