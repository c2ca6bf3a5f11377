"""`vigil evaluate`: scoring detections against a known onset, the built-in scenarios through the
drift worker's state, the user's own history (the same answer as the scenario it was written
from), and the command's errors."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from services import evaluate as ev
from services.cli import build_parser
from services.commands import cmd_evaluate

DAY = 86_400


def traffic(onset=None, expected=(), related=(), feature=None, days=14.0):
    spec = ev.scenario_spec(ev.SCENARIOS["control-classifier"], {})
    return ev.Traffic([], [], spec, None, float(ev.T0), ev.T0 + days * DAY,
                      None if onset is None else ev.T0 + onset * DAY, expected, related, feature)


def det(detector, day, feature=None, reported=None):
    at = ev.T0 + day * DAY
    return ev.Detection(detector, feature, at, at if reported is None else ev.T0 + reported * DAY, "medium")


def test_score_counts_the_first_detection_after_the_onset_and_everything_else_as_false_alarms():
    t = traffic(onset=7, expected=("data_drift",), related=("prediction_drift",), feature="f02")
    found = [det("data_drift", 3, "f02"),  # before the onset: a false alarm
             det("data_drift", 8, "f02", reported=8.5), det("data_drift", 7.5, "f02", reported=9),  # the first: 7.5
             det("data_drift", 9, "f04"),  # another feature: a false alarm
             det("prediction_drift", 8),  # related, after the onset: neither
             det("performance_trend", 10)]  # unrelated: a false alarm
    s = ev.score(t, found)
    assert s["data_drift"]["delay_s"] == pytest.approx(0.5 * DAY) and s["data_drift"]["reported_s"] == 2 * DAY
    assert s["data_drift"]["false_alarms"] == 2 and s["data_drift"]["exposure_s"] == 7 * DAY
    assert s["prediction_drift"]["false_alarms"] == 0 and s["prediction_drift"]["delay_s"] is None
    assert s["performance_trend"]["false_alarms"] == 1 and s["performance_trend"]["exposure_s"] == 14 * DAY


def test_on_a_control_every_finding_is_a_false_alarm_over_the_whole_run():
    s = ev.score(traffic(), [det("data_drift", 2, "f01"), det("data_drift", 9, "f01")])
    assert s["data_drift"] == {"expected": False, "false_alarms": 2, "exposure_s": 14 * DAY, "delay_s": None,
                               "reported_s": None, "severity": None}
    summary = ev.summarize([s, ev.score(traffic(), [])])
    assert summary["data_drift"]["false_alarms_per_week"] == pytest.approx(2 / 4)  # 2 in 4 weeks


def test_settings_grid_sets_every_significance_level_and_keeps_spec_fields_apart():
    grid = ev.settings_grid([0.05, 0.001], {"min_acceptable": {"rmse": 1.15}, "degradation": {"medium": 0.1}})
    assert list(grid) == ["alpha=0.05", "alpha=0.001"]
    assert all(grid["alpha=0.001"][k] == 0.001 for k in ev.P_VALUE_KEYS)
    spec = ev.scenario_spec(ev.SCENARIOS["control-regression"], grid["alpha=0.001"])
    assert spec.min_acceptable == {"rmse": 1.15} and "min_acceptable" not in spec.thresholds
    with pytest.raises(ValueError, match="ks_p_value"):
        ev.settings_grid([1.5], {})


@pytest.fixture(scope="module")
def shift_run():
    """feature-shift once, through the drift worker's state: 6 days, 120 predictions an hour."""
    t = ev.synthetic(ev.SCENARIOS["feature-shift"], seed=0, days=6, per_hour=120, thresholds={})
    return t, ev.replay(t)


def test_a_shift_is_found_in_the_window_of_its_onset_and_nothing_before(shift_run):
    t, found = shift_run
    s = ev.score(t, found)
    assert s["data_drift"]["delay_s"] == 6 * 3600  # the onset opens a window: found at its end
    assert 0 <= s["data_drift"]["reported_s"] - s["data_drift"]["delay_s"] < 3600  # out when it closed
    assert sum(c["false_alarms"] for c in s.values()) == 0
    assert {d.feature for d in found if d.detector == "data_drift"} == {"f02"}


