"""bench.concept on a tiny configuration: the report's structure, and a drift that is detected."""

from __future__ import annotations

import json

from bench import concept


def test_a_small_run_detects_the_abrupt_sea_drift_after_its_position(tmp_path):
    out = tmp_path / "concept.json"
    report = concept.main(["--seeds", "1", "--length", "4000", "--position", "2000", "--widths", "1",
                           "--streams", "SEA 0->3", "--out", str(out)])
    assert json.loads(out.read_text()) == report
    assert (report["length"], report["position"], report["widths"]) == (4000, 2000, [1])
    (res,) = report["results"]
    assert (res["stream"], res["width"], res["onset"]) == ("SEA 0->3", 1, 2000)
    assert res["error_after"] > res["error_before"] + 0.05
    assert set(res["summary"]) == {*concept.DETECTORS, "detector_ungated"}
    for s in res["summary"].values():
        assert {"mean_delay", "median_delay", "median_reported", "detected", "runs", "false_alarms",
                "false_alarms_per_10k"} <= set(s) and s["runs"] == 1
    (run,) = res["runs"]
    for key in ("vigil_online", "adwin_any"):
        assert run[key]["delay"] is not None and 0 <= run[key]["delay"] < 1_000
        assert any(i >= 2000 for i in run[key]["detections"])
