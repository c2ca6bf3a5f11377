"""LatencySketch: relative error within alpha against NumPy's order statistics; merge = union."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from shared.stats.sketch import LatencySketch

values = st.lists(st.floats(min_value=0.0, max_value=1e6, allow_nan=False), min_size=1, max_size=300)


@pytest.mark.parametrize("q", [0.0, 0.5, 0.95, 0.99, 1.0])
def test_quantiles_are_within_one_percent_of_numpys_on_lognormal_latencies(q):
    x = np.random.default_rng(0).lognormal(4, 1, 100_000)
    got = LatencySketch().update(x).quantile(q)
    exact = np.quantile(x, q, method="lower")
    assert abs(got - exact) <= 0.01 * exact


@settings(max_examples=200, deadline=None)
@given(values, st.sampled_from([0.5, 0.9, 0.95, 0.99]))
def test_any_quantile_is_within_alpha_of_the_lower_order_statistic(x, q):
    s = LatencySketch(alpha=0.005).update(x)
    exact = float(np.quantile(np.array(x), q, method="lower"))
    got = s.quantile(q)
    assert abs(got - exact) <= 0.005 * exact + 1e-6


@settings(max_examples=100, deadline=None)
@given(values, values)
def test_merging_two_halves_equals_the_whole_in_any_order(a, b):
    whole = LatencySketch().update(a + b)
    assert LatencySketch().update(a) + LatencySketch().update(b) == whole
    assert LatencySketch().update(b[::-1]).merge(LatencySketch().update(a)) == whole


def test_round_trip_through_a_dict_keeps_the_sketch():
    s = LatencySketch().update([0.0, 1.5, 20.0, 20.1, 5000.0])
    assert LatencySketch.from_dict(s.to_dict()) == s
    assert s.quantile(0.0) == 0.0


def test_empty_sketch_has_no_quantile_and_nan_is_skipped():
    assert LatencySketch().quantile(0.5) is None
    assert LatencySketch().update([float("nan"), 3.0]).n == 1


def test_bad_input_names_the_rule():
    with pytest.raises(ValueError, match="latency values must be finite and >= 0"):
        LatencySketch().update([-1.0])
    with pytest.raises(ValueError, match=r"alpha=2\): must be in \(0, 1\)"):
        LatencySketch(alpha=2)
    with pytest.raises(ValueError, match="quantile q=1.5"):
        LatencySketch().quantile(1.5)
