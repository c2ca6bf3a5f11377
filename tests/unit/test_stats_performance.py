"""Window performance metrics and metric trends, against scikit-learn, SciPy and plain NumPy recomputations."""

from __future__ import annotations

import math
import typing

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from shared.events import ModelSpec
from shared.stats.performance import (HIGHER_IS_BETTER, classification_metrics, degradation, loss_moments,
                                      pool_moments, primary_metric, regression_metrics, worse_p_value)
from shared.stats.trend import Trend, trend

sklearn = pytest.importorskip("sklearn")
from sklearn import metrics as skm  # noqa: E402

SETTINGS = settings(max_examples=80, deadline=None)


# --- independent reference implementations (loops over classes with boolean masks) ------------

def classification_by_masks(pred, label, positive=None):
    classes = sorted(set(pred.tolist()) | set(label.tolist()))
    per_class = {}
    for c in classes:
        p, y = pred == c, label == c
        tp, fp, fn = int((p & y).sum()), int((p & ~y).sum()), int((~p & y).sum())
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per_class[c] = (prec, rec, f1)
    out = {"accuracy": float(np.mean(pred == label)),
           "precision_macro": sum(v[0] for v in per_class.values()) / len(classes),
           "recall_macro": sum(v[1] for v in per_class.values()) / len(classes),
           "f1_macro": sum(v[2] for v in per_class.values()) / len(classes)}
    if positive is not None:
        out.update(zip(("precision", "recall", "f1"), per_class.get(positive, (0.0, 0.0, 0.0))))
    return out


def regression_by_loop(pred, label):
    errors = [float(p) - float(y) for p, y in zip(pred, label)]
    return {"mae": sum(abs(e) for e in errors) / len(errors),
            "rmse": math.sqrt(sum(e * e for e in errors) / len(errors))}


# codes from a small range, including negative codes, so windows with one class, a class only in
# pred or only in label, and an absent positive class all occur
code_pairs = st.integers(1, 60).flatmap(lambda n: st.tuples(
    st.lists(st.integers(-2, 3), min_size=n, max_size=n), st.lists(st.integers(-2, 3), min_size=n, max_size=n)))
# metric values at a resolution of 1e-6 (linregress's sums of squares underflow for values near 1e-160)
series = st.lists(st.floats(-1e3, 1e3, allow_nan=False).map(lambda v: round(v, 6)), min_size=3, max_size=20)


def arrays(pair):
    return np.array(pair[0], dtype=np.int64), np.array(pair[1], dtype=np.int64)


# --- classification ---------------------------------------------------------------------------

@SETTINGS
@given(code_pairs)
def test_accuracy_and_macro_f1_equal_sklearn(pair):
    pred, label = arrays(pair)
    m = classification_metrics(pred, label)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(label, pred), rel=1e-12)
    for key, fn in (("precision_macro", skm.precision_score), ("recall_macro", skm.recall_score),
                    ("f1_macro", skm.f1_score)):
        assert m[key] == pytest.approx(fn(label, pred, average="macro", zero_division=0), rel=1e-12, abs=1e-15), key


@SETTINGS
@given(code_pairs, st.integers(-2, 4))
def test_positive_class_metrics_equal_sklearn(pair, positive):
    pred, label = arrays(pair)
    m = classification_metrics(pred, label, positive=positive)
    for key, fn in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
        expected = fn(label, pred, labels=[positive], average=None, zero_division=0)[0]
        assert m[key] == pytest.approx(expected, rel=1e-12, abs=1e-15), key


@SETTINGS
@given(code_pairs, st.one_of(st.none(), st.integers(-2, 4)))
def test_classification_metrics_equal_masked_numpy_recomputation(pair, positive):
    pred, label = arrays(pair)
    m = classification_metrics(pred, label, positive=positive)
    expected = classification_by_masks(pred, label, positive)
    assert m.keys() == expected.keys()
    for key in expected:
        assert m[key] == pytest.approx(expected[key], rel=1e-12, abs=1e-15), key


def test_binary_window_metrics_by_hand():
    pred = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    label = np.array([1, 1, 0, 0, 0, 1, 1, 0])  # tp 3, fp 1, fn 1, tn 3
    m = classification_metrics(pred, label, positive=1)
    assert (m["accuracy"], m["precision"], m["recall"], m["f1"]) == pytest.approx((0.75, 0.75, 0.75, 0.75))
    m0 = classification_metrics(pred, label, positive=0)
    assert m0["precision"] == pytest.approx(0.75) and m0["recall"] == pytest.approx(0.75)