def test_a_concept_change_is_caught_online_before_its_window_closes():
    t = ev.synthetic(ev.SCENARIOS["concept-change"], seed=1, days=6, per_hour=240, thresholds={})
    s = ev.score(t, ev.replay(t))
    online, window = s["concept_drift (online)"], s["performance_degradation"]
    assert online["delay_s"] is not None and window["delay_s"] is not None
    assert online["delay_s"] < window["delay_s"]
    assert online["reported_s"] < window["reported_s"]


def test_a_history_file_gives_the_answer_of_the_scenario_it_was_written_from(tmp_path, shift_run):
    t, found = shift_run
    history = tmp_path / "history.jsonl"
    with history.open("w") as f:
        for kind, events in (("predictions", t.predictions), ("labels", t.labels)):
            for e in events:
                f.write(json.dumps({"kind": kind, **e}) + "\n")
    (tmp_path / "spec.json").write_text(t.spec.model_dump_json())
    rng_cols = ev.reference_columns(ev.SCENARIOS["feature-shift"], np.random.default_rng(0))
    (tmp_path / "reference.json").write_text(json.dumps(rng_cols))
    onset = ev.T0 + 3 * DAY
    (tmp_path / "incidents.json").write_text(json.dumps([{"start": onset, "detectors": ["data_drift"],
                                                          "feature": "f02"}]))
    (run,) = ev.history_traffic(history, tmp_path / "spec.json", tmp_path / "reference.json",
                                tmp_path / "incidents.json", {})
    assert (run.onset, run.expected, run.feature, len(run.predictions)) == (onset, ("data_drift",), "f02",
                                                                           len(t.predictions))
    s = ev.score(run, ev.replay(run))
    assert s["data_drift"]["delay_s"] == ev.score(t, found)["data_drift"]["delay_s"] == 6 * 3600
    assert s["data_drift"]["false_alarms"] == 0


def test_the_command_prints_its_tables_and_writes_json(tmp_path, capsys):
    out = tmp_path / "ev.json"
    args = build_parser().parse_args(["evaluate", "--scenarios", "control-classifier,feature-shift", "--seeds", "1",
                                      "--days", "4", "--per-hour", "60", "--alpha", "0.05,0.01", "--out", str(out)])
    assert cmd_evaluate(args) == 0
    printed = capsys.readouterr().out
    assert "False alarms per week" in printed and "feature-shift" in printed
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"control-classifier", "feature-shift"}
    assert set(report["results"]["feature-shift"]) == {"alpha=0.05", "alpha=0.01"}
    shift = report["results"]["feature-shift"]["alpha=0.05"]["data_drift"]
    assert shift["detected"] == 1 and shift["runs"] == 1 and shift["median_delay_h"] is not None
    fa = sum(r["alpha=0.05"]["data_drift"]["false_alarms"] for r in report["results"].values())
    weeks = sum(r["alpha=0.05"]["data_drift"]["exposure_weeks"] for r in report["results"].values())
    assert weeks == pytest.approx(4 / 7 + 2 / 7, abs=2e-3)  # the control's 4 days and the shift's 2 before its onset
    assert report["false_alarms_per_week"]["alpha=0.05"]["data_drift"] == pytest.approx(fa / weeks, rel=0.01, abs=1e-3)


@pytest.mark.parametrize("argv, message", [
    (["--scenarios", "nope"], "unknown ['nope']"),
    (["--set", "psi"], "must be KEY=VALUE"),
    (["--alpha", "2"], "ks_p_value"),
    (["--history", "x.jsonl"], "--history needs --spec"),
])
def test_the_command_names_what_is_wrong(argv, message, capsys):
    args = build_parser().parse_args(["evaluate", *argv])
    assert cmd_evaluate(args) == 2
    assert message in " ".join(capsys.readouterr().out.split())


def test_a_history_with_bad_rows_is_refused_naming_the_row(tmp_path, capsys):
    bad = tmp_path / "h.jsonl"
    bad.write_text('{"kind": "predictions", "event_id": "e", "model_id": "m"}\n')
    (tmp_path / "spec.json").write_text("{}")
    args = SimpleNamespace(**{**vars(build_parser().parse_args(["evaluate"])), "history": bad,
                              "spec": tmp_path / "spec.json"})
    assert cmd_evaluate(args) == 2
    assert "1 bad rows, the first: line 1: features: Field required" in " ".join(capsys.readouterr().out.split())
