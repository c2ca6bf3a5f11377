"""schemathesis against the ingest service's own OpenAPI schema: no input gives a 5xx."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support import running_ingest


def test_no_generated_request_gets_a_server_error(tansu, redis_url, tmp_path):
    st = Path(sys.executable).with_name("st")
    with running_ingest(tansu.address, redis_url) as url:
        proc = subprocess.run(
            [str(st), "run", f"{url}/openapi.json", "--checks", "not_a_server_error",
             "--max-examples", "40", "--generation-deterministic", "--request-timeout", "20",
             "--phases", "examples,coverage,fuzzing", "--continue-on-failure"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path,
            env={**os.environ, "SCHEMATHESIS_HOOKS": ""})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    # Every operation was exercised, with many cases, and none failed.
    assert re.search(r"Tested:\s+(\d+)", out) and re.search(r"Selected:\s+(\d+)/\1", out), out[-3000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", out)
    assert generated and generated.group(1) == generated.group(2) and int(generated.group(1)) >= 500, out[-3000:]
