"""`vigil demo`, the README's first command, runs end to end and leaves nothing behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import psutil

from tests.support import free_port


def test_demo_runs_the_stack_and_posts_predictions(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update(VIGIL_DATA_DIR=str(tmp_path), VIGIL_LOG_LEVEL="WARNING",
               **{f"VIGIL_{name}_PORT": str(free_port()) for name in ("INGEST", "DRIFT", "OVERSIGHT", "ALERTS")})
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "demo", "--duration", "6", "--rate", "1500"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out[-3000:]
    assert "Vigil is up" in out
    done = re.search(r"demo done: ([\d,]+) predictions accepted, 0 failed", out)
    assert done and int(done.group(1).replace(",", "")) >= 3_000, out[-3000:]
    leftovers = [p for p in psutil.process_iter(["cmdline"])
                 if str(tmp_path) in " ".join(p.info["cmdline"] or [])]
    assert not leftovers, f"processes left behind: {[p.info['cmdline'] for p in leftovers]}"
