"""Benchmarks (`make bench`). Each writes its numbers to bench/results/<name>.json."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path


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
