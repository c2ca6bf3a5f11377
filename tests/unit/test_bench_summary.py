"""bench.summary: every benchmark's JSON -> results.json and a Markdown table of figures and ratios.

The sample JSONs have the structure each bench module writes (the keys in its code); concept's
and labels' (pure part) come from real, small runs of those benchmarks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

import bench
from bench import concept, labels, summary

ROOT = Path(__file__).resolve().parents[2]
PEER = "ceiling or peer (same run)"


def http(events_per_s: float) -> dict:  # bench.ingest's bench_http result
    return {"events": int(events_per_s * 15), "errors": 0, "seconds": 15.0, "p50_ms": 112.0, "p99_ms": 240.0,
            "cpu_cores": {"ingest": 0.82, "loader": 0.3, "broker": 0.4, "redis": 0.1},
            "rss_mb_max": 118.0, "rss_mb_median": 110.0, "events_per_s": events_per_s}


def follow(per_s: float, counted: int) -> dict:  # bench.labels' _follow result
    return {"counted": counted, "first_counted": 1000, "seconds": counted / per_s, "per_s": per_s,
            "worker_cpu_cores": 0.71, "start_to_first_s": 2.1, "rss_mb_max": 400.0, "rss_mb_end": 390.0,
            "stalled": None, "first_half": {"per_s": 98_500.0, "worker_cpu_cores": 0.7}, "py_spy_second_half": None}


def detector(median: float | None, fa: int = 0) -> dict:  # bench.concept's summary()
    return {"mean_delay": median, "median_delay": median, "median_reported": median, "detected": 5, "runs": 5,
            "false_alarms": fa, "false_alarms_per_10k": 0.0}


def latency_run(rate: float, p99: float) -> dict:  # bench.alerts' rows: rate + measure_latency()
    n = int(rate * 10)
    return {"rate": rate, "findings": n, "offered_per_s": rate, "notified": n, "p50_s": p99 / 3, "p99_s": p99,
            "max_s": p99 * 1.5, "applied_p50_s": 0.01, "applied_p99_s": 0.03, "cpu_ms_per_finding": 1.4}


def delivery_step(rate: int, p99: float) -> dict:  # bench.delivery's one_rate()
    n = rate * 10
    return {"rate": rate, "submitted": n, "delivered": n, "achieved_submit_rate": rate - 1.5, "p50_s": p99 / 2,
            "p99_s": p99, "max_s": p99 * 2, "sustained": True, "kept_pace": True}


SAMPLES = {
    "ingest": {"broker": "kafka", "batch_events": 1000, "features": 20, "cores": 2,
               "validation_events_per_s": 106_800.0, "produce_events_per_s": 254_700.0,
               "http_by_workers": {"1": http(48_100.0), "2": http(60_800.0)}},
    "drift": {"broker": "kafka", "events": 300_010, "features": 20, "record_events": 1000, "window_events": 30_000,
              "measured_events": 240_010, "seconds": 6.3, "events_per_s": 38_000.0, "worker_cpu_cores": 0.95,
              "target": 50_000, "cores": 2, "us_per_event": 26.3,
              "without_broker": {"windows": 4, "events": 120_000, "path_events_per_s": 47_500.0,
                                 "path_us_per_event": 21.05, "floor_events_per_s": 2_600_000.0,
                                 "floor_us_per_event": 0.38}},
    "scaling": {"partitions": 8, "models": [f"bench-scaling-{j}" for j in range(8)], "window_events": 15_000,
                "windows": 6, "cores": 2, "findings_identical": True,
                "runs": [{"workers": n, "events": 720_040, "measured_events": 460_000, "seconds": 460_000 / r,
                          "events_per_s": r, "cpu_cores": c, "events_counted_per_worker": [720_040 // n] * n,
                          "findings": 24, "expected_findings": 24, "findings_equal_pure_state": True,
                          "repeated_findings_that_differ": 0}
                         for n, r, c in ((1, 62_000.0, 0.9), (2, 117_800.0, 1.3), (4, 167_400.0, 1.6))]},
    "labels": {"pure": {"pending": 1_000_000, "windows": 8, "labels": 500_000, "batch": 1000, "row_bytes": 57,
                        "predictions_into_join_per_s": 900_000.0, "predictions_into_join_s": 1.1,
                        "add_labels": {"labels_per_s": 714_000.0, "batch_ms": {"p50": 1.3, "p99": 2.0, "max": 3.0},
                                       "joined": {"matched": 500_000, "late": 0, "duplicate": 0, "unmatched": 0,
                                                  "buffered": 0}},
                        "handle_path": {"labels_per_s": 196_000.0, "fetches": 120,
                                        "fetch_ms": {"p50": 20.0, "p99": 25.0, "max": 30.0}},
                        "rss_mb_before": 150.0, "rss_mb_after": 233.0, "bytes_per_pending_rss": 83.0,
                        "bytes_per_pending_nbytes": 76.0,
                        "checkpoint": {"bytes": 76_000_000, "dump_s": 0.6, "load_s": 0.9,
                                       "after_labels_bytes": 80_000_000, "after_labels_load_s": 1.0},
                        "cprofile_handle_path": None},
               "worker": {"broker": "kafka", "predictions": 1_000_000, "window_events": 30_000, "features": 20,
                          "produce_predictions_s": 40.0, "produce_labels_s": 30.0, "label_records": 1000,
                          "predictions_phase": follow(36_000.0, 1_000_010), "stop_s": 1.0,
                          "labels_phase": follow(127_000.0, 1_000_000), "pending_at_end": 1_000_000.0,
                          "labels_lost": 0, "checkpoint_bytes_in_redis": 76_000_000,
                          "redis_checkpoint_io": {"bytes": 76_000_000, "set_s": 0.2, "get_s": 0.1}},
               "target_labels_per_s": 100_000, "target_predictions_per_s": 69_700, "cores": 2, "seconds": 300.0},
    "stats": {"events": 100_000, "features": 20,
              "steps_ms": {"hash_ids (100,000 ids)": 9.0, "update, 100 batches of 1,000": 60.0,
                           "evaluate (nulls cached)": 28.0},
              "total_ms": 88.0, "target_ms": 200.0, "flagged": ["f00"]},
    "compare": {"reference": 100_000, "events": 100_000, "features": 20, "repeat": 3, "shifted": "f00",
                "python": "3.11.7",
                "tools": {"vigil": {"median_s": 0.088, "min_s": 0.085, "flagged": ["f00"], "detail": "...",
                                    "ratio": 1.0, "only_shifted": True},
                          "evidently": {"version": "0.7.14", "runs": [6.7, 6.8, 6.9], "flagged": ["f00"],
                                        "methods": ["K-S p_value (threshold 0.05)"], "detail": "...",
                                        "median_s": 6.8, "venv": ".venv-bench", "ratio": 77.27,
                                        "only_shifted": True},
                          "nannyml": {"version": "0.13.1", "runs": [0.5, 0.51, 0.52], "flagged": ["f00"],
                                      "reference_chunks": 1, "upper_thresholds": {}, "detail": "...",
                                      "median_s": 0.51, "venv": ".venv-bench", "ratio": 5.8, "only_shifted": True}},
                "vigil_once_per_reference": {"median_s": 1.1, "profile_s": 0.3, "calibration_s": 0.8, "detail": "..."},
                "target_ratio_vs_evidently": 30.0},
    "concept": {"length": 20_000, "position": 10_000, "seeds": 5, "widths": [1, 1000], "window_seconds": 900,
                "label_delay_seconds": 10, "batch": 500, "train_events": 5000, "adwin_delta": 0.002,
                "elapsed_s": 60.0, "detectors": dict(concept.DETECTORS),
                "results": [{"stream": "SEA 0->3", "width": 1, "onset": 10_000, "error_before": 0.044,
                             "error_after": 0.132, "runs": [],
                             "summary": {"vigil_online": detector(239), "adwin_rises": detector(239),
                                         "adwin_any": detector(239), "vigil_concept": detector(800),
                                         "vigil_degradation": detector(800), "detector_ungated": detector(239)}},
                            {"stream": "SEA 0->3", "width": 1000, "onset": 9001, "error_before": 0.044,
                             "error_after": 0.132, "runs": [],
                             "summary": {"vigil_online": detector(-120), "adwin_rises": detector(-130),
                                         "adwin_any": detector(-130), "vigil_concept": detector(None),
                                         "vigil_degradation": detector(700), "detector_ungated": detector(-120)}}]},
    "oversight": {"broker": "kafka", "record_events": 1000, "target_review_events_per_s": 50_000,
                  "reviews": {"events": 300_001, "records": 301, "seconds": 1.79, "events_per_s": 167_600.0,
                              "worker_cpu_cores": 0.8, "pure_events_per_s": 191_900.0},
                  "vendor": {"events": 200_000, "records": 200, "seconds": 1.97, "events_per_s": 101_700.0,
                             "worker_cpu_cores": 0.8, "pure_events_per_s": 130_000.0},
                  "cores": 2},
    "alerts": {"broker": "kafka", "seconds": 10.0,
               "runs": [latency_run(250.0, 0.063), latency_run(500.0, 0.201), latency_run(750.0, 5.6)],
               "sustained_per_s": 500.0, "target_rate": 500, "target_p99_s": 1.0},
    "delivery": {"bench": "delivery", "seconds_per_rate": 10.0,
                 "steps": [delivery_step(250, 0.012), delivery_step(500, 0.018), delivery_step(750, 0.025),
                           delivery_step(1000, 0.04)],
                 "highest_sustained_per_s": 998.5, "p50_s_at_500": 0.009, "p99_s_at_500": 0.018,
                 "target": "p99 < 1.0s at 500/s, group_wait excluded"},
}


def write(results: Path, **benches: object) -> Path:
    results.mkdir(parents=True, exist_ok=True)
    for name, data in benches.items():
        (results / f"{name}.json").write_text(data if isinstance(data, str) else json.dumps(data, indent=2))
    return results


def md_rows(out: Path) -> list[dict[str, str]]:
    """results.md's table as dicts, column name -> cell."""
    lines = [ln for ln in (out / "results.md").read_text().splitlines() if ln.startswith("|")]
    split = [[c.strip() for c in ln.strip().strip("|").split(" | ")] for ln in lines]
    head, rows = split[0], split[2:]
    assert all(len(r) == len(head) for r in rows)
    return [dict(zip(head, r)) for r in rows]


