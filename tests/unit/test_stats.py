"""Drift statistics against SciPy and an independent NumPy computation; bins, hashing, BottomK."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import jensenshannon

from shared.policy import PSI_EPS
from shared.stats.bins import BinCounts, CategoryCounts
from shared.stats.drift import (KS_EXACT_MIN_P, benjamini_hochberg, chi2_two_sample, js_distance, js_divergence,
                                ks_p_value, ks_statistic, ks_two_sample, psi)
from shared.stats.sample import BottomK, hash_ids

SETTINGS = settings(max_examples=60, deadline=None)


# --- independent reference implementations (plain loops, no shared code) ---------------------

def psi_by_hand(expected, actual, eps=PSI_EPS):
    total = 0.0
    for e, a in zip(expected, actual):
        e, a = max(e, eps), max(a, eps)
        total += (a - e) * math.log(a / e)
    return total


def js_by_hand(p, q):
    p = [x / sum(p) for x in p]
    q = [x / sum(q) for x in q]
    out = 0.0
    for a, b in zip(p, q):
        m = (a + b) / 2
        out += 0.5 * (a * math.log(a / m) if a else 0.0) + 0.5 * (b * math.log(b / m) if b else 0.0)
    return out


count_pairs = st.integers(2, 12).flatmap(lambda k: st.tuples(
    *[st.lists(st.integers(0, 50), min_size=k, max_size=k).filter(lambda c: sum(c) > 0)] * 2))


# --- PSI ----------------------------------------------------------------------------------

def test_psi_matches_independent_computation():
    rng = np.random.default_rng(1)
    for _ in range(50):
        e, a = rng.dirichlet(np.ones(10)), rng.dirichlet(np.ones(10))
        a[rng.integers(10)] = 0.0
        assert psi(e, a) == pytest.approx(psi_by_hand(e, a), rel=1e-12)


def test_psi_floors_proportions_at_eps_without_renormalising():
    # an empty bin and a bin of 1 in 100,000 both count as 1e-4
    assert psi([0.5, 0.5, 0.0], [0.5, 0.49999, 0.00001]) == pytest.approx(psi([0.5, 0.5, 0.0], [0.5, 0.49999, 0.0]))
    assert psi([0.5, 0.5, 0.0], [0.5, 0.4, 0.1]) == pytest.approx(
        (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.1 - 1e-4) * math.log(0.1 / 1e-4))


def test_psi_is_vectorised_over_features():
    rng = np.random.default_rng(2)
    e, a = rng.dirichlet(np.ones(10), size=5), rng.dirichlet(np.ones(10), size=5)
    assert np.allclose(psi(e, a), [psi(x, y) for x, y in zip(e, a)])


@SETTINGS
@given(count_pairs)
def test_psi_is_non_negative_and_zero_for_identical(pair):
    e, a = (np.array(c) / sum(c) for c in pair)
    assert psi(e, a) >= 0
    assert psi(e, e) == 0.0


# --- Jensen-Shannon ---------------------------------------------------------------------

def test_js_distance_matches_scipy_and_divergence_matches_by_hand():
    rng = np.random.default_rng(3)
    for _ in range(50):
        p, q = rng.dirichlet(np.ones(6)), rng.dirichlet(np.ones(6))
        p[0] = 0.0
        assert js_distance(p, q) == pytest.approx(jensenshannon(p, q), rel=1e-9)
        assert js_divergence(p, q) == pytest.approx(js_by_hand(p, q), rel=1e-9)


def test_js_normalises_counts():
    assert js_divergence([10, 30], [1, 1]) == pytest.approx(js_divergence([0.25, 0.75], [0.5, 0.5]))


@SETTINGS
@given(count_pairs)
def test_js_is_symmetric_bounded_by_ln2_and_zero_for_identical(pair):
    p, q = pair
    assert js_divergence(p, q) == pytest.approx(js_divergence(q, p), abs=1e-15)
    assert 0.0 <= js_divergence(p, q) <= math.log(2) + 1e-12
    assert js_divergence(p, p) == pytest.approx(0.0, abs=1e-15)
    assert js_distance(p, q) == pytest.approx(math.sqrt(js_divergence(p, q)))


def test_js_of_disjoint_distributions_is_ln2():
    assert js_divergence([1, 0], [0, 1]) == pytest.approx(math.log(2))


# --- chi-squared ------------------------------------------------------------------------

@SETTINGS
@given(count_pairs)
def test_chi2_matches_scipy_contingency_without_correction(pair):
    ref, win = np.array(pair[0]), np.array(pair[1])
    keep = (ref + win) > 0
    stat, p, dof = chi2_two_sample(ref, win)
    if keep.sum() < 2:
        assert (stat, p, dof) == (0.0, 1.0, 0)
        return
    expected = stats.chi2_contingency(np.array([ref[keep], win[keep]]), correction=False)
    assert stat == pytest.approx(expected.statistic, rel=1e-9, abs=1e-12)
    assert p == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    assert dof == expected.dof


def test_chi2_drops_columns_empty_in_both():
    assert chi2_two_sample([10, 0, 20], [20, 0, 10]) == chi2_two_sample([10, 20], [20, 10])


def test_chi2_rejects_an_empty_side():
    with pytest.raises(ValueError, match="positive count"):
        chi2_two_sample([0, 0], [1, 2])


# --- Kolmogorov-Smirnov ------------------------------------------------------------------

@pytest.mark.parametrize("n1,n2", [(10_000, 12_000), (10_000, 500), (3_000, 2_999), (10_000, 10_000), (50, 20_000)])
@pytest.mark.parametrize("shift", [0.0, 0.03, 0.5])
def test_ks_matches_scipy_ks_2samp(n1, n2, shift):
    rng = np.random.default_rng(n1 + n2)
    ref, win = np.sort(rng.normal(size=n1)), rng.normal(shift, 1, size=n2)
    d, p = ks_two_sample(ref, win)
    expected = stats.ks_2samp(ref, win)
    assert d == pytest.approx(expected.statistic, abs=1e-12)
    if expected.pvalue >= KS_EXACT_MIN_P:
        assert p == pytest.approx(expected.pvalue, rel=1e-9)
    else:  # the documented shortcut: both far below any alpha
        assert p < 10 * KS_EXACT_MIN_P


@pytest.mark.filterwarnings("ignore:ks_2samp. Exact calculation unsuccessful:RuntimeWarning")  # scipy falls back; so do we
@SETTINGS
@given(st.lists(st.integers(0, 6), min_size=1, max_size=40), st.lists(st.integers(0, 6), min_size=1, max_size=40))
def test_ks_with_ties_matches_scipy(a, b):
    ref, win = np.sort(np.array(a, dtype=float)), np.array(b, dtype=float)
    d, p = ks_two_sample(ref, win)
    expected = stats.ks_2samp(ref, win)
    assert d == pytest.approx(expected.statistic, abs=1e-12)
    assert p == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-12)


def test_ks_statistic_sees_values_outside_the_reference_range():
    assert ks_statistic(np.array([1.0, 2.0]), np.array([5.0, 6.0])) == 1.0


def test_ks_drops_nan_from_the_window():
    assert ks_two_sample([1.0, 2.0, 3.0], [2.0, np.nan, 3.0]) == ks_two_sample([1.0, 2.0, 3.0], [2.0, 3.0])


def test_ks_p_value_of_zero_statistic_is_one():
    assert ks_p_value(0.0, 100, 200) == 1.0


# --- Benjamini-Hochberg -----------------------------------------------------------------

@SETTINGS
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=60))
def test_benjamini_hochberg_matches_scipy(ps):
    assert np.allclose(benjamini_hochberg(ps), stats.false_discovery_control(ps, method="bh"), rtol=1e-12, atol=0)


def test_benjamini_hochberg_leaves_missing_p_values_out():
    assert np.allclose(benjamini_hochberg([0.01, np.nan, 0.04])[[0, 2]], stats.false_discovery_control([0.01, 0.04]))
    assert np.isnan(benjamini_hochberg([np.nan])).all()


# --- bins --------------------------------------------------------------------------------

EDGES = np.array([-1.0, -0.5, 0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0])


def by_searchsorted(edges, x):
    x = np.asarray(x, dtype=float)
    x = x[~np.isnan(x)]
    return np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(edges) + 1)


def test_bin_counts_match_searchsorted_right_with_edges_and_outliers():
    x = np.concatenate([EDGES, [-100.0, 100.0, np.nan, 0.1, -1.0000001]])
    b = BinCounts(EDGES).update(x)
    assert b.counts.tolist() == by_searchsorted(EDGES, x).tolist()
    assert b.nulls == 1
    assert b.counts[0] == 2 and b.counts[-1] == 2  # open outer bins; 3.0 is an edge: upper bin


def test_a_value_equal_to_an_edge_falls_in_the_upper_bin():
    assert BinCounts([1.0, 2.0]).update([1.0]).counts.tolist() == [0, 1, 0]


def test_stacked_bin_counts_equal_one_per_feature():
    rng = np.random.default_rng(4)
    edges = np.sort(rng.normal(size=(5, 9)), axis=1)
    x = rng.normal(size=(5, 1000))
    x[rng.random(x.shape) < 0.1] = np.nan
    stacked = BinCounts(edges).update(x)
    for j in range(5):
        one = BinCounts(edges[j]).update(x[j])
        assert stacked.counts[j].tolist() == one.counts.tolist() == by_searchsorted(edges[j], x[j]).tolist()
        assert stacked.nulls[j] == one.nulls


def test_many_edges_take_the_searchsorted_path_with_the_same_result():
    edges = np.arange(100.0)
    x = np.concatenate([np.arange(-1.0, 101.0, 0.5), [np.nan]])
    b = BinCounts(edges).update(x)
    assert b.counts.tolist() == by_searchsorted(edges, x).tolist() and b.nulls == 1


@SETTINGS
@given(st.lists(st.floats(-5, 5) | st.just(float("nan")), max_size=50), st.integers(0, 50))
def test_merging_bin_counts_equals_counting_the_whole(values, cut):
    whole = BinCounts(EDGES).update(values)
    merged = BinCounts(EDGES).update(values[:cut]) + BinCounts(EDGES).update(values[cut:])
    assert merged == whole


def test_bin_counts_reject_merging_other_edges():
    with pytest.raises(ValueError, match="edges differ"):
        BinCounts([1.0]).merge(BinCounts([2.0]))


def test_proportions_are_zero_while_empty():
    assert BinCounts([1.0]).proportions().tolist() == [0.0, 0.0]


def test_category_counts_map_values_like_the_reference_profile():
    c = CategoryCounts(["true", "3", "a"]).update([True, 3, "a", "b", None, float("nan"), False])
    assert dict(zip(c.labels, c.counts.tolist())) == {"true": 1, "3": 1, "a": 1, "other": 2}
    assert c.nulls == 2


def test_category_counts_of_a_string_array_equal_those_of_a_list():
    values = ["a", "b", "zz", "a"] * 10
    assert CategoryCounts(["a", "b"]).update(np.array(values)) == CategoryCounts(["a", "b"]).update(values)


# --- hashing and BottomK ----------------------------------------------------------------

def test_hash_ids_is_pinned_across_versions_and_platforms():
    # a change here changes every sample: it must be deliberate
    assert hash_ids(["e1", "a-much-longer-event-id-0001"]).tolist() == [1379641068083775980, 8366905205130715053]


def test_hash_ids_from_first_principles():
    def mix(h):
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) % 2**64
        return h ^ (h >> 31)

    def one(s):
        raw = s.encode()
        raw += b"\0" * (-len(raw) % 8)
        words = [int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), 8)]
        h = mix(words[0] ^ 0x9E3779B97F4A7C15)
        for w in words[1:]:
            h = mix(h ^ w) if w else h
        return h

    ids = ["e1", "a-much-longer-event-id-0001", "é", "x" * 200, "🙂-id"]
    assert hash_ids(ids).tolist() == [one(s) for s in ids]


def test_hash_of_an_id_does_not_depend_on_its_batch():
    assert hash_ids(["a"])[0] == hash_ids(["a", "b" * 100])[0] == hash_ids(["é", "a"])[1]


def test_hash_ids_are_distinct_for_many_ids():
    ids = [f"evt-{i}" for i in range(200_000)]
    assert np.unique(hash_ids(ids)).size == len(ids)
    assert hash_ids([]).size == 0


def bottom_k_by_hand(keys, values, k):
    firsts = {}
    for key, v in zip(keys.tolist(), values.tolist()):
        firsts.setdefault(key, v)
    kept = sorted(firsts)[:k]
    return kept, [firsts[key] for key in kept]


@SETTINGS
@given(st.lists(st.integers(0, 300), max_size=200), st.integers(1, 60), st.randoms(use_true_random=False))
def test_bottom_k_keeps_the_k_smallest_keys_once_in_any_order_and_split(event_numbers, k, random):
    keys = hash_ids([f"e{i}" for i in event_numbers])  # repeated numbers are redeliveries
    values = np.array(event_numbers, dtype=float)
    expected_keys, expected_values = bottom_k_by_hand(keys, values, k)
    order = list(range(len(keys)))
    random.shuffle(order)
    cut = random.randint(0, len(order))
    a = BottomK(k).update(keys[order[:cut]], values[order[:cut]])
    b = BottomK(k)
    for i in order[cut:]:
        b.update(keys[[i]], values[[i]])
    merged = a + b
    assert merged.keys.tolist() == expected_keys
    assert merged.values[:, 0].tolist() == expected_values
    assert merged == BottomK(k).update(keys, values)


def test_bottom_k_is_exact_while_at_most_k_events():
    keys = hash_ids([f"e{i}" for i in range(100)])
    s = BottomK(100, width=2).update(keys, np.arange(200.0).reshape(100, 2))
    assert sorted(s.values[:, 0].tolist()) == list(range(0, 200, 2))


def test_bottom_k_ignores_a_redelivered_event():
    keys = hash_ids(["a", "b"])
    s = BottomK(5).update(keys, [1.0, 2.0]).update(keys[:1], [1.0])
    assert len(s) == 2


def test_bottom_k_is_a_uniform_sample():
    keys = hash_ids([f"evt-{i}" for i in range(100_000)])
    s = BottomK(5_000).update(keys, np.arange(100_000.0))
    assert stats.ks_2samp(s.values[:, 0], np.arange(100_000.0)).pvalue > 0.001


def test_bottom_k_rejects_merging_another_shape():
    with pytest.raises(ValueError, match="differ"):
        BottomK(5, 1).merge(BottomK(5, 2))
