"""Closed window -> findings: drift on the shifted feature only, tiers and escalation, data quality, stable ids."""

from __future__ import annotations

import numpy as np
import pytest

from shared.events import FeatureSpec, ModelSpec
from shared.stats.baseline import Baseline
from shared.stats.reference import profile
from shared.stats.window import WindowLayout
from services.drift.evaluate import findings, gauges
from shared.events import finding_id
from services.drift.quality import QualityLayout
from services.drift.windows import WindowConfig, Windows, columnar

FEATURES = [f"f{j}" for j in range(5)]


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    cols = {f: rng.normal(size=4_000).tolist() for f in FEATURES}
    cols["prediction"] = rng.integers(0, 2, size=4_000).tolist()
    base = Baseline.from_profile(profile(cols, seed=1), task="binary_classification")
    schema = {f: FeatureSpec(min=-6, max=6, max_null_rate=0.05) for f in FEATURES}
    return base, schema


def closed_window(setup, spec, shift=None, n=3_000, mutate=None, seed=1):
    base, _ = setup
    rng = np.random.default_rng(seed)
    cfg = WindowConfig(spec.window_seconds, spec.allowed_lateness_seconds, WindowLayout.of(base),
                       QualityLayout.of(spec.features))
    x = rng.normal(size=(len(FEATURES), n))
    for f, d in (shift or {}).items():
        x[FEATURES.index(f)] += d
    evs = [{"event_id": f"e{i}", "timestamp": float(i % 60), "features": dict(zip(FEATURES, x[:, i].tolist())),
            "prediction": int(rng.integers(0, 2))} for i in range(n)]
    for e in evs:
        (mutate or (lambda e: None))(e)
    w = Windows()
    w.add("m", cfg, columnar(evs, cfg)[0])
    return w.add("m", cfg, columnar([{**evs[0], "event_id": "late", "timestamp": 10_000.0}], cfg)[0]).closed[0]


def spec_of(setup, **kw):
    return ModelSpec(window_seconds=60, allowed_lateness_seconds=0, features=setup[1], **kw)


def test_a_shifted_feature_and_only_it_gets_a_high_or_critical_data_drift_finding(setup):
    spec = spec_of(setup)
    found, rows = findings(closed_window(setup, spec, {"f2": 1.0}), setup[0], spec)
    assert [(f.kind, f.feature) for f in found] == [("data_drift", "f2")]
    assert found[0].severity in ("high", "critical") and found[0].evidence["reference"] == "registered"
    assert found[0].recommended_actions and set(found[0].metrics) >= {"psi", "ks_statistic", "ks_p_value", "ks_p_adjusted"}
    assert {(m, lab["feature"]) for m, lab, _ in gauges("m", rows) if m == "psi"} == {("psi", f) for f in FEATURES}


def test_an_undrifted_window_has_no_findings_low_ones_are_not_published(setup):
    spec = spec_of(setup)
    assert findings(closed_window(setup, spec), setup[0], spec)[0] == []


def test_a_high_risk_model_is_raised_one_tier(setup):
    medium = spec_of(setup)
    high = spec_of(setup, risk_tier="high")
    w = closed_window(setup, medium, {"f1": 0.35})
    a, b = findings(w, setup[0], medium)[0], findings(w, setup[0], high)[0]
    assert [f.severity for f in a] == ["medium"] and [f.severity for f in b] == ["high"]
    assert b[0].recommended_actions == ["notify", "queue_retraining", "increase_monitoring_frequency"]


def test_finding_ids_are_stable_and_distinct_per_model_kind_feature_and_window():
    ids = {finding_id(m, k, f, s) for m in "ab" for k in ("data_drift", "data_quality") for f in ("x", None) for s in (0, 60)}
    assert len(ids) == 16 and finding_id("a", "data_drift", "x", 0) == finding_id("a", "data_drift", "x", 0)


def test_out_of_range_wrong_type_nulls_unexpected_and_missing_features_are_data_quality_findings(setup):
    spec = spec_of(setup)

    def mutate(e):
        i = int(e["event_id"][1:])
        f = e["features"]
        if i % 5 == 0:
            f["f0"] = 99.0  # 20% out of range
        if i % 4 == 0:
            f["f1"] = None  # 25% null, limit 5%
        if i % 50 == 0:
            f["f3"] = "oops"  # 2% wrong type
        f.pop("f4")  # missing everywhere
        f["extra"] = 1.0  # unexpected
    found, _ = findings(closed_window(setup, spec, mutate=mutate), setup[0], spec)
    quality = {f.feature: f for f in found if f.kind == "data_quality"}
    assert set(quality) == {"f0", "f1", "f3", "f4", "extra"}
    assert quality["f0"].metrics["out_of_range_share"] == pytest.approx(0.2, abs=0.01) and quality["f0"].severity == "high"
    assert quality["f1"].metrics["null_rate"] == pytest.approx(0.25, abs=0.01) and quality["f1"].severity == "high"
    assert quality["f3"].severity == "medium" and quality["f4"].metrics["missing_share"] == 1.0
    assert quality["extra"].evidence["problem"] == "unexpected_feature"


def test_without_a_registered_reference_the_first_full_window_becomes_it(setup):
    import orjson
    spec = spec_of(setup)
    cfg = WindowConfig(60, 0, WindowLayout(), QualityLayout.of(spec.features))
    rng = np.random.default_rng(5)

    def evs(w, n, shift=0.0, start=0.5):
        x = rng.normal(size=(len(FEATURES), n))
        x[2] += shift
        return [{"event_id": f"w{w}-{i}", "timestamp": w * 60 + start + i * (59 - start) / n,
                 "features": dict(zip(FEATURES, x[:, i].tolist())), "prediction": int(rng.integers(0, 2))}
                for i in range(n)]
    stream = [evs(0, 500), evs(1, 3_000, start=0.0), evs(2, 3_000), evs(3, 3_000, shift=1.0), evs(4, 1)]
    windows, out = Windows(), []
    for i, batch in enumerate(stream):
        if i == 3:  # a checkpoint and restore in the middle keeps the derived reference
            windows = Windows.from_dict(orjson.loads(orjson.dumps(windows.to_dict())))
        eff = windows.effective("m", cfg)
        out += windows.add("m", cfg, columnar(batch, eff)[0], task=spec.task).closed
    assert [(c.start, c.base is not None) for c in out] == [(0, False), (60, False), (120, True), (180, True)]
    assert findings(out[2], out[2].base, spec, "first_window")[0] == []
    found = findings(out[3], out[3].base, spec, "first_window")[0]
    assert [(f.kind, f.feature, f.evidence["reference"]) for f in found] == [("data_drift", "f2", "first_window")]