def test_window_with_one_class_only_is_perfect_in_macro_and_zero_for_an_absent_positive():
    m = classification_metrics(np.array([2, 2, 2]), np.array([2, 2, 2]), positive=1)
    assert (m["accuracy"], m["precision_macro"], m["recall_macro"], m["f1_macro"]) == (1.0, 1.0, 1.0, 1.0)
    assert (m["precision"], m["recall"], m["f1"]) == (0.0, 0.0, 0.0)


def test_class_only_in_predictions_counts_in_the_macro_average_with_zero_scores():
    m = classification_metrics(np.array([0, 0, 1, 2]), np.array([0, 0, 1, 1]))
    # classes {0, 1, 2}: precision 1, 1, 0; recall 1, 0.5, 0 (class 2 never labelled)
    assert m["precision_macro"] == pytest.approx(2 / 3)
    assert m["recall_macro"] == pytest.approx(0.5)
    assert m["f1_macro"] == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_classification_rejects_float_codes_mismatched_lengths_and_empty_windows():
    with pytest.raises(ValueError, match=r"pred.dtype=float64: must be integer"):
        classification_metrics(np.array([0.0, 1.0]), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"pred has 2 values, label 3"):
        classification_metrics(np.array([0, 1]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match=r"pred: empty"):
        classification_metrics(np.array([], dtype=np.int64), np.array([], dtype=np.int64))


# --- regression -------------------------------------------------------------------------------

@SETTINGS
@given(st.integers(1, 50).flatmap(lambda n: st.tuples(
    *[st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=n, max_size=n)] * 2)))
def test_mae_and_rmse_equal_sklearn_and_a_plain_loop(pair):
    pred, label = np.array(pair[0]), np.array(pair[1])
    m = regression_metrics(pred, label)
    by_loop = regression_by_loop(pred, label)
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(label, pred), rel=1e-9, abs=1e-9)
    assert m["rmse"] == pytest.approx(skm.root_mean_squared_error(label, pred), rel=1e-9, abs=1e-9)
    assert m["mae"] == pytest.approx(by_loop["mae"], rel=1e-9, abs=1e-9)
    assert m["rmse"] == pytest.approx(by_loop["rmse"], rel=1e-9, abs=1e-9)


def test_regression_rejects_nan_naming_the_index():
    with pytest.raises(ValueError, match=r"pred\[1\]=nan"):
        regression_metrics(np.array([1.0, np.nan, 2.0]), np.array([1.0, 2.0, 3.0]))


# --- degradation and the primary metric --------------------------------------------------------

def test_metrics_report_exactly_the_metrics_with_a_direction():
    keys = set(classification_metrics(np.array([0, 1]), np.array([1, 1]), positive=1))
    keys |= set(regression_metrics(np.array([0.0]), np.array([1.0])))
    assert keys == set(HIGHER_IS_BETTER)


def test_degradation_is_positive_when_a_higher_is_better_metric_falls():
    assert degradation("accuracy", 0.92, 0.86) == pytest.approx(0.06)
    assert degradation("f1_macro", 0.80, 0.85) == pytest.approx(-0.05)


def test_degradation_of_errors_is_relative_to_the_baseline_and_unit_free():
    assert degradation("rmse", 2.0, 2.1) == pytest.approx(0.05)
    assert degradation("mae", 4.0, 3.0) == pytest.approx(-0.25)  # a smaller error is better
    assert degradation("mae", 200.0, 210.0) == pytest.approx(degradation("mae", 0.02, 0.021))
    assert degradation("rmse", 0.0, 0.3) == pytest.approx(0.3)  # zero baseline: absolute


def test_degradation_of_an_unknown_metric_names_it_and_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"metric='auc': unknown; valid: accuracy, .*rmse"):
        degradation("auc", 0.9, 0.8)


def test_primary_metric_covers_every_task_a_model_spec_allows():
    tasks = typing.get_args(ModelSpec.model_fields["task"].annotation)
    assert {t: primary_metric(t) for t in tasks} == {"binary_classification": "accuracy",
                                                     "multiclass_classification": "accuracy",
                                                     "regression": "rmse"}
    with pytest.raises(ValueError, match=r"task='ranking': unknown"):
        primary_metric("ranking")


