"""`vigil evaluate`: how fast each detector catches an incident, and how often it cries wolf.

Replays labelled traffic through the drift worker's own state (`services.drift.state.DriftState`,
what the worker applies to each batch it polls, minus Kafka) once per threshold setting, and
reports, per detector and setting, the detection delay and the false alarms per week:

- built-in scenarios (`SCENARIOS`), each `--seeds` times: two controls with no incident (a
  classifier, a regression model) and incidents with a known onset (a feature's abrupt shift, a
  gradual drift, a concept change, a falling accuracy, a regression model's growing error);
- or the user's own history (`--history FILE` of predictions and labels, as `vigil replay`
  reads it, with `--spec`, `--reference` and `--incidents`).

A detector is a finding kind, with `concept_drift` split into the online detector (ADWIN /
PageHinkley, evidence ``detector``) and the window rule. A detection is the first finding of an
expected detector (about the incident's feature, for input incidents) whose event time — the
window's end, or the online detector's ``detected_at`` — is at or after the onset; its delay is
that time minus the onset, and ``reported`` is the event time the stream had reached when the
finding came out (a window's findings wait for it to close, performance ones `label_wait` more).
A false alarm is any other finding: before the onset, of a control, about another feature, or
of a detector unrelated to the incident. False alarms per week divide by the event time each
detector was exposed to: the whole run, or for the incident's own detectors the time before
the onset. Findings are counted per window (the alerts service folds repeats of one fingerprint
into one alert, so alerts are at most this many).

A threshold setting is one `--alpha` (every significance level: ``ks_p_value``,
``chi2_p_value``, ``psi_p_value``, ``performance_p_value``) with the `--set KEY=VALUE`
overrides on top: any ModelSpec threshold, or one of the spec fields in `SPEC_KEYS`
(``min_acceptable`` moves the trend's floor).

>>> spec = scenario_spec(SCENARIOS["feature-shift"], {})
>>> spec.task, spec.window_seconds, sorted(spec.features)[:2]
('binary_classification', 21600, ['f00', 'f01'])
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shared.events import Finding, ModelSpec, event_time
from shared.settings import Settings
from shared.stats.baseline import Baseline
from shared.stats.reference import profile

DAY, WEEK = 86_400, 7 * 86_400
T0 = 1_700_006_400  # a Tuesday 00:00 UTC, a multiple of every window size used here
FEATURES = 5
BATCH = 500  # predictions per batch, as a consumer poll hands them over
REFERENCE_ROWS = 5_000
SAMPLE_SIZE = 12_000  # the worker's default window sample
MODEL = "evaluate"
P_VALUE_KEYS = ("ks_p_value", "chi2_p_value", "psi_p_value", "performance_p_value")
INPUT_DETECTORS = ("data_drift", "data_quality")  # findings about one feature
DETECTORS = ("data_drift", "prediction_drift", "data_quality", "performance_degradation",
             "concept_drift (window)", "concept_drift (online)", "performance_trend")


@dataclass(frozen=True)
class Scenario:
    """Synthetic traffic: FEATURES N(0, 1) inputs; a classifier ``score = sigmoid(f00 + f01 / 2)``
    right with probability `accuracy`, or a regression ``10 + 2 f00 + f01`` whose labels are off
    by N(0, `residual_sd`). From `onset` (a fraction of the run; None: a control) the incident
    ramps in over `ramp` (a fraction of the run; 0: at once): `shift` = (feature, standard
    deviations) moves that feature's mean, `accuracy` and `residual_sd` go from their first
    value to their second."""
    name: str
    about: str
    task: str = "binary_classification"
    onset: float | None = None
    ramp: float = 0.0
    shift: tuple[int, float] | None = None
    accuracy: tuple[float, float] = (0.90, 0.90)
    residual_sd: tuple[float, float] = (1.0, 1.0)
    expected: tuple[str, ...] = ()  # the detectors that should catch it
    related: tuple[str, ...] = ()  # may fire after the onset too, and are not false alarms then

    @property
    def feature(self) -> str | None:
        return f"f{self.shift[0]:02d}" if self.shift else None


PERFORMANCE = ("performance_degradation", "concept_drift (window)", "concept_drift (online)", "performance_trend")
SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("control-classifier", "a stable classifier: no incident"),
    Scenario("control-regression", "a stable regression model: no incident", task="regression"),
    Scenario("feature-shift", "f02 shifts by 0.5 sd at half time", onset=0.5, shift=(2, 0.5),
             expected=("data_drift",)),
    Scenario("gradual-drift", "f03 drifts by 1 sd over 30 % of the run", onset=0.5, ramp=0.3, shift=(3, 1.0),
             expected=("data_drift",)),
    Scenario("concept-change", "accuracy 0.90 -> 0.80 at half time, inputs unchanged", onset=0.5,
             accuracy=(0.90, 0.80), expected=("concept_drift (online)", "concept_drift (window)",
                                              "performance_degradation"), related=PERFORMANCE),
    Scenario("accuracy-decline", "accuracy 0.90 -> 0.78 over 45 % of the run", onset=0.5, ramp=0.45,
             accuracy=(0.90, 0.78), expected=("performance_trend", "performance_degradation"), related=PERFORMANCE),
    Scenario("regression-error-up", "residual sd 1.0 -> 1.25 at half time", task="regression", onset=0.5,
             residual_sd=(1.0, 1.25), expected=("concept_drift (online)", "performance_degradation"),
             related=PERFORMANCE),
)}


@dataclass
class Traffic:
    """One run's events and what is known about it."""
    predictions: list[dict]
    labels: list[dict]
    spec: ModelSpec
    base: Baseline | None
    start: float
    end: float
    onset: float | None = None  # event time; None: no incident
    expected: tuple[str, ...] = ()
    related: tuple[str, ...] = ()
    feature: str | None = None
    batch: int = BATCH  # predictions per poll


