"""Oversight statistics against independent NumPy/SciPy recomputations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.stats import binomtest

from shared.stats.oversight import (DAY, KeySample, ReviewCounts, ReviewParams, coverage, evaluate, summarize,
                                    wilson, workload)
from shared.stats.sample import hash_ids

T0 = 1_700_006_400  # a multiple of 86,400


def team(rng, days=7, per_day=400, stampers=("r0", "r1", "r2", "r3"), rate=0.15):
    """Reviews of a team of 10 over `days` days; the stampers never override."""
    names = [f"r{i}" for i in range(10)]
    n = days * per_day
    who = rng.choice(names, size=n)
    ts = T0 + rng.uniform(0, days * DAY, size=n)
    ov = (rng.uniform(size=n) < rate) & ~np.isin(who, stampers)
    return who, ts, ov


def bucketed(who, ts, ov, size=3600):
    buckets: dict[int, ReviewCounts] = {}
    starts = (ts // size * size).astype(int)
    for s in np.unique(starts):
        i = starts == s
        buckets[int(s)] = ReviewCounts().update(who[i].tolist(), ts[i], ov[i])
    return buckets


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (17, 400), (1, 3)])
def test_wilson_interval_equals_scipys(k, n):
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert np.allclose(wilson(k, n), (ci.low, ci.high), atol=1e-12)


def test_four_rubber_stampers_of_ten_are_named_and_rates_match_numpy():
    rng = np.random.default_rng(1)
    who, ts, ov = team(rng)
    total, per_day = summarize(bucketed(who, ts, ov), T0 + 7 * DAY, 7)
    out = evaluate(total, per_day, ReviewParams())
    assert out["rubber_stampers"] == ["r0", "r1", "r2", "r3"]
    assert out["conditions"]["reviewer_rubber_stamping"]
    assert out["metrics"]["override_rate"] == pytest.approx(ov.mean(), abs=1e-12)
    for r, v in out["reviewers"].items():
        assert v["reviews"] == (who == r).sum() and v["override_rate"] == pytest.approx(ov[who == r].mean(), abs=1e-12)
    assert not out["conditions"]["override_rate_low"]  # ~9 % overall


def test_a_small_team_or_few_reviews_never_alarm():
    rng = np.random.default_rng(2)
    who, ts, ov = team(rng, days=1, per_day=60)  # ~6 reviews per reviewer: nobody judged
    total, per_day = summarize(bucketed(who, ts, ov), T0 + 7 * DAY, 7)
    out = evaluate(total, per_day, ReviewParams())
    assert out["reviewers"] == {} and not any(out["conditions"].values())
    few = ReviewCounts().update(["a"] * 99, np.full(99, float(T0)), np.zeros(99, bool))  # 0 % of 99
    assert not evaluate(few, [[99, 0]], ReviewParams())["conditions"]["override_rate_low"]
    more = ReviewCounts().update(["a"] * 100, np.full(100, float(T0)), np.zeros(100, bool))
    assert evaluate(more, [[100, 0]], ReviewParams())["conditions"]["override_rate_low"]


def test_reviews_outside_the_period_are_left_out_and_days_are_trailing_slices():
    a = ReviewCounts().update(["x"], [T0], [True])
    b = ReviewCounts().update(["x", "x"], [T0 + 7 * DAY] * 2, [False, False])
    total, per_day = summarize({T0: a, T0 + 7 * DAY: b}, T0 + 7 * DAY, 7)
    assert (total.n, total.overrides, per_day[0], per_day[-1]) == (1, 1, [1, 1], [0, 0])


def test_override_rate_falling_on_high_volume_days_is_workload_pressure_and_uniform_is_not():
    rng = np.random.default_rng(3)
    volume = np.array([200, 800, 200, 800, 300, 900, 250])
    rates = np.where(volume >= 800, 0.03, 0.12)
    overrides = rng.binomial(volume, rates)
    w = workload(volume, overrides)
    hi, lo = volume >= np.quantile(volume, 0.75), volume <= np.quantile(volume, 0.25)
    assert w["high_rate"] == pytest.approx(overrides[hi].sum() / volume[hi].sum())
    assert w["low_rate"] == pytest.approx(overrides[lo].sum() / volume[lo].sum())
    per_day = [[int(n), int(o)] for n, o in zip(volume, overrides)]
    total = ReviewCounts(n=int(volume.sum()), overrides=int(overrides.sum()))
    assert evaluate(total, per_day, ReviewParams())["conditions"]["workload_pressure"]
    uniform = rng.binomial(volume, 0.1)
    per_day = [[int(n), int(o)] for n, o in zip(volume, uniform)]
    assert not evaluate(ReviewCounts(n=int(volume.sum()), overrides=int(uniform.sum())), per_day,
                        ReviewParams())["conditions"]["workload_pressure"]


def test_anchoring_counts_initial_disagreements_and_switches_to_the_ai():
    c = ReviewCounts().update(["a"] * 5, [T0] * 5, [False, False, True, False, False],
                              initial_disagree=[True, True, True, False, None],
                              switched=[True, True, False, False, False])
    out = evaluate(c, [[5, 1]], ReviewParams())["metrics"]
    assert (c.initial, c.initial_disagree, c.switched) == (4, 3, 2)
    assert out["initial_disagreement_rate"] == 0.75 and out["switch_to_ai_rate"] == pytest.approx(2 / 3)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 3 * DAY), st.booleans()), min_size=1, max_size=60),
       st.integers(1, 59))
def test_merging_two_halves_equals_the_whole(rows, cut):
    who, ts, ov = (list(x) for x in zip(*rows))
    cut = min(cut, len(rows))
    whole = ReviewCounts().update(who, ts, ov)
    halves = ReviewCounts().update(who[:cut], ts[:cut], ov[:cut]).merge(ReviewCounts().update(who[cut:], ts[cut:], ov[cut:]))
    assert halves == whole
    assert ReviewCounts.from_dict(whole.to_dict()) == whole


def test_coverage_is_exact_below_k_and_close_above_it():
    rng = np.random.default_rng(4)
    ids = np.array([f"p{i}" for i in range(50_000)])
    low = rng.uniform(size=ids.size) < 0.3
    reviewed = low & (rng.uniform(size=ids.size) < 0.4) | (~low & (rng.uniform(size=ids.size) < 0.05))
    keys = hash_ids(ids.tolist())
    exact = (low & reviewed).sum() / low.sum()
    small = slice(0, 300)
    n_low, n_both, share = coverage(KeySample(10_000).update(keys[small][low[small]]),
                                    KeySample(10_000).update(keys[small][reviewed[small]]), 10_000)
    assert (n_low, n_both) == (low[small].sum(), (low & reviewed)[small].sum())
    k = 4096
    n_low, _, share = coverage(KeySample(k).update(keys[low]), KeySample(k).update(keys[reviewed]), k)
    assert n_low > 1000 and abs(share - exact) < 0.05


def test_key_samples_are_order_free():
    keys = hash_ids([f"e{i}" for i in range(1000)])
    a = KeySample(100).update(keys[:600]).merge(KeySample(100).update(keys[300:]))
    b = KeySample(100).update(keys[::-1])
    assert a.keys.tolist() == b.keys.tolist() == np.sort(keys)[:100].tolist()
    assert KeySample.from_list(100, a.to_list()).keys.tolist() == a.keys.tolist()


def test_a_partial_first_day_is_not_read_as_a_quiet_day():
    # monitoring began late on the oldest day: few reviews, and careful ones (before a change)
    total = ReviewCounts()
    per_day = [[30, 12], *[[200 + 10 * d, 10] for d in range(6)]]
    judged = evaluate(total, per_day, ReviewParams(workload_min_reviews=20))
    assert judged["conditions"]["workload_pressure"]  # as if the busy days were the careless ones
    whole = evaluate(total, per_day, ReviewParams(workload_min_reviews=20), partial=1)
    assert not whole["conditions"]["workload_pressure"]
    assert [d["whole"] for d in whole["days"]] == [False] + [True] * 6
    assert whole["metrics"]["workload_days"] == 6.0


def test_workload_needs_busier_days_and_a_significant_difference():
    from scipy.stats import chi2_contingency
    n, o = [600, 610, 590, 605, 595, 620, 580], [40, 22, 45, 30, 41, 25, 44]  # volumes alike: noise
    flat = evaluate(ReviewCounts(), [list(d) for d in zip(n, o)], ReviewParams())
    assert flat["metrics"]["workload_volume_ratio"] < 1.5 and not flat["conditions"]["workload_pressure"]
    n, o = [250, 900, 220, 950, 300, 880, 240], [40, 27, 35, 29, 48, 26, 38]
    busy = evaluate(ReviewCounts(), [list(d) for d in zip(n, o)], ReviewParams())
    assert busy["conditions"]["workload_pressure"]
    m = busy["metrics"]
    hi, lo = np.array(n) >= np.quantile(n, 0.75), np.array(n) <= np.quantile(n, 0.25)
    k1, n1, k2, n2 = np.array(o)[hi].sum(), np.array(n)[hi].sum(), np.array(o)[lo].sum(), np.array(n)[lo].sum()
    _, p, _, _ = chi2_contingency([[k1, n1 - k1], [k2, n2 - k2]], correction=False)  # = the pooled z-test
    assert m["workload_p_value"] == pytest.approx(p, rel=1e-9)
    assert m["workload_volume_ratio"] == pytest.approx(np.array(n)[hi].mean() / np.array(n)[lo].mean())