# --- trend ------------------------------------------------------------------------------------

@SETTINGS
@given(series)
def test_trend_equals_scipy_linregress(values):
    lr = stats.linregress(np.arange(len(values)), values)
    # near a perfect line linregress's p-value (through 1 - r) loses the digits ours keeps
    assume(abs(lr.rvalue) < 1 - 1e-6)
    t = trend(values)
    scale = 1e-12 * (1.0 + max(abs(v) for v in values))
    assert t.n == len(values)
    assert t.slope == pytest.approx(lr.slope, rel=1e-9, abs=scale)
    assert t.intercept == pytest.approx(lr.intercept, rel=1e-9, abs=scale)
    assert t.p_value == pytest.approx(lr.pvalue, rel=1e-9, abs=1e-12)


@SETTINGS
@given(series, st.integers(0, 10), st.floats(-2e3, 2e3), st.booleans())
def test_projection_and_breach_lie_on_the_fitted_line(values, horizon, minimum, higher_is_better):
    t = trend(values, horizon=horizon, min_acceptable=minimum, higher_is_better=higher_is_better)
    last_x = len(values) - 1
    assert t.projected == pytest.approx(t.intercept + t.slope * (last_x + horizon), rel=1e-9, abs=1e-6)
    fitted_last = t.intercept + t.slope * last_x
    past = fitted_last < minimum if higher_is_better else fitted_last > minimum
    worse = t.slope < 0 if higher_is_better else t.slope > 0
    if past:
        assert t.windows_to_breach == 0.0
    elif not worse:
        assert t.windows_to_breach is None
    else:
        assert t.windows_to_breach >= 0
        assert t.intercept + t.slope * (last_x + t.windows_to_breach) == pytest.approx(minimum, rel=1e-9, abs=1e-6)


def test_falling_accuracy_line_projects_and_breaches_by_hand():
    accuracy = [0.9 - 0.01 * k for k in range(7)]  # 0.90 .. 0.84
    t = trend(accuracy, horizon=7, min_acceptable=0.80)
    assert t.slope == pytest.approx(-0.01)
    assert t.intercept == pytest.approx(0.9)
    assert t.projected == pytest.approx(0.77)  # x = 6 + 7
    assert t.windows_to_breach == pytest.approx(4.0)  # 0.84 - 0.01 w = 0.80
    assert t.declining()
    assert trend(accuracy[:5], min_acceptable=0.85).windows_to_breach == pytest.approx(1.0)  # 0.86 -> 0.85
    assert trend(accuracy, min_acceptable=0.85).windows_to_breach == 0.0  # 0.84: already below


def test_rising_error_breaches_upwards_when_lower_is_better():
    rmse = [1.0 + 0.1 * k for k in range(7)]  # 1.0 .. 1.6
    t = trend(rmse, min_acceptable=2.0, higher_is_better=False)
    assert t.windows_to_breach == pytest.approx(4.0)
    assert t.declining(higher_is_better=False) and not t.declining(higher_is_better=True)
    assert trend(rmse, min_acceptable=2.0, higher_is_better=True).windows_to_breach == 0.0  # 1.6 < 2.0


def test_rising_series_never_breaches():
    t = trend([0.80, 0.82, 0.81, 0.85, 0.86, 0.88, 0.90], min_acceptable=0.75)
    assert t.slope > 0 and t.windows_to_breach is None and not t.declining()
    assert trend([0.8, 0.8, 0.8], min_acceptable=0.75).windows_to_breach is None  # flat never crosses


def test_no_minimum_means_no_breach():
    assert trend([0.9, 0.8, 0.7, 0.6]).windows_to_breach is None


def test_perfect_line_has_p_value_zero_and_a_flat_line_one():
    line = trend([3.0, 5.0, 7.0, 9.0])
    assert (line.slope, line.intercept, line.p_value) == (2.0, 3.0, 0.0)
    flat = trend([0.8] * 5)
    assert (flat.slope, flat.p_value) == (0.0, 1.0)
    assert not flat.declining()