def rows_of(rows: list[dict[str, str]], bench_name: str) -> list[dict[str, str]]:
    return [r for r in rows if r["benchmark"] == bench_name]


def test_a_drift_result_from_before_its_ceiling_is_measured_against_its_target(tmp_path):
    old = {k: v for k, v in SAMPLES["drift"].items() if k not in ("without_broker", "us_per_event")}
    assert summary.main(["--results", str(write(tmp_path / "results", drift=old))]) == 0
    (d,) = rows_of(md_rows(tmp_path), "drift")
    assert d["Vigil"] == "38,000 events/s" and d["ratio"] == "0.76 of target" and "no ceiling" in d[PEER]


def test_every_benchmark_gets_its_figures_next_to_the_ceiling_or_peer_with_the_ratio(tmp_path):
    results = write(tmp_path / "results", **SAMPLES)
    assert summary.main(["--results", str(results)]) == 0
    rows = md_rows(tmp_path)

    one, two = rows_of(rows, "ingest")
    assert one["Vigil"] == "48,100 events/s" and two["Vigil"] == "60,800 events/s"
    assert "106,800" in one[PEER] and "254,700" in one[PEER]
    assert one["ratio"].startswith("0.45 ") and two["ratio"].startswith("0.57 ")  # / min(validation, producing)
    assert "1 ingest worker" in one["measured"]
    assert one["command"] == "`python -m bench.ingest --broker kafka --workers 1,2`"

    (d,) = rows_of(rows, "drift")  # against the worker's path without a broker, from the same run
    assert d["Vigil"] == "38,000 events/s (26.32 µs an event)" and d["ratio"].startswith("0.80 ")
    assert "47,500" in d[PEER] and "0.38 µs" in d[PEER] and "50,000" in d[PEER]
    assert d["command"] == "`python -m bench.drift --broker kafka --events 300000 --window-events 30000`"

    two, four = rows_of(rows, "scaling")  # against n times the one worker's figure
    assert two["Vigil"] == "117,800 events/s" and two["ratio"] == "0.95 of linear" and "1 worker 62,000" in two[PEER]
    assert four["Vigil"] == "167,400 events/s" and four["ratio"] == "0.68 of linear"
    assert "findings identical" in four["measured"] and "4 drift workers sharing 8 partitions" in four["measured"]
    assert four["command"] == "`python -m bench.scaling --workers 1,2,4 --window-events 15000 --windows 6`"

    (lab,) = rows_of(rows, "labels")
    assert lab["Vigil"] == "127,000 labels/s"
    assert "714,000" in lab[PEER] and "196,000" in lab[PEER]
    assert lab["ratio"].startswith("0.65 ")  # 127,000 / 196,000: the worker against its path without a broker

    (st,) = rows_of(rows, "stats")
    assert st["Vigil"] == "88.0 ms" and st["ratio"] == "0.44 of target"

    ev, nm = rows_of(rows, "compare")
    assert ev["Vigil"] == nm["Vigil"] == "0.088 s"
    assert "evidently 0.7.14 6.800 s" in ev[PEER] and ev["ratio"] == "77.3x faster"
    assert "nannyml 0.13.1 0.510 s" in nm[PEER] and nm["ratio"] == "5.8x faster"

    abrupt, gradual = rows_of(rows, "concept")
    assert abrupt["Vigil"].startswith("239 events") and "ADWIN alone (rises): 239 events" in abrupt[PEER]
    assert abrupt["ratio"] == "1.00x (+0 events)"
    # a gradual drift detected before its centre: a negative delay, so a difference, not a ratio
    assert gradual["Vigil"].startswith("-120 events") and gradual["ratio"] == "+10 events"
    assert "--widths 1,1000" in abrupt["command"] and "'SEA 0->3'" in abrupt["command"]

    reviews, vendor = rows_of(rows, "oversight")
    assert reviews["Vigil"] == "167,600 events/s" and reviews["ratio"] == "0.87 of ceiling"
    assert vendor["Vigil"] == "101,700 events/s" and vendor["ratio"] == "0.78 of ceiling"
    assert reviews["command"] == "`python -m bench.oversight --broker kafka --reviews 300000 --calls 100000`"

    at250, at500, at750, sustained = rows_of(rows, "alerts")
    assert at500["Vigil"].startswith("p99 201 ms, last 302 ms")
    assert "p99 18 ms, last 36 ms" in at500[PEER]
    assert at500["ratio"] == "11.2x the dispatcher's p99" and at750["ratio"] == "224.0x the dispatcher's p99"
    assert sustained["Vigil"] == "500 findings/s" and sustained[PEER] == "dispatcher alone 998 findings/s"
    assert sustained["ratio"] == "0.50 of the dispatcher's"
    assert at250["command"] == "`python -m bench.alerts --broker kafka --rates 250,500,750 --seconds 10`"

    combined = json.loads((tmp_path / "results.json").read_text())
    assert {k: v for k, v in combined.items() if k != "headline"} == SAMPLES  # every JSON, as written
    assert len(combined["headline"]) == len(rows) == 17
    first = combined["headline"][0]
    assert (first["bench"], first["value"], first["peer_value"]) == ("ingest", 48_100.0, 106_800.0)
    assert first["ratio_value"] == pytest.approx(48_100 / 106_800)
    assert all(h["status"] == "ok" for h in combined["headline"])


