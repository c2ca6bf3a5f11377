"""Fairness gaps and canary/shadow statistics, against NumPy and scipy recomputations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from shared.stats.canary import (VariantCounts, compare_canary, mann_whitney, shadow_agreement,
                                 two_proportion_z)
from shared.stats.fairness import OTHER, GroupCounts, gaps
from shared.stats.sample import hash_ids

# --- fairness -------------------------------------------------------------------------------

rows = st.lists(st.tuples(st.sampled_from(["a", "b", "c", None]), st.booleans(), st.booleans()), max_size=300)


def columns(data):
    values = [v for v, _, _ in data]
    pred = np.array([p for _, p, _ in data], dtype=bool)
    label = np.array([y for _, _, y in data], dtype=bool)
    return values, pred, label


def test_segment_15_points_lower_gives_demographic_parity_difference_of_0_15():
    values = ["north"] * 10_000 + ["south"] * 10_000
    pred = np.r_[np.arange(10_000) < 4_000, np.arange(10_000) < 2_500]
    g = gaps(GroupCounts().update("region", values, pred))["region"]
    assert g["demographic_parity_difference"] == pytest.approx(0.15)
    assert g["groups"]["south"]["positive_rate"] == pytest.approx(0.25)
    assert g["equalized_odds_difference"] is None  # no labels


def test_groups_below_min_group_size_are_excluded_and_listed():
    values = ["a"] * 200 + ["b"] * 200 + ["c"] * 50
    pred = np.r_[np.arange(200) < 100, np.arange(200) < 80, np.ones(50, bool)]  # c alone would give 0.5
    g = gaps(GroupCounts().update("seg", values, pred), min_group_size=100)["seg"]
    assert g["excluded"] == {"c": 50}
    assert sorted(g["groups"]) == ["a", "b"]
    assert g["demographic_parity_difference"] == pytest.approx(0.1)


def test_a_single_judged_group_has_no_gap():
    g = gaps(GroupCounts().update("seg", ["a"] * 150 + ["b"] * 10, np.ones(160, bool)), min_group_size=100)["seg"]
    assert g["demographic_parity_difference"] is None and g["equalized_odds_difference"] is None
    assert g["excluded"] == {"b": 10}


def test_a_group_of_exactly_min_group_size_is_judged_and_one_smaller_is_not():
    values = ["a"] * 100 + ["b"] * 100 + ["c"] * 99
    pred = np.r_[np.arange(100) < 50, np.arange(100) < 30, np.ones(99, bool)]
    g = gaps(GroupCounts().update("seg", values, pred), min_group_size=100)["seg"]
    assert sorted(g["groups"]) == ["a", "b"] and g["excluded"] == {"c": 99}
    assert g["demographic_parity_difference"] == pytest.approx(0.2)


def test_rates_need_min_group_size_labelled_events_in_a_group():
    rng = np.random.default_rng(5)
    c = GroupCounts()
    c.update("seg", ["a"] * 300 + ["b"] * 300, rng.uniform(size=600) < 0.5)  # unlabelled predictions
    c.update("seg", ["a"] * 150 + ["b"] * 50, np.r_[np.ones(150, bool), np.zeros(50, bool)],
             np.r_[np.arange(150) % 2 == 0, np.arange(50) % 2 == 0])  # b has 50 labelled: not judged
    g = gaps(c, min_group_size=100)["seg"]
    assert g["groups"]["a"]["tpr"] == 1.0 and g["groups"]["a"]["fpr"] == 1.0
    assert g["groups"]["b"]["tpr"] is None and g["groups"]["b"]["fpr"] is None
    assert g["equalized_odds_difference"] is None and sorted(g["groups"]) == ["a", "b"]


def independent_gaps(values, pred, label, min_group_size):
    vals = np.array([v if v is not None else "" for v in values], dtype=object)
    pos, tprs, fprs = [], [], []
    for group in sorted({v for v in values if v is not None}):
        m = vals == group
        if m.sum() < min_group_size:
            continue
        pos.append(pred[m].mean())
        if label[m].any():
            tprs.append(pred[m & label].mean())
        if (~label[m]).any():
            fprs.append(pred[m & ~label].mean())
    spread = [max(r) - min(r) for r in (tprs, fprs) if len(r) >= 2]
    return (max(pos) - min(pos) if len(pos) >= 2 else None), (max(spread) if spread else None)


@given(rows, st.integers(0, 60))
@settings(max_examples=200, deadline=None)
def test_parity_and_equalized_odds_equal_an_independent_numpy_recomputation(data, min_group_size):
    values, pred, label = columns(data)
    g = gaps(GroupCounts().update("seg", values, pred, label), min_group_size=min_group_size).get("seg")
    dp, eo = independent_gaps(values, pred, label, min_group_size)
    if g is None:
        assert all(v is None for v in values)
        return
    assert g["demographic_parity_difference"] == pytest.approx(dp)
    assert g["equalized_odds_difference"] == pytest.approx(eo)


@given(rows, st.data())
@settings(max_examples=200, deadline=None)
def test_merging_two_halves_equals_the_whole(data, draw):
    cut = draw.draw(st.integers(0, len(data)))
    values, pred, label = columns(data)
    whole = GroupCounts().update("seg", values, pred, label).update("other", values, pred)
    a = GroupCounts().update("seg", values[:cut], pred[:cut], label[:cut]).update("other", values[:cut], pred[:cut])
    b = GroupCounts().update("seg", values[cut:], pred[cut:], label[cut:]).update("other", values[cut:], pred[cut:])
    assert a + b == whole
    a += b
    assert a == whole and gaps(a, 10) == gaps(whole, 10)


def test_to_dict_from_dict_round_trips_through_json():
    rng = np.random.default_rng(0)
    values = rng.choice(["x", "y", "z"], 500).tolist()
    c = GroupCounts().update("seg", values, rng.uniform(size=500) < 0.3, rng.uniform(size=500) < 0.5)
    back = GroupCounts.from_dict(json.loads(json.dumps(c.to_dict())))
    assert back == c and back.table("seg") == c.table("seg") and back != GroupCounts()


def test_counts_per_group_are_the_confusion_counts():
    c = GroupCounts().update("g", ["x", "x", "x", "x", None], np.array([1, 1, 0, 0, 1], bool),
                             np.array([1, 0, 1, 0, 1], bool))
    assert c.table("g") == {"x": {"n": 4, "pred_pos": 2, "labelled": 4, "label_pos": 2, "tp": 1, "fp": 1}}


def test_values_beyond_max_groups_are_counted_under_other():
    c = GroupCounts(max_groups=2).update("g", ["a", "b", "c", "d", "a"], np.ones(5, bool))
    c.update("g", ["e", "b"], np.ones(2, bool))
    assert c.table("g") == {v: {"n": n, "pred_pos": n, "labelled": 0, "label_pos": 0, "tp": 0, "fp": 0}
                            for v, n in (("a", 2), ("b", 2), (OTHER, 3))}


def test_update_rejects_mismatched_lengths_naming_the_field():
    with pytest.raises(ValueError, match="pred_pos has 2 rows, values 3"):
        GroupCounts().update("g", ["a", "b", "c"], np.ones(2, bool))


# --- canary: tests --------------------------------------------------------------------------

@given(st.integers(1, 5_000), st.integers(1, 5_000), st.floats(0, 1), st.floats(0, 1))
@settings(max_examples=300, deadline=None)
def test_z_test_equals_an_independent_computation_and_uncorrected_chi_squared(n1, n2, f1, f2):
    x1, x2 = round(f1 * n1), round(f2 * n2)
    z, p = two_proportion_z(x1, n1, x2, n2)
    pooled = (x1 + x2) / (n1 + n2)
    if pooled in (0.0, 1.0):
        assert (z, p) == (0.0, 1.0)
        return
    ref_z = (x1 / n1 - x2 / n2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    assert z == pytest.approx(ref_z, abs=1e-9)
    assert p == pytest.approx(0.5 * math.erfc(ref_z / math.sqrt(2)), abs=1e-12)
    chi2, p_chi2, _, _ = stats.chi2_contingency([[x1, n1 - x1], [x2, n2 - x2]], correction=False)
    assert z * z == pytest.approx(chi2, rel=1e-7, abs=1e-9)
    if z > 0:
        assert p == pytest.approx(p_chi2 / 2, rel=1e-6, abs=1e-12)
    elif z < 0:
        assert p == pytest.approx(1 - p_chi2 / 2, rel=1e-6, abs=1e-12)


def test_z_test_is_neutral_without_calls_or_without_variation():
    assert two_proportion_z(0, 0, 3, 10) == (0.0, 1.0)
    assert two_proportion_z(0, 10, 0, 20) == (0.0, 1.0)
    assert two_proportion_z(10, 10, 20, 20) == (0.0, 1.0)
    with pytest.raises(ValueError, match="x1=11 of n=10"):
        two_proportion_z(11, 10, 0, 10)


def independent_mann_whitney(a, b):
    n1, n2 = len(a), len(b)
    ranks = stats.rankdata(np.r_[a, b])
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2
    _, ties = np.unique(np.r_[a, b], return_counts=True)
    n = n1 + n2
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - (ties ** 3 - ties).sum() / (n * (n - 1))))
    return u, float(stats.norm.sf((u - n1 * n2 / 2 - 0.5) / sigma))


@pytest.mark.parametrize("shift, rounding", [(0.0, 3), (0.3, 3), (-0.2, 0), (1.0, 1)])
def test_mann_whitney_equals_scipy_and_a_rank_recomputation(shift, rounding):
    rng = np.random.default_rng(7)
    a = np.round(rng.lognormal(np.log(100) + shift, 0.5, 800), rounding)  # rounding 0: many ties
    b = np.round(rng.lognormal(np.log(100), 0.5, 1200), rounding)
    u, p = mann_whitney(a, b)
    ref = stats.mannwhitneyu(a, b, alternative="greater")  # "auto" is asymptotic at these sizes
    assert (u, p) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-9)
    assert (u, p) == pytest.approx(independent_mann_whitney(a, b), rel=1e-9)


def test_mann_whitney_with_fewer_than_two_values_is_nan_with_p_one():
    u, p = mann_whitney(np.array([1.0, np.nan]), np.arange(10.0))
    assert math.isnan(u) and p == 1.0


# --- canary: decisions ----------------------------------------------------------------------

def variants(primary_errors, canary_errors, n=5_000, canary_latency_factor=1.0, seed=0):
    rng = np.random.default_rng(seed)
    vc = VariantCounts()
    for variant, errs, factor in (("primary", primary_errors, 1.0),
                                  ("canary", canary_errors, canary_latency_factor)):
        keys = hash_ids([f"{variant}-{j}" for j in range(n)])
        err = rng.permutation(np.arange(n) < errs)
        vc.update(variant, keys, err, rng.lognormal(np.log(80), 0.3, n) * factor)
    return vc


def test_canary_2_points_above_primary_with_5000_calls_rolls_back():
    r = compare_canary(variants(primary_errors=100, canary_errors=200))  # 2 % against 4 %
    assert r["decision"] == "rollback"
    assert r["metrics"]["error_rate_difference"] == pytest.approx(0.02)
    assert r["metrics"]["p_value"] < 1e-6


def test_significantly_higher_error_rate_within_the_margin_proceeds():
    r = compare_canary(variants(primary_errors=100, canary_errors=200), margin=0.03)
    assert r["metrics"]["p_value"] < 1e-6 and r["decision"] == "proceed"


def test_canary_equal_to_primary_proceeds():
    r = compare_canary(variants(primary_errors=100, canary_errors=100))
    assert r["decision"] == "proceed"
    assert r["metrics"]["z"] == 0.0 and r["metrics"]["latency_p_value"] > 0.05
    assert r["metrics"]["canary_latency_p50_ms"] == pytest.approx(80, rel=0.05)


def test_canary_above_the_margin_without_significance_is_monitored_closely():
    r = compare_canary(variants(primary_errors=1, canary_errors=2, n=100))  # 1 % against 2 %
    assert r["metrics"]["p_value"] > 0.05 and r["decision"] == "monitor_closely"


def test_significantly_slower_canary_is_monitored_closely():
    r = compare_canary(variants(primary_errors=50, canary_errors=50, canary_latency_factor=1.2))
    assert r["metrics"]["latency_p_value"] < 0.05 and r["decision"] == "monitor_closely"
    assert r["metrics"]["canary_latency_p50_ms"] > r["metrics"]["primary_latency_p50_ms"]


def test_faster_canary_proceeds():
    r = compare_canary(variants(primary_errors=50, canary_errors=50, canary_latency_factor=0.8))
    assert r["decision"] == "proceed" and r["metrics"]["latency_p_value"] > 0.95


def test_canary_stochastically_larger_but_with_a_lower_median_latency_proceeds():
    n = 2_000  # within the latency sample, so the test sees every value
    rng = np.random.default_rng(4)
    vc = VariantCounts()
    vc.update("primary", hash_ids([f"p{i}" for i in range(n)]), np.zeros(n, bool), rng.uniform(0, 100, n))
    canary = np.where(np.arange(n) < 0.55 * n, 45.0, 100.0)  # median 45 < 50, yet P(canary > primary) ~ 0.7
    vc.update("canary", hash_ids([f"c{i}" for i in range(n)]), np.zeros(n, bool), canary)
    r = compare_canary(vc)
    assert r["metrics"]["latency_p_value"] < 0.05
    assert r["metrics"]["canary_latency_p50_ms"] < r["metrics"]["primary_latency_p50_ms"]
    assert r["decision"] == "proceed"


def test_canary_with_fewer_than_min_calls_is_not_compared():
    assert compare_canary(variants(0, 0, n=99)) is None
    assert compare_canary(variants(0, 0, n=99), min_calls=50) is not None


def test_latency_sample_holds_k_measured_latencies_and_the_median_matches():
    keys = hash_ids([f"e{i}" for i in range(10_000)])
    lat = np.where(np.arange(10_000) % 2 == 0, np.nan, np.arange(10_000.0))
    vc = VariantCounts().update("canary", keys, np.zeros(10_000, bool), lat)
    assert vc.n["canary"] == 10_000 and len(vc.latency["canary"]) == 2_000
    assert not np.isnan(vc.latency["canary"].values).any()
    assert np.median(vc.latency["canary"].values) == pytest.approx(5_000, rel=0.1)


def test_unknown_variant_is_rejected_listing_the_choices():
    with pytest.raises(ValueError, match=r"variant='blue'.*\['primary', 'canary', 'shadow'\]"):
        VariantCounts().update("blue", np.zeros(1, np.uint64), np.zeros(1, bool), np.ones(1))


# --- shadow ---------------------------------------------------------------------------------

def test_shadow_agreement_on_a_hand_made_case():
    req = hash_ids(["r1", "r2", "r3", "r4", "r5"])
    vc = VariantCounts()
    vc.update("primary", req[:4], np.zeros(4, bool), np.ones(4), req[:4], np.array([0.0, 1.0, 2.0, 1.0]))
    vc.update("shadow", req[1:], np.zeros(4, bool), np.ones(4), req[1:], np.array([1.0, 2.0, 0.0, 1.0]))
    assert shadow_agreement(vc) == {"pairs": 3, "agreement": 2 / 3, "disagreement": 1 / 3}  # r2, r3 agree; r4 not


def test_numeric_agreement_is_relative_to_the_larger_value():
    req = hash_ids(["a", "b", "c", "d", "e"])
    p, s = np.array([1000.0, 1000.0, 0.0, -5.0, 1e-9]), np.array([1010.05, 1011.0, 0.0, -5.04, 2e-9])
    vc = VariantCounts().update("primary", req, np.zeros(5, bool), np.ones(5), req, p)
    vc.update("shadow", req, np.zeros(5, bool), np.ones(5), req, s)
    r = shadow_agreement(vc, numeric=True, tolerance=0.01)
    assert r["pairs"] == 5 and r["agreement"] == pytest.approx(3 / 5)  # a, c, d agree; b, e do not


def test_shadow_agreement_is_none_without_pairs_and_skips_missing_request_ids():
    req = np.array([0, 7, 9], dtype=np.uint64)
    vc = VariantCounts().update("primary", req, np.zeros(3, bool), np.ones(3), req, np.array([1.0, 1.0, np.nan]))
    vc.update("shadow", req, np.zeros(3, bool), np.ones(3), req, np.ones(3))
    assert vc.predictions["primary"].keys.tolist() == [7]
    assert shadow_agreement(vc) == {"pairs": 1, "agreement": 1.0, "disagreement": 0.0}
    assert shadow_agreement(VariantCounts()) is None


def test_coordinated_sampling_keeps_the_pairs():
    n = 20_000
    req = hash_ids([f"req-{i}" for i in range(n)])
    primary = np.arange(n) % 3 * 1.0
    shadow = np.where(np.arange(n) % 10 == 0, primary + 1, primary)  # disagrees on 10 % of requests
    rng = np.random.default_rng(3)
    vc = VariantCounts()
    for variant, pred in (("primary", primary), ("shadow", shadow)):
        order = rng.permutation(n)  # each side sees the requests in its own order, in batches
        for part in np.array_split(order, 7):
            keys = hash_ids([f"{variant}-{i}" for i in part])
            vc.update(variant, keys, np.zeros(len(part), bool), np.ones(len(part)), req[part], pred[part])
    r = shadow_agreement(vc)
    assert r["pairs"] >= 4_900  # independent samples of 5,000 of 20,000 would share about 1,250
    assert r["disagreement"] == pytest.approx(0.1, abs=0.02)


# --- state ----------------------------------------------------------------------------------

def random_variant_batches(rng, m):
    out = []
    for variant in ("primary", "canary", "shadow", "primary"):
        ids = [f"{variant}-{rng.integers(1 << 62)}" for _ in range(m)]
        lat = rng.lognormal(4, 0.5, m)
        lat[rng.uniform(size=m) < 0.1] = np.nan
        req = hash_ids([f"r{i}" for i in rng.integers(0, 3 * m, m)])
        req[rng.uniform(size=m) < 0.05] = 0
        pred = (req % np.uint64(3 if variant == "shadow" else 4)).astype(float)  # a request's prediction is fixed
        out.append((variant, hash_ids(ids), rng.uniform(size=m) < 0.05, lat, req, pred))
    return out


def test_merging_variant_counts_of_two_halves_equals_the_whole():
    rng = np.random.default_rng(11)
    batches = random_variant_batches(rng, 3_000)
    whole, a, b = VariantCounts(), VariantCounts(), VariantCounts()
    for variant, *cols in batches:
        whole.update(variant, *cols)
        a.update(variant, *(c[:1_200] for c in cols))
        b.update(variant, *(c[1_200:] for c in cols))
    assert a + b == whole and b + a == whole and a != whole
    assert compare_canary(a + b) == compare_canary(whole)
    assert shadow_agreement(a + b) == shadow_agreement(whole)


def test_variant_counts_round_trip_through_json_with_exact_uint64_keys():
    rng = np.random.default_rng(12)
    vc = VariantCounts()
    for variant, *cols in random_variant_batches(rng, 500):
        vc.update(variant, *cols)
    big = np.array([2**64 - 1, 2**63 + 1], dtype=np.uint64)
    vc.update("shadow", big, np.zeros(2, bool), np.array([1.5, 2.5]), big, np.array([7.0, 8.0]))
    back = VariantCounts.from_dict(json.loads(json.dumps(vc.to_dict())))
    assert back == vc
    assert set(big.tolist()) <= set(back.predictions["shadow"].keys.tolist())
    assert back.n == vc.n and back.errors == vc.errors