def test_noisy_downward_slope_is_not_declining_without_significance():
    t = trend([0.90, 0.80, 0.91, 0.84, 0.90, 0.79, 0.88])
    assert t.slope < 0 and t.p_value > 0.05
    assert not t.declining()
    assert t.declining(alpha=1.0)


def test_p_value_does_not_depend_on_the_metric_unit():
    values = np.array([0.90, 0.88, 0.89, 0.86, 0.87, 0.85, 0.84])
    p = trend(values).p_value
    assert 0 < p < 0.05
    for unit in (1e-200, 1e200):
        assert trend(values * unit).p_value == pytest.approx(p, rel=1e-9)


def test_fewer_than_three_values_give_no_trend():
    assert trend([]) is None
    assert trend([0.9]) is None
    assert trend([0.9, 0.8]) is None
    assert isinstance(trend([0.9, 0.8, 0.7]), Trend)


def test_nan_value_is_rejected_naming_its_index():
    with pytest.raises(ValueError, match=r"values\[1\]=nan: must be finite"):
        trend([0.9, float("nan"), 0.8])


def test_negative_horizon_is_rejected():
    with pytest.raises(ValueError, match=r"horizon=-1: must be >= 0"):
        trend([0.9, 0.8, 0.7], horizon=-1)


# --- the regression gate: per-event loss moments and their z-test ----------------------------

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@SETTINGS
@given(st.lists(st.tuples(finite, finite), min_size=2, max_size=200), st.integers(1, 199))
def test_loss_moments_pool_to_the_moments_of_the_concatenation(pairs, cut):
    pred, label = np.array(pairs).T
    cut = min(cut, len(pairs) - 1)
    whole = loss_moments(pred, label)
    parts = [loss_moments(pred[:cut], label[:cut]), loss_moments(pred[cut:], label[cut:])]
    e = pred - label
    for metric, loss in (("mae", np.abs(e)), ("rmse", e**2)):
        assert whole[metric] == pytest.approx([len(e), loss.mean(), loss.var(ddof=1)], rel=1e-9, abs=1e-9)
        assert pool_moments([p[metric] for p in parts]) == pytest.approx(whole[metric], rel=1e-7, abs=1e-6)
    assert math.sqrt(whole["rmse"][1]) == pytest.approx(regression_metrics(pred, label)["rmse"], rel=1e-9, abs=1e-9)


@SETTINGS
@given(st.lists(finite, min_size=2, max_size=100), st.lists(finite, min_size=2, max_size=100))
def test_worse_p_value_is_the_one_sided_z_test_scipy_computes(a, b):
    a, b = np.array(a), np.array(b)
    assume(a.var() > 1e-6 and b.var() > 1e-6)
    wa = [len(a), a.mean(), a.var(ddof=1)]
    # against a known mean: the one-sample z statistic is SciPy's one-sample t statistic
    t = stats.ttest_1samp(a, 1.0).statistic
    assert worse_p_value(wa, 1.0) == pytest.approx(stats.norm.sf(t), rel=1e-6, abs=1e-12)
    # against a sample: Welch's statistic
    t = stats.ttest_ind(a, b, equal_var=False).statistic
    assert worse_p_value(wa, [len(b), b.mean(), b.var(ddof=1)]) == pytest.approx(stats.norm.sf(t), rel=1e-6,
                                                                                    abs=1e-12)


def test_worse_p_value_has_its_level_on_stationary_gaussian_errors():
    """Under H0 (rmse equal to the baseline), p < 0.05 in about 5 % of windows; a 10 % higher rmse
    is caught almost always at 1,000 labels."""
    rng = np.random.default_rng(3)
    p0 = [worse_p_value(loss_moments(rng.normal(0, 1, 1000), np.zeros(1000))["rmse"], 1.0) for _ in range(2000)]
    assert 0.035 < np.mean(np.array(p0) < 0.05) < 0.065
    p1 = [worse_p_value(loss_moments(rng.normal(0, 1.1, 1000), np.zeros(1000))["rmse"], 1.0) for _ in range(200)]
    assert np.mean(np.array(p1) < 0.05) > 0.95


def test_worse_p_value_without_variance_is_none():
    assert worse_p_value([10, 2.0, 0.0], 1.0) is None
    assert worse_p_value([0, 0.0, 0.0], [0, 0.0, 0.0]) is None
