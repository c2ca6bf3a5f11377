"""The model report end to end: a model, its reference and predictions through the real
ingest API onto real Apache Kafka, the real drift worker (`vigil serve drift`) closing 60 s
windows of past event time, the real alerts service serving `GET /v1/models/{id}/report`;
`vigil report` writes it to a file, and Debian's headless Chromium renders that file offline.

The screenshot is kept under the test's tmp_path, and copied to
bench/results/report-screenshot.png when VIGIL_KEEP_SCREENSHOT is set.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest

from services.alerts import report
from tests.e2e.test_operator_page import CHROMIUM, alerts, page_kafka  # noqa: F401 - fixtures
from tests.integration.drift_support import start_worker, wait_for
from tests.support import free_port, model_id, running_ingest
from tests.unit.test_report import Elements

ROOT = Path(__file__).resolve().parents[2]
FEATURES = ("f0", "f1", "f2")
DRIFTING = "f1"
WINDOW = 60
EVENTS = 400  # per window
SHIFT_FROM = 2  # windows 0 and 1 as the reference; f1 shifted by one standard deviation after

pytestmark = [pytest.mark.kafka, pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install "
                                                          "chromium); the report test renders in it")]


def predictions(model: str, t0: int, rng: np.random.Generator, windows: int) -> list[dict]:
    """EVENTS events per window from t0, and one in the next window (its watermark closes the last)."""
    out = []
    for w in range(windows):
        x = rng.normal(size=(EVENTS, len(FEATURES)))
        if w >= SHIFT_FROM:
            x[:, FEATURES.index(DRIFTING)] += 1.0
        ts = t0 + w * WINDOW + np.sort(rng.uniform(0, WINDOW - 0.01, size=EVENTS))
        out += [{"event_id": f"{model}-{w}-{i}", "model_id": model, "timestamp": float(ts[i]),
                 "features": dict(zip(FEATURES, x[i].round(5).tolist())), "prediction": int(i % 2),
                 "confidence": 0.8} for i in range(EVENTS)]
    out.append({**out[-1], "event_id": f"{model}-close", "timestamp": float(t0 + windows * WINDOW + 1)})
    return out


def decode_png(data: bytes) -> np.ndarray:
    """An 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes) as an (h, w, channels) array."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, head = 8, [], None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        assert zlib.crc32(kind + body) == struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0], kind
        pos += 12 + n
        if kind == b"IHDR":
            head = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    w, h, depth, colour, _, _, interlace = head
    assert depth == 8 and colour in (2, 6) and interlace == 0, head
    bpp = 3 if colour == 2 else 4
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8).reshape(h, 1 + w * bpp)
    out = np.zeros((h, w * bpp), dtype=np.uint8)
    prev = np.zeros(w * bpp, dtype=np.uint8)
    for y in range(h):
        kind, line = raw[y, 0], raw[y, 1:]
        if kind == 0:
            cur = line.copy()
        elif kind == 1:  # sub: a running sum per channel, modulo 256
            cur = np.cumsum(line.reshape(w, bpp), axis=0, dtype=np.uint64).astype(np.uint8).reshape(-1)
        elif kind == 2:  # up
            cur = line + prev
        else:  # average (3) and Paeth (4): byte by byte
            cur, up = bytearray(line.tobytes()), prev.tobytes()
            for i in range(len(cur)):
                a = cur[i - bpp] if i >= bpp else 0
                b = up[i]
                if kind == 3:
                    cur[i] = (cur[i] + ((a + b) >> 1)) & 255
                    continue
                c = up[i - bpp] if i >= bpp else 0
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            cur = np.frombuffer(bytes(cur), dtype=np.uint8)
        out[y], prev = cur, cur
    return out.reshape(h, w, bpp)


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


def heatmap_tiers(text: str) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for cell in sorted(Elements(text).cells, key=lambda c: int(c["data-start"])):
        rows.setdefault(cell["feature"], []).append(cell["data-tier"])
    return rows