@dataclass
class Detection:
    detector: str
    feature: str | None
    at: float  # event time of the change: the window's end, or the online detector's detected_at
    reported: float  # event time the stream had reached when the finding came out
    severity: str


def _ramp(t: np.ndarray, s: Scenario, span: float) -> np.ndarray:
    """How far the incident has come at event times `t` of a run of `span` seconds: 0 .. 1."""
    if s.onset is None:
        return np.zeros_like(t)
    since = (t - T0) / span - s.onset
    return np.clip(since / s.ramp, 0, 1) if s.ramp > 0 else (since >= 0).astype(float)


def _draw(s: Scenario, rng: np.random.Generator, t: np.ndarray, span: float | None = None) -> dict[str, np.ndarray]:
    """Inputs, predictions and labels at event times `t` of a run of `span` seconds (None: all
    before the onset)."""
    k = _ramp(t, s, span) if span else np.zeros_like(t)
    x = rng.normal(size=(t.size, FEATURES))
    if s.shift is not None:
        x[:, s.shift[0]] += s.shift[1] * k
    if s.task == "regression":
        pred = 10 + 2 * x[:, 0] + x[:, 1]
        sd = s.residual_sd[0] + (s.residual_sd[1] - s.residual_sd[0]) * k
        return {"x": x, "pred": np.round(pred, 4), "label": np.round(pred + rng.normal(size=t.size) * sd, 4)}
    score = 1 / (1 + np.exp(-(x[:, 0] + 0.5 * x[:, 1])))
    pred = (score > 0.5).astype(int)
    acc = s.accuracy[0] + (s.accuracy[1] - s.accuracy[0]) * k
    return {"x": x, "pred": pred, "label": np.where(rng.random(t.size) < acc, pred, 1 - pred),
            "confidence": np.round(np.maximum(score, 1 - score), 4)}


def scenario_spec(s: Scenario, thresholds: Mapping[str, Any], window_seconds: int = 6 * 3600,
                  label_delay: float = 600) -> ModelSpec:
    """The spec a team would register: the baseline is the pre-incident performance."""
    if s.task == "regression":
        sd = s.residual_sd[0]
        baseline = {"rmse": sd, "mae": round(sd * math.sqrt(2 / math.pi), 6)}
    else:
        baseline = {"accuracy": s.accuracy[0]}
    fields, th = split_setting(thresholds)
    return ModelSpec(**{"task": s.task, "window_seconds": window_seconds, "allowed_lateness_seconds": 60,
                        "label_wait_seconds": int(max(3600, 2 * label_delay)),
                        "features": {f"f{j:02d}": {"type": "numeric"} for j in range(FEATURES)},
                        "baseline_metrics": baseline, "thresholds": th, **fields})


SPEC_KEYS = ("min_acceptable", "baseline_metrics", "window_seconds", "allowed_lateness_seconds", "label_wait_seconds")