def test_missing_benchmarks_are_listed_as_not_run(tmp_path):
    results = write(tmp_path / "results", stats=SAMPLES["stats"])
    summary.main(["--results", str(results)])
    rows = md_rows(tmp_path)
    assert [r["benchmark"] for r in rows] == list(summary.EXTRACTORS)
    for r in rows:
        if r["benchmark"] != "stats":
            assert r["Vigil"] == "not run" and r["command"] == f"`python -m bench.{r['benchmark']}`"
    assert rows_of(rows, "stats")[0]["Vigil"] == "88.0 ms"
    assert not any(r["Vigil"] == "not run" for r in rows_of(rows, "stats"))


def test_an_empty_or_absent_results_directory_lists_every_benchmark_as_not_run(tmp_path):
    summary.main(["--results", str(tmp_path / "nothing"), "--out", str(tmp_path / "out")])
    rows = md_rows(tmp_path / "out")
    assert len(rows) == len(summary.EXTRACTORS) and all(r["Vigil"] == "not run" for r in rows)
    assert json.loads((tmp_path / "out" / "results.json").read_text())["headline"][0]["status"] == "not run"


def test_a_malformed_json_says_what_is_wrong_in_its_row_and_the_others_still_come(tmp_path):
    no_produce = {k: v for k, v in SAMPLES["ingest"].items() if k != "produce_events_per_s"}
    vigil_none = json.loads(json.dumps(SAMPLES["compare"]))
    vigil_none["tools"]["vigil"]["median_s"] = None
    results = write(tmp_path / "results", ingest=no_produce, drift="{not json", stats=[1, 2],
                    compare=vigil_none, oversight=SAMPLES["oversight"])
    summary.main(["--results", str(results)])
    rows = md_rows(tmp_path)
    (ing,) = rows_of(rows, "ingest")
    assert ing["Vigil"] == "malformed JSON: no key 'produce_events_per_s'"
    (d,) = rows_of(rows, "drift")
    assert d["Vigil"].startswith("unreadable JSON: JSONDecodeError")
    (st,) = rows_of(rows, "stats")
    assert st["Vigil"].startswith("malformed JSON: TypeError")
    (cmp,) = rows_of(rows, "compare")
    assert cmp["Vigil"].startswith("malformed JSON: TypeError")
    assert [r["Vigil"] for r in rows_of(rows, "oversight")] == ["167,600 events/s", "101,700 events/s"]
    combined = json.loads((tmp_path / "results.json").read_text())
    assert "drift" not in combined and combined["ingest"] == no_produce
    assert {h["bench"] for h in combined["headline"] if h["status"] == "malformed"} == {"ingest", "drift", "stats",
                                                                                       "compare"}


