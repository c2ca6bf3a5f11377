"""Event-time windows: epoch-aligned, closed by the watermark, late events counted, split-free, checkpointable."""

from __future__ import annotations

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.events import FeatureSpec
from shared.stats.baseline import Baseline
from shared.stats.reference import profile
from shared.stats.window import WindowLayout
from services.drift.quality import QualityLayout
from services.drift.windows import Windows, WindowConfig, columnar

REF = Baseline.from_profile(profile({"x": np.random.default_rng(0).normal(size=500).tolist(),
                                     "c": ["a", "b"] * 250, "prediction": [0, 1] * 250}), task="binary_classification")
CFG = WindowConfig(60, 30, WindowLayout.of(REF, 200),
                   QualityLayout.of({"x": FeatureSpec(min=-3, max=3), "c": FeatureSpec(type="categorical", categories=["a", "b"])}))


def events(ts, start=0):
    return [{"event_id": f"e{start + i}", "timestamp": float(t), "features": {"x": (i % 13) / 3 - 2, "c": "abz"[i % 3]},
             "prediction": i % 2} for i, t in enumerate(ts)]


def run(batches):
    w, closed, late = Windows(), [], 0
    for b in batches:
        added = w.add("m", CFG, columnar(b, CFG)[0])
        closed += added.closed
        late += added.late
    return closed, late, w


def summary(closed):
    return [(c.start, c.end, c.state, c.quality) for c in closed]


def test_windows_are_aligned_to_the_epoch_and_close_at_end_plus_lateness():
    closed, late, w = run([events([61, 100, 119.9]), events([149.9], 10)])
    assert closed == [] and sorted(w.models["m"].open) == [60, 120]
    closed, _, _ = run([events([61, 100, 119.9]), events([150], 10)])
    assert [(c.start, c.end, c.state.n) for c in closed] == [(60, 120, 3)]


def test_an_event_behind_a_closed_window_is_counted_late_and_not_added():
    closed, late, w = run([events([10, 20, 95]), events([5, 130], 10)])  # 95 closed [0, 60) (lateness 30)
    assert late == 1 and [(c.start, c.state.n) for c in closed] == [(0, 2)]
    assert w.models["m"].open[60].state.n == 1


def test_an_event_delivered_twice_is_counted_once():
    batch = events([1, 2, 3])
    closed, _, _ = run([batch, batch[1:], events([200], 50)])
    assert closed[0].state.n == 3 and closed[0].quality.n == 3


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_the_batch_split_does_not_change_the_closed_windows(cuts, rnd):
    rng = np.random.default_rng(rnd.randint(0, 1000))
    ts = np.cumsum(rng.uniform(0, 9, size=120)) - rng.uniform(0, 40, size=120).clip(0)  # some out of order
    evs = events(ts)
    whole, late_whole, _ = run([evs])
    bounds = sorted({min(c * 3, len(evs)) for c in cuts} | {0, len(evs)})
    split, late_split, _ = run([evs[a:b] for a, b in zip(bounds, bounds[1:]) if b > a])
    assert summary(split) == summary(whole) and late_split == late_whole


def test_a_restored_checkpoint_continues_exactly_like_an_uninterrupted_run():
    evs = events(np.arange(0, 400, 0.5))
    whole, _, _ = run([evs[:300], evs[300:]])
    w = Windows()
    first = w.add("m", CFG, columnar(evs[:300], CFG)[0]).closed
    restored = Windows.from_dict(orjson.loads(orjson.dumps(w.to_dict())))
    rest = restored.add("m", CFG, columnar(evs[300:], CFG)[0]).closed
    assert summary(first + rest) == summary(whole)


def test_invalid_events_are_reported_with_their_index_and_the_rest_counted():
    bad = [*events([1]), {"event_id": "", "timestamp": 1, "features": {}, "prediction": 0},
           {"event_id": "z", "timestamp": "2026-01-01T00:00:00", "features": {}, "prediction": 0}, 7]
    batch, errors = columnar(bad, CFG)
    assert len(batch) == 1 and [i for i, _ in errors] == [1, 2, 3]
    assert "event_id" in errors[0][1] and "offset" in errors[1][1]


def test_the_drift_modules_doctests_pass():
    import doctest

    from services.drift import evaluate, quality, windows
    for module in (windows, quality, evaluate):
        assert doctest.testmod(module).failed == 0, module.__name__


def test_a_larger_size_applies_from_the_end_of_the_open_window():
    w = Windows()
    cfg60, cfg120 = (WindowConfig(z, 0, CFG.layout, CFG.quality) for z in (60, 120))
    closed = w.add("m", cfg60, columnar(events([10, 70]), cfg60)[0]).closed  # 70 closes [0, 60)
    closed += w.add("m", cfg120, columnar(events([100, 130, 250], 2), cfg120)[0]).closed
    # [60, 120) keeps its size (it held 70 and now 100); windows of 120 s start at 120
    assert [(c.start, c.end, c.state.n) for c in closed] == [(0, 60, 1), (60, 120, 2), (120, 240, 1)]
    assert sorted((s, o.end) for s, o in w.models["m"].open.items()) == [(240, 360)]


@settings(max_examples=60, deadline=None)
@given(ts=st.lists(st.floats(0, 2_000, allow_nan=False), min_size=2, max_size=150),
       sizes=st.lists(st.sampled_from([30, 45, 60, 90, 120, 300]), min_size=1, max_size=3),
       cuts=st.lists(st.integers(1, 149), min_size=1, max_size=3), lateness=st.sampled_from([0, 30]))
def test_a_changed_window_size_never_makes_windows_overlap_or_lose_an_event(ts, sizes, cuts, lateness):
    """The spec's size changes between batches: windows stay disjoint, each on-time event is
    counted once in the window holding it, and windows of a size are aligned to that size."""
    w, closed, late = Windows(), [], 0
    bounds = sorted({0, len(ts), *[c for c in cuts if c < len(ts)]})
    chunks = [events(ts[a:b], a) for a, b in zip(bounds, bounds[1:])]
    seen_sizes = {60}
    for k, chunk in enumerate(chunks):
        size = 60 if k == 0 else sizes[(k - 1) % len(sizes)]
        seen_sizes.add(size)
        cfg = WindowConfig(size, lateness, CFG.layout, CFG.quality)
        added = w.add("m", cfg, columnar(chunk, cfg)[0])
        closed += added.closed
        late += added.late
    mw = w.models["m"]
    opened = [(s, ow.end, ow.state) for s, ow in mw.open.items()]
    every = sorted([(c.start, c.end, c.state) for c in closed] + opened, key=lambda x: x[0])
    for (s1, e1, _), (s2, _, _) in zip(every, every[1:]):
        assert e1 <= s2, f"[{s1}, {e1}) overlaps the window starting {s2}"
    assert sum(x[2].n for x in every) + late == len(ts)
    for s, e, _ in every:  # a window of one of the sizes, aligned to it, or a bridge ending on a multiple of one
        assert (e - s in seen_sizes and s % (e - s) == 0) or any(e % z == 0 and 0 < e - s < z for z in seen_sizes), (s, e)
    # round trip through a checkpoint keeps the epochs and ends
    again = Windows.from_dict(orjson.loads(orjson.dumps(w.to_dict()))).models["m"]
    assert again.epochs == mw.epochs and {s: o.end for s, o in again.open.items()} == {s: o.end for s, o in mw.open.items()}