def split_setting(setting: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A setting's ModelSpec fields (`SPEC_KEYS`, e.g. ``min_acceptable``) and its thresholds."""
    return ({k: v for k, v in setting.items() if k in SPEC_KEYS},
            {k: v for k, v in setting.items() if k not in SPEC_KEYS})


def reference_columns(s: Scenario, rng: np.random.Generator) -> dict[str, list]:
    """What the team uploads from its validation set: the pre-incident traffic."""
    d = _draw(s, rng, np.full(REFERENCE_ROWS, float(T0)))
    cols: dict[str, list] = {f"f{j:02d}": np.round(d["x"][:, j], 4).tolist() for j in range(FEATURES)}
    cols["prediction"] = d["pred"].tolist()
    if "confidence" in d:
        cols["confidence"] = d["confidence"].tolist()
    return cols


def baseline_of(columns: Mapping[str, Sequence[Any]], spec: ModelSpec) -> Baseline:
    declared = {name: f.type for name, f in spec.features.items()}
    return Baseline.from_profile(profile(columns, 10_000, seed=0, declared=declared), task=spec.task)


def synthetic(s: Scenario, seed: int, days: float, per_hour: float, thresholds: Mapping[str, Any],
              window_seconds: int = 6 * 3600, label_delay: float = 600) -> Traffic:
    """One run of a built-in scenario."""
    rng = np.random.default_rng(seed)
    n = int(days * 24 * per_hour)
    t = np.sort(T0 + rng.uniform(0, days * DAY, size=n))
    d = _draw(s, rng, t, days * DAY)
    preds, labels = [], []
    for i in range(n):
        ts = round(float(t[i]), 3)
        e = {"event_id": f"{seed}-{i}", "model_id": MODEL, "timestamp": ts,
             "features": {f"f{j:02d}": round(float(d["x"][i, j]), 4) for j in range(FEATURES)},
             "prediction": d["pred"][i].item()}
        if "confidence" in d:
            e["confidence"] = float(d["confidence"][i])
        preds.append(e)
        labels.append({"event_id": e["event_id"], "model_id": MODEL, "timestamp": ts + label_delay,
                       "label": d["label"][i].item()})
    spec = scenario_spec(s, thresholds, window_seconds, label_delay)
    return Traffic(preds, labels, spec, baseline_of(reference_columns(s, rng), spec), float(T0), float(T0 + days * DAY),
                   None if s.onset is None else T0 + s.onset * days * DAY, s.expected, s.related, s.feature,
                   batch=int(min(BATCH, max(10, per_hour / 12))))  # a poll holds at most ~5 min of traffic


def by_time(preds: list[dict], labels: list[dict], batch: int = BATCH) -> Iterable[tuple[str, list[dict]]]:
    """Predictions in batches of `batch` (time order); after each, the labels whose time it has
    reached — how a worker polling both topics sees a live stream."""
    labels = sorted(labels, key=lambda e: e["timestamp"])
    li = 0
    for a in range(0, len(preds), batch):
        chunk = preds[a:a + batch]
        yield "p", chunk
        wm, lj = chunk[-1]["timestamp"], li
        while lj < len(labels) and labels[lj]["timestamp"] <= wm:
            lj += 1
        if lj > li:
            yield "l", labels[li:lj]
            li = lj
    if li < len(labels):
        yield "l", labels[li:]


def detector_of(f: Finding) -> str:
    if f.kind == "concept_drift":
        return "concept_drift (online)" if f.evidence.get("detector") else "concept_drift (window)"
    return f.kind


def change_time(f: Finding) -> float:
    """When the finding says the change happened: the online detector's event, else its window's end."""
    if f.kind == "concept_drift" and "detected_at" in f.metrics:
        return float(event_time(f.metrics["detected_at"]))
    return f.window_end.timestamp()


def replay(traffic: Traffic, settings: Settings | None = None, batch: int | None = None,
           on_finding: Callable[[Finding, float], None] | None = None) -> list[Detection]:
    """The traffic through the drift worker's state; every finding as a `Detection`. A last
    event far after the end closes every window and makes every performance window due."""
    from services.drift.labels import check_label
    from services.drift.state import DriftState, window_config
    from services.drift.windows import check_event

    settings = settings or Settings()
    spec = traffic.spec
    model = SimpleNamespace(spec=spec, base=traffic.base, cfg=window_config(spec, traffic.base, SAMPLE_SIZE))
    state, now, out = DriftState(), traffic.start, []
    mid = traffic.predictions[0]["model_id"] if traffic.predictions else MODEL
    last = traffic.end + 2 * spec.window_seconds + spec.allowed_lateness_seconds + spec.label_wait_seconds
    closing = {**(traffic.predictions[-1] if traffic.predictions else {"model_id": MODEL, "features": {},
                                                                        "prediction": 0}),
               "event_id": "evaluate-end", "timestamp": last}
    steps = [*by_time(traffic.predictions, traffic.labels, batch or traffic.batch), ("p", [closing])]
    for topic, events in steps:
        if topic == "p":
            good = [e for e in events if check_event(e) is None]
            applied = state.predictions(mid, model, good, settings)
            now = max(now, max((float(e["timestamp"]) for e in good), default=now))
        else:
            good = [e for e in events if not isinstance(check_label(e, mid, spec.task == "regression"), str)]
            applied = state.labels(mid, model, good, settings)
        for f in applied.findings:
            reported = min(now, last)
            out.append(Detection(detector_of(f), f.feature, change_time(f), reported, f.severity))
            if on_finding is not None:
                on_finding(f, reported)
    return out


def score(traffic: Traffic, found: list[Detection]) -> dict[str, dict[str, Any]]:
    """Per detector: the first detection (delay and reported, seconds after the onset), the false
    alarms, and the event time (seconds) the detector was exposed to false alarms."""
    span = traffic.end - traffic.start
    out: dict[str, dict[str, Any]] = {}
    for det in DETECTORS:
        own = det in traffic.expected or det in traffic.related
        exposure = (traffic.onset - traffic.start) if traffic.onset is not None and own else span
        hits, false = [], 0
        for d in (d for d in found if d.detector == det):
            about = traffic.feature is None or det not in INPUT_DETECTORS or d.feature == traffic.feature
            if traffic.onset is not None and d.at >= traffic.onset and own and about:
                hits.append(d)
            elif traffic.onset is None or d.at < traffic.onset or not own or not about:
                false += 1
        first = min(hits, key=lambda d: d.at) if det in traffic.expected and hits else None
        out[det] = {"expected": det in traffic.expected, "false_alarms": false, "exposure_s": exposure,
                    "delay_s": None if first is None else first.at - traffic.onset,
                    "reported_s": None if first is None else first.reported - traffic.onset,
                    "severity": None if first is None else first.severity}
    return out


def settings_grid(alphas: Sequence[float], overrides: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Named threshold settings: one per alpha, the fixed overrides on top (validated as a spec's)."""
    from shared.policy import validate_thresholds
    grid = {}
    for a in alphas:
        setting = {**dict.fromkeys(P_VALUE_KEYS, a), **overrides}
        validate_thresholds(split_setting(setting)[1])
        grid[f"alpha={a:g}"] = setting
    return grid


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Runs of one scenario and setting -> per detector: detected runs, median delays (hours),
    false alarms and false alarms per week."""
    out = {}
    for det in DETECTORS:
        cells = [r[det] for r in rows]
        delays = [c["delay_s"] / 3600 for c in cells if c["delay_s"] is not None]
        reported = [c["reported_s"] / 3600 for c in cells if c["reported_s"] is not None]
        fa, exposure = sum(c["false_alarms"] for c in cells), sum(c["exposure_s"] for c in cells)
        out[det] = {"expected": cells[0]["expected"], "detected": len(delays), "runs": len(cells),
                    "median_delay_h": round(statistics.median(delays), 2) if delays else None,
                    "median_reported_h": round(statistics.median(reported), 2) if reported else None,
                    "false_alarms": fa, "exposure_weeks": round(exposure / WEEK, 3),
                    "false_alarms_per_week": round(fa / (exposure / WEEK), 3) if exposure > 0 else None}
    return out


def evaluate(runs: Mapping[str, Callable[[Mapping[str, Any]], list[Traffic]]], grid: Mapping[str, Mapping[str, Any]],
             progress: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """{scenario: {setting: summary}}; `runs[scenario](thresholds)` gives the runs' traffic."""
    results: dict[str, dict[str, Any]] = {}
    for name, make in runs.items():
        results[name] = {}
        for setting, th in grid.items():
            rows = [score(t, replay(t)) for t in make(th)]
            results[name][setting] = summarize(rows)
            if progress is not None:
                progress(f"{name}, {setting}")
    return results


def false_alarms_total(results: Mapping[str, Mapping[str, Any]], setting: str) -> dict[str, float | None]:
    """Per detector, false alarms per week over every scenario's exposure, for one setting."""
    out = {}
    for det in DETECTORS:
        fa = sum(r[setting][det]["false_alarms"] for r in results.values())
        weeks = sum(r[setting][det]["exposure_weeks"] for r in results.values())
        out[det] = round(fa / weeks, 3) if weeks > 0 else None
    return out


# --- the user's own history -------------------------------------------------------------------

def history_traffic(path: Path, spec_path: Path, reference_path: Path | None, incidents_path: Path | None,
                    thresholds: Mapping[str, Any]) -> list[Traffic]:
    """A file of predictions and labels (`vigil replay`'s formats) as runs: one per incident (the
    history up to the next incident's onset), or one without incident when none are given.

    `--incidents` is JSON: ``[{"start": "2026-03-01T00:00:00Z", "detectors": ["data_drift"],
    "feature": "f03"}]`` (detectors default to every detector; feature optional)."""
    from services.replay import read_file
    rows, problems = read_file(path)
    if problems:
        raise ValueError(f"{path}: {len(problems)} bad rows, the first: {problems[0][0]}: {problems[0][1]}")
    preds = sorted((r.event for r in rows if r.kind == "predictions"), key=lambda e: event_time(e["timestamp"]))
    labels = [r.event for r in rows if r.kind == "labels"]
    if not preds:
        raise ValueError(f"{path}: no predictions")
    for e in preds + labels:
        e["timestamp"] = event_time(e["timestamp"])
        e["model_id"] = MODEL
    spec_json = json.loads(spec_path.read_text())
    fields, th = split_setting(thresholds)
    spec = ModelSpec.model_validate({**spec_json, **fields, "thresholds": {**spec_json.get("thresholds", {}), **th}})
    base = baseline_of(json.loads(reference_path.read_text()), spec) if reference_path else None
    start, end = float(preds[0]["timestamp"]), float(preds[-1]["timestamp"])
    incidents = json.loads(incidents_path.read_text()) if incidents_path else []
    if not incidents:
        return [Traffic(preds, labels, spec, base, start, end)]
    runs = []
    onsets = sorted(float(event_time(i["start"])) for i in incidents)
    for inc in sorted(incidents, key=lambda i: float(event_time(i["start"]))):
        onset = float(event_time(inc["start"]))
        later = [o for o in onsets if o > onset]
        stop = later[0] if later else end + 1
        unknown = set(inc.get("detectors", ())) - set(DETECTORS)
        if unknown:
            raise ValueError(f"{incidents_path}: detectors {sorted(unknown)} unknown; valid: {', '.join(DETECTORS)}")
        runs.append(Traffic([e for e in preds if e["timestamp"] < stop], [e for e in labels if e["timestamp"] < stop],
                            spec, base, start, min(stop, end), onset, tuple(inc.get("detectors") or DETECTORS), (),
                            inc.get("feature")))
    return runs


# --- the command ------------------------------------------------------------------------------

def _fmt(v: float | None, f: str = ".1f") -> str:
    return "-" if v is None else format(v, f)


def print_report(console: Console, results: Mapping[str, Mapping[str, Any]], grid: Mapping[str, Any],
                 scenarios: Mapping[str, str]) -> None:
    delay = Table(title="Detection: runs detected, median delay after the onset (hours of event time; "
                        "in brackets, when the finding came out)")
    delay.add_column("scenario")
    delay.add_column("detector")
    for setting in grid:
        delay.add_column(setting, justify="right")
    for name, by_setting in results.items():
        first = next(iter(by_setting.values()))
        expected = [d for d in DETECTORS if first[d]["expected"]]
        for i, det in enumerate(expected):
            cells = []
            for setting in grid:
                s = by_setting[setting][det]
                colour = "green" if s["detected"] == s["runs"] else "yellow" if s["detected"] else "red"
                cells.append(f"[{colour}]{s['detected']}/{s['runs']}[/] {_fmt(s['median_delay_h'])} h "
                             f"({_fmt(s['median_reported_h'])} h)")
            delay.add_row(name if i == 0 else "", det, *cells, end_section=i == len(expected) - 1)
    console.print(delay)
    fa = Table(title="False alarms per week (findings outside an incident, over the event time each "
                     "detector watched without one)")
    fa.add_column("scenario")
    for setting in grid:
        fa.add_column(setting, justify="right")
    for name, by_setting in results.items():
        cells = []
        for setting in grid:
            noisy = {d: s for d, s in by_setting[setting].items() if s["false_alarms"]}
            cells.append(", ".join(f"[red]{d} {s['false_alarms_per_week']:g}[/]" for d, s in noisy.items()) or
                         "[green]0[/]")
        fa.add_row(f"{name}: {scenarios.get(name, '')}", *cells)
    console.print(fa)
    total = Table(title="False alarms per week per detector, all scenarios")
    total.add_column("detector")
    for setting in grid:
        total.add_column(setting, justify="right")
    per = {s: false_alarms_total(results, s) for s in grid}
    for det in DETECTORS:
        total.add_row(det, *(_fmt(per[s][det], ".2f") for s in grid))
    console.print(total)


def add_parser(sub) -> None:
    ev = sub.add_parser("evaluate", help="detection delay and false alarms per week, per detector and threshold")
    ev.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"built-in, of: {', '.join(SCENARIOS)}")
    ev.add_argument("--seeds", type=int, default=3, help="runs per scenario (default 3)")
    ev.add_argument("--days", type=float, default=14.0, help="event time per run (default 14; incidents at half time)")
    ev.add_argument("--per-hour", type=float, default=120.0, help="predictions per hour of event time (default 120)")
    ev.add_argument("--window", type=int, default=6 * 3600, help="window_seconds (default 21600)")
    ev.add_argument("--alpha", default="0.05,0.01", help="significance levels to compare, comma-separated")
    ev.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a threshold (or spec field: " + ", ".join(SPEC_KEYS) + ") for every setting, "
                         "repeatable; the value is JSON, e.g. 'min_acceptable={\"rmse\": 1.15}'")
    ev.add_argument("--history", type=Path, default=None, help="your own predictions and labels (JSONL/CSV/Parquet)")
    ev.add_argument("--spec", type=Path, default=None, help="with --history: the model's spec (JSON)")
    ev.add_argument("--reference", type=Path, default=None, help="with --history: reference columns (JSON)")
    ev.add_argument("--incidents", type=Path, default=None, help="with --history: known incidents (JSON)")
    ev.add_argument("--out", type=Path, default=Path("evaluate.json"), help="results as JSON (default evaluate.json)")


def _overrides(items: Sequence[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: must be KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def cmd_evaluate(args) -> int:
    console = Console()
    try:
        alphas = [float(a) for a in args.alpha.split(",") if a.strip()]
        grid = settings_grid(alphas, _overrides(args.set))
    except ValueError as exc:
        console.print(f"[red]vigil evaluate: {exc}[/red]")
        return 2
    if args.history is not None:
        if args.spec is None:
            console.print("[red]vigil evaluate: --history needs --spec[/red]")
            return 2
        try:
            history_traffic(args.history, args.spec, args.reference, args.incidents, {})
        except (ValueError, OSError) as exc:
            console.print(f"[red]vigil evaluate: {exc}[/red]")
            return 2
        runs = {str(args.history): lambda th: history_traffic(args.history, args.spec, args.reference,
                                                              args.incidents, th)}
        about = {str(args.history): "your history"}
    else:
        names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
        if unknown := set(names) - set(SCENARIOS):
            console.print(f"[red]vigil evaluate: --scenarios: unknown {sorted(unknown)}; "
                          f"valid: {', '.join(SCENARIOS)}[/red]")
            return 2
        if args.seeds < 1 or args.days <= 0 or args.per_hour <= 0:
            console.print("[red]vigil evaluate: --seeds, --days and --per-hour must be positive[/red]")
            return 2
        runs = {n: (lambda th, s=SCENARIOS[n]: [synthetic(s, seed, args.days, args.per_hour, th, args.window)
                                                for seed in range(args.seeds)]) for n in names}
        about = {n: SCENARIOS[n].about for n in names}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("replaying", total=len(runs) * len(grid))
        results = evaluate(runs, grid, lambda what: bar.update(task, advance=1, description=what))
    print_report(console, results, grid, about)
    report = {"settings": grid, "seeds": args.seeds, "days": args.days, "per_hour": args.per_hour,
              "window_seconds": args.window, "scenarios": {n: asdict(SCENARIOS[n]) for n in runs if n in SCENARIOS},
              "results": results, "false_alarms_per_week": {s: false_alarms_total(results, s) for s in grid}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    console.print(f"results written to {args.out}")
    return 0