def test_a_skipped_peer_and_a_missing_ceiling_are_said_not_divided(tmp_path):
    skipped = json.loads(json.dumps(SAMPLES["compare"]))
    skipped["tools"]["nannyml"] = {"skipped": "nannyml took longer than 600 s"}
    results = write(tmp_path / "results", compare=skipped, alerts=SAMPLES["alerts"])  # no delivery.json
    summary.main(["--results", str(results)])
    rows = md_rows(tmp_path)
    ev, nm = rows_of(rows, "compare")
    assert ev["ratio"] == "77.3x faster"
    assert nm[PEER] == "nannyml skipped: nannyml took longer than 600 s" and nm["ratio"] == "—"
    alert_rows = rows_of(rows, "alerts")
    assert all("bench.delivery not run" in r[PEER] and r["ratio"] == "—" for r in alert_rows)
    assert alert_rows[1]["Vigil"].startswith("p99 201 ms")


def test_the_run_column_is_the_recorded_commit_or_else_the_file_time(tmp_path):
    results = write(tmp_path / "results", stats=SAMPLES["stats"], drift={**SAMPLES["drift"], "commit": "110c52b"})
    t = datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc).timestamp()
    os.utime(results / "stats.json", (t, t))
    summary.main(["--results", str(results)])
    rows = md_rows(tmp_path)
    assert rows_of(rows, "stats")[0]["run"] == "2026-01-02 03:04 UTC (file time)"
    assert rows_of(rows, "drift")[0]["run"] == "commit 110c52b"