def test_report_of_a_drifting_model_served_written_and_rendered(alerts, tmp_path):  # noqa: F811
    url, settings, _ = alerts
    rng = np.random.default_rng(11)
    model, windows = model_id("report"), 6
    t0 = int(time.time()) // WINDOW * WINDOW - (windows + 2) * WINDOW  # past event time: windows close at once
    log = open(tmp_path / "drift.log", "w")
    drift = start_worker(settings.kafka_bootstrap, settings.redis_url, f"drift-report-{model}", free_port(), log)
    try:
        with running_ingest(settings.kafka_bootstrap, settings.redis_url) as ingest, httpx.Client(timeout=30) as c:
            spec = {"task": "binary_classification", "risk_tier": "medium", "owners": ["ana@example.com"],
                    "window_seconds": WINDOW, "allowed_lateness_seconds": 0,
                    "features": {f: {"type": "numeric"} for f in FEATURES}}
            assert c.put(f"{ingest}/v1/models/{model}", json=spec).status_code == 200
            ref = {f: rng.normal(size=4000).round(5).tolist() for f in FEATURES}
            ref |= {"prediction": [i % 2 for i in range(4000)], "confidence": [0.8] * 4000}
            res = c.put(f"{ingest}/v1/models/{model}/reference", json=ref)
            assert res.status_code == 200, res.text
            res = c.post(f"{ingest}/v1/predictions", json=predictions(model, t0, rng, windows))
            assert res.status_code == 202 and res.json()["accepted"] == windows * EVENTS + 1, res.text

            def served():
                res = c.get(f"{url}/v1/models/{model}/report")
                if res.status_code != 200:
                    return None
                rows = heatmap_tiers(res.text)
                alerts_html = res.text.split('<section id="alerts">', 1)[1].split("</section>", 1)[0]
                listed = DRIFTING in alerts_html and "data_drift" in alerts_html
                return res if listed and len(rows.get(DRIFTING, [])) == windows else None

            res = wait_for(served, 60, f"the report of {model} with {windows} windows and its alert", interval=0.5)
        assert res.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in res.headers["content-security-policy"]
        rows = heatmap_tiers(res.text)
        assert set(rows) == set(FEATURES)
        # the drifting feature's row: low before the shift, high or critical from it on
        assert rows[DRIFTING][:SHIFT_FROM] == ["low"] * SHIFT_FROM, rows
        assert all(t in ("high", "critical") for t in rows[DRIFTING][SHIFT_FROM:]), rows
        assert all(t in ("low", "medium") for f in FEATURES if f != DRIFTING for t in rows[f]), rows
        assert Elements(res.text).cells[0]["feature"] == DRIFTING  # the most drifting feature first
        page = res.text
        assert f'<span id="model-id">{model}</span>' in page and "binary_classification" in page
        assert "human review" in page  # the critical drift switched the model to human review
        assert "enable_human_review" in page.split('<section id="actions">', 1)[1]

        # unknown model: 404 from the API and a clear message from the command
        missing = httpx.get(f"{url}/v1/models/nobody-{model}/report")
        assert missing.status_code == 404 and "nothing recorded" in missing.json()["detail"]

        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        out = tmp_path / "reports" / f"{model}.html"
        cmd = [sys.executable, "-m", "services.cli", "report", model, "-o", str(out), "--url", url]
        done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert str(out.resolve()) in done.stdout
        written = out.read_text()
        assert heatmap_tiers(written) == rows and f"Vigil report: {model}" in written
        gone = subprocess.run([*cmd[:4], f"nobody-{model}", "-o", str(tmp_path / "x.html"), "--url", url],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert gone.returncode == 1 and "knows nothing of it" in gone.stderr and not (tmp_path / "x.html").exists()
    finally:
        drift.terminate()
        drift.wait(20)
        log.close()

    # the written file, rendered offline in headless Chromium
    shot = tmp_path / "report-screenshot.png"
    profile = tmp_path / "chromium-profile"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--disable-background-networking", "--no-first-run", f"--user-data-dir={profile}",
                    f"--screenshot={shot}", "--window-size=1280,2000", out.resolve().as_uri()],
                   capture_output=True, timeout=60, start_new_session=True)
    img = decode_png(shot.read_bytes())[:, :, :3]
    assert img.shape[:2] == (2000, 1280)
    pixels = img.reshape(-1, 3)
    assert len(np.unique(pixels, axis=0)) > 100  # text, lines and fills: a rendered page, not a blank one
    assert (pixels.min(axis=1) < 200).mean() > 0.03
    hot = sum(int(np.all(pixels == rgb(report.TIER_COLOURS[t]), axis=1).sum()) for t in ("high", "critical"))
    assert hot > 20 * 20 * (windows - SHIFT_FROM)  # the drifting feature's cells are drawn in their tiers' colours
    if os.environ.get("VIGIL_KEEP_SCREENSHOT"):
        keep = ROOT / "bench" / "results" / "report-screenshot.png"
        keep.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, keep)
