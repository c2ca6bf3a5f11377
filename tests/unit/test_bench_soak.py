"""bench.soak's verdict on a process's memory over a run."""

from __future__ import annotations

import numpy as np
import pytest

from bench.soak import MIB, verdict


def test_a_flat_process_is_flat_and_a_leaking_one_is_not():
    t = np.arange(0, 600, 5.0)
    rng = np.random.default_rng(0)
    warm = np.minimum(t / 120, 1.0) * 80 + 100  # fills for 2 minutes, then stays
    flat = verdict(t.tolist(), ((warm + rng.normal(0, 1, t.size)) * MIB).tolist())
    assert flat["flat"] and abs(flat["growth_mib"]) < 3 and abs(flat["slope_mib_per_min"]) < 0.5
    leak = verdict(t.tolist(), ((warm + t / 60 * 8) * MIB).tolist())  # +8 MiB a minute
    assert not leak["flat"] and leak["slope_mib_per_min"] == pytest.approx(8.0, rel=0.02)