def test_real_small_runs_of_concept_and_labels_are_summarised(tmp_path, monkeypatch):
    results = tmp_path / "results"
    results.mkdir()
    report = concept.main(["--seeds", "1", "--length", "4000", "--position", "2000", "--widths", "1",
                           "--streams", "SEA 0->3", "--out", str(results / "concept.json")])
    monkeypatch.setattr(bench, "RESULTS", results)  # where save_result writes: not the repo's bench/results
    labels.main(["--no-worker", "--no-profile", "--pending", "20000", "--labels", "5000"])
    written = json.loads((results / "labels.json").read_text())

    summary.main(["--results", str(results)])
    rows = md_rows(tmp_path)
    (c,) = rows_of(rows, "concept")
    s = report["results"][0]["summary"]
    assert c["Vigil"].startswith(f"{s['vigil_online']['median_delay']:,.0f} events (1/1 detected")
    assert f"(rises): {s['adwin_rises']['median_delay']:,.0f} events" in c[PEER]
    assert c["command"] == ("`python -m bench.concept --seeds 1 --length 4000 --position 2000 --widths 1 "
                            "--streams 'SEA 0->3'`")
    (lab,) = rows_of(rows, "labels")
    assert lab["Vigil"] == "worker not run (--no-worker)"
    assert f"join alone {written['pure']['add_labels']['labels_per_s']:,.0f}" in lab[PEER]
    assert f"{written['pure']['handle_path']['labels_per_s']:,.0f} labels/s" in lab[PEER]
    assert lab["command"] == "`python -m bench.labels --pending 20000 --labels 5000 --no-worker`"


def test_the_command_reads_the_results_directory_from_the_environment_and_prints_the_table(tmp_path):
    results = write(tmp_path / "results", oversight=SAMPLES["oversight"])
    proc = subprocess.run([sys.executable, "-m", "bench.summary"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "VIGIL_BENCH_RESULTS": str(results), "COLUMNS": "200"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "167,600 events/s" in proc.stdout and "not run" in proc.stdout
    assert rows_of(md_rows(tmp_path), "oversight")[0]["ratio"] == "0.87 of ceiling"
