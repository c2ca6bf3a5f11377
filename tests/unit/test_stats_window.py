"""Window state (mergeable, order-free, exact once per event, checkpointable), evaluate, calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import jensenshannon

from shared import policy
from shared.stats import calibrate
from shared.stats.baseline import Baseline
from shared.stats.reference import profile
from shared.stats.window import WindowLayout, WindowState, evaluate
from tests.unit.test_stats import psi_by_hand

FEATURES = [f"f{j:02d}" for j in range(4)]


def make_reference(rng, rows=3_000, task="binary_classification"):
    cols = {name: rng.normal(size=rows).round(2).tolist() for name in FEATURES}  # rounded: ties
    cols["color"] = rng.choice(["red", "green", "blue"], size=rows, p=[0.5, 0.3, 0.2]).tolist()
    cols["prediction"] = rng.integers(0, 2, size=rows).tolist()
    cols["confidence"] = rng.uniform(0.5, 1.0, size=rows).tolist()
    return Baseline.from_profile(profile(cols, sample_size=2_000, seed=1), task=task)


@pytest.fixture(scope="module")
def base():
    return make_reference(np.random.default_rng(0))


def make_events(rng, n, shift=0.0, start=0, null_rate=0.05, unseen=0.02):
    x = rng.normal(size=(len(FEATURES), n)).round(2)
    x[0] += shift
    x[rng.random(x.shape) < null_rate] = np.nan
    colors = rng.choice(np.array(["red", "green", "blue", "purple", None], dtype=object), size=n,
                        p=[0.47 - unseen, 0.3, 0.2, unseen, 0.03])
    return {"ids": [f"e{start + i}" for i in range(n)],
            "columns": {**{name: x[j] for j, name in enumerate(FEATURES)}, "color": colors},
            "prediction": rng.integers(0, 2, size=n), "confidence": rng.uniform(0.4, 1.0, size=n)}


def take(events, idx):
    idx = list(idx)
    return {"ids": [events["ids"][i] for i in idx],
            "columns": {k: v[idx] for k, v in events["columns"].items()},
            "prediction": events["prediction"][idx], "confidence": events["confidence"][idx]}


def window(base, *batches, sample_size=500):
    w = WindowState(WindowLayout.of(base, sample_size))
    for b in batches:
        w.update(b["ids"], b["columns"], b["prediction"], b["confidence"])
    return w


# --- the state -------------------------------------------------------------------------------

def test_update_counts_bins_nulls_categories_and_predictions(base):
    events = make_events(np.random.default_rng(1), 400)
    w = window(base, events)
    assert w.n == 400
    x = events["columns"]["f01"]
    expected = np.bincount(np.searchsorted(base.numeric[1].edges, x[~np.isnan(x)], side="right"), minlength=10)
    assert w.numeric.counts[1].tolist() == expected.tolist()
    assert w.numeric.nulls[1] == np.isnan(x).sum()
    colors = list(events["columns"]["color"])
    assert dict(zip(w.categorical["color"].labels, w.categorical["color"].counts.tolist())) == {
        c: colors.count(c) for c in ("red", "green", "blue")} | {"other": colors.count("purple")}
    assert w.categorical["color"].nulls == colors.count(None)
    assert w.prediction.counts.sum() == 400 and len(w.sample) == 400


def test_an_event_delivered_twice_is_counted_once(base):
    events = make_events(np.random.default_rng(2), 300)
    once = window(base, events)
    twice = window(base, events, take(events, range(0, 300, 3)), take(events, [5, 5, 7]))
    assert twice == once and twice.n == 300


@settings(max_examples=25, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(1, 6))
def test_batch_order_and_split_do_not_change_the_state(base, random, parts):
    events = make_events(np.random.default_rng(3), 700)
    order = list(range(700))
    random.shuffle(order)
    cuts = sorted(random.sample(range(1, 700), parts - 1))
    batches = [take(events, order[a:b]) for a, b in zip([0, *cuts], [*cuts, 700])]
    assert window(base, *batches) == window(base, events)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 900))
def test_merging_two_disjoint_windows_equals_the_whole(base, cut):
    events = make_events(np.random.default_rng(4), 900)
    a, b = window(base, take(events, range(cut))), window(base, take(events, range(cut, 900)))
    whole = window(base, events)
    assert a + b == whole
    a += b
    assert a == whole
    assert evaluate(a, base) == evaluate(whole, base)


def test_a_column_of_the_wrong_length_is_refused_before_counting(base):
    w = WindowState(WindowLayout.of(base))
    with pytest.raises(ValueError, match="'f00' has 1 values for 2 event ids"):
        w.update(["a", "b"], {"f00": [1.0]})
    assert w.n == 0 and w.seen.size == 0


def test_merging_windows_that_share_events_is_an_error(base):
    events = make_events(np.random.default_rng(5), 50)
    with pytest.raises(ValueError, match="share events"):
        window(base, events).merge(window(base, take(events, [0])))


def test_merging_windows_of_another_reference_is_an_error(base):
    other = make_reference(np.random.default_rng(99))
    with pytest.raises(ValueError, match="layouts differ"):
        WindowState(WindowLayout.of(base)).merge(WindowState(WindowLayout.of(other)))


def test_checkpoint_round_trips_through_json(base):
    events = make_events(np.random.default_rng(6), 800)
    w = window(base, events)
    restored = WindowState.from_dict(json.loads(json.dumps(w.to_dict())))
    assert restored == w
    assert evaluate(restored, base) == evaluate(w, base)
    # restored state keeps deduplicating and sampling like the original
    more = make_events(np.random.default_rng(7), 300, start=700)
    assert restored.update(more["ids"], more["columns"], more["prediction"], more["confidence"]) == window(
        base, events, more)


def test_checkpoint_of_a_busy_window_is_compact():
    rng = np.random.default_rng(8)
    base = Baseline.from_profile(profile({f"f{j}": rng.normal(size=5_000).tolist() for j in range(20)}))
    w = WindowState(WindowLayout.of(base))
    x = rng.normal(size=(20, 100_000))
    w.update([f"e{i}" for i in range(100_000)], {f"f{j}": x[j] for j in range(20)})
    size = len(json.dumps(w.to_dict()))
    # 8 bytes per event id + (8 + 20 x 8) bytes per sampled event, base64: about 3.8 MB
    assert size < 1.34 * (100_000 * 8 + w.layout.sample_size * 168) + 20_000


# --- evaluate ---------------------------------------------------------------------------------

def by_name(results):
    return {r["feature"]: r for r in results}


def test_evaluate_matches_scipy_and_independent_numpy(base):
    events = make_events(np.random.default_rng(9), 400, shift=0.3)
    w = window(base, events)
    results = by_name(evaluate(w, base))
    ps = []
    for j, ref in enumerate(base.numeric):
        m = results[ref.name]["metrics"]
        x = events["columns"][ref.name]
        x = x[~np.isnan(x)]
        ks = stats.ks_2samp(ref.sample, x)  # exact while the window fits its sample
        assert m["ks_statistic"] == pytest.approx(ks.statistic, abs=1e-12)
        assert m["ks_p_value"] == pytest.approx(ks.pvalue, rel=1e-9)
        win = np.bincount(np.searchsorted(ref.edges, x, side="right"), minlength=10) / x.size
        assert m["psi"] == pytest.approx(psi_by_hand(ref.counts / ref.counts.sum(), win), rel=1e-12)
        assert results[ref.name]["n"] == x.size
        ps.append(ks.pvalue)
    color = results["color"]["metrics"]
    ref = base.categorical[0]
    win = window(base, events).categorical["color"].counts
    chi = stats.chi2_contingency(np.array([ref.counts, win])[:, (ref.counts + win) > 0], correction=False)
    assert color["chi2_statistic"] == pytest.approx(chi.statistic) and color["chi2_p_value"] == pytest.approx(chi.pvalue)
    adjusted = stats.false_discovery_control([*ps, chi.pvalue], method="bh")
    got = [results[r.name]["metrics"]["ks_p_adjusted"] for r in base.numeric] + [color["chi2_p_adjusted"]]
    assert np.allclose(got, adjusted, rtol=1e-9)
    pred = results[None]["metrics"]
    win_pred = np.bincount(events["prediction"], minlength=2)
    assert pred["js_distance"] == pytest.approx(jensenshannon(base.prediction.counts, win_pred))
    assert pred["js_divergence"] == pytest.approx(pred["js_distance"] ** 2)
    chi = stats.chi2_contingency(np.array([base.prediction.counts, win_pred]), correction=False)
    assert pred["chi2_p_value"] == pytest.approx(chi.pvalue)
    assert pred["confidence_psi"] > 0
    json.dumps(results[None])


def test_a_shifted_feature_and_only_it_is_graded_high(base):
    rng = np.random.default_rng(10)
    w = window(base, make_events(rng, 5_000, shift=1.0, unseen=0.0), sample_size=2_000)
    results = evaluate(w, base)
    grades = {r["feature"]: policy.severity(r["metrics"]) for r in results}
    assert grades.pop("f00") in ("high", "critical")
    assert set(grades.values()) == {"low"}, grades
    shifted = by_name(results)["f00"]["metrics"]
    assert shifted["psi_percentile"] > 99 and shifted["ks_statistic_percentile"] > 99


def test_an_undrifted_window_is_unremarkable_against_its_calibrated_null(base):
    rng = np.random.default_rng(11)
    pct = []
    for k in range(20):
        w = window(base, make_events(rng, 1_000, start=k * 1_000, unseen=0.0), sample_size=400)
        pct += [r["metrics"]["psi_percentile"] for r in evaluate(w, base) if r["kind"] == "data_drift" and r["type"] == "numeric"]
    assert 30 < np.mean(pct) < 70 and np.mean(np.array(pct) > 95) < 0.15


def test_features_without_values_report_none(base):
    w = WindowState(WindowLayout.of(base)).update(["a", "b"], {"f01": [1.0, 2.0]})
    results = by_name(evaluate(w, base))
    assert results["f00"]["metrics"]["psi"] is None and results["f00"]["metrics"]["ks_p_adjusted"] is None
    assert results["color"]["metrics"]["chi2_p_value"] is None
    assert results["f01"]["metrics"]["ks_p_adjusted"] is not None
    assert results[None]["metrics"]["js_distance"] is None


def test_evaluate_refuses_a_window_of_another_reference(base):
    other = make_reference(np.random.default_rng(98))
    with pytest.raises(ValueError, match="layouts differ"):
        evaluate(WindowState(WindowLayout.of(other)), base)


def test_numeric_class_predictions_get_one_bin_per_class():
    rng = np.random.default_rng(12)
    cols = profile({"x": rng.normal(size=500).tolist(), "prediction": rng.integers(0, 5, 500).tolist()})
    base = Baseline.from_profile(cols, task="multiclass_classification")
    assert base.prediction.edges.tolist() == [1.0, 2.0, 3.0, 4.0]
    scores = Baseline.from_profile(cols, task="regression")
    assert scores.prediction.edges.size == 9


def test_baseline_accepts_the_stored_json_profile():
    rng = np.random.default_rng(13)
    cols = profile({"x": rng.normal(size=500).tolist(), "c": ["a", "b"] * 250})
    stored = json.loads(json.dumps({n: c.model_dump(mode="json") for n, c in cols.items()}))
    a, b = Baseline.from_profile(stored), Baseline.from_profile(cols)
    assert a.seed == b.seed and np.array_equal(a.edges, b.edges)


# --- calibration ------------------------------------------------------------------------------

def test_grid_keeps_two_significant_digits():
    assert [calibrate.grid(n) for n in (1, 100, 101, 1_049, 1_051, 123_456)] == [1, 100, 100, 1_000, 1_100, 120_000]


def test_psi_null_matches_the_two_sample_expectation():
    # E[PSI] ~ (B - 1) (1/n + 1/m) for two multinomial samples of the same distribution
    rng = np.random.default_rng(14)
    null = calibrate.bin_null(np.full(10, 1_000), 5_000, rng, resamples=2_000)
    assert np.mean(null) == pytest.approx(9 * (1 / 5_000 + 1 / 10_000), rel=0.1)


def test_ks_null_of_a_continuous_reference_matches_the_ks_distribution():
    rng = np.random.default_rng(15)
    null = calibrate.ks_null(np.sort(rng.normal(size=2_000)), 3_000, rng, resamples=400)
    en = 2_000 * 3_000 / 5_000
    assert np.median(null) == pytest.approx(stats.kstwo.median(round(en)), rel=0.1)


def test_nulls_are_deterministic_per_reference_and_size(base):
    other = make_reference(np.random.default_rng(0))
    ref = base.numeric[0]
    assert np.array_equal(base.bin_null("psi", ref.name, ref.counts, 1_234), other.bin_null("psi", ref.name, ref.counts, 1_230))
    assert np.array_equal(base.ks_nulls([ref], [777])[0], other.ks_nulls([ref], [777])[0])
    # a feature's null does not depend on which features were calibrated with it
    fresh = make_reference(np.random.default_rng(0))
    assert np.array_equal(fresh.ks_nulls([fresh.numeric[1]], [300])[0], base.ks_nulls(base.numeric[:2], [300, 300])[1])


def test_ks_nulls_equal_ks_2samp_on_the_same_resamples():
    x = np.sort(np.random.default_rng(16).integers(0, 40, size=300).astype(float))  # heavy ties
    nulls = calibrate.ks_nulls([x, np.sort(x * 0 + np.arange(300.0))], 200, np.random.default_rng(3), resamples=6)
    rng = np.random.default_rng(3)
    ref, win = rng.integers(0, 300, (6, 300)), rng.integers(0, 300, (6, 200))
    assert np.allclose(nulls[0], [stats.ks_2samp(x[ref[i]], x[win[i]]).statistic for i in range(6)], atol=1e-12)
    assert np.allclose(nulls[1], [stats.ks_2samp(ref[i] * 1.0, win[i] * 1.0).statistic for i in range(6)], atol=1e-12)


def test_exceedance_counts_the_observation_itself():
    assert calibrate.exceedance(np.arange(99.0), 1_000.0) == pytest.approx(0.01)
    assert calibrate.percentile(np.arange(99.0), -1.0) == 0.0


def test_psi_p_adjusted_is_the_bh_adjusted_exceedance_of_the_calibrated_null(base):
    rng = np.random.default_rng(11)
    results = by_name(evaluate(window(base, make_events(rng, 120, shift=0.8)), base))
    names = [r.name for r in base.numeric] + ["color"]
    exceed = np.array([max(1 - results[n]["metrics"]["psi_percentile"] / 100, 1 / (policy.PERCENTILE_RESAMPLES + 1))
                       for n in names])
    expected = stats.false_discovery_control(exceed, method="bh")
    got = [results[n]["metrics"]["psi_p_adjusted"] for n in names]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert got[0] < 0.05  # the shifted feature stays significant at n = 120
    # noise at a small n: a PSI above the medium tier does not grade unless it is unusual for n
    quiet = by_name(evaluate(window(base, make_events(rng, 40)), base))
    noisy = {r.name: quiet[r.name]["metrics"] for r in base.numeric if quiet[r.name]["metrics"]["psi"] > 0.1}
    assert len(noisy) >= 2, "at n = 40 undrifted features' PSI passes the medium tier by chance (here up to 1.0)"
    assert all(policy.severity({"psi": m["psi"], "psi_p_adjusted": m["psi_p_adjusted"]}) == "low"
               for m in noisy.values())
