"""Vendor SLA statistics and grading, against NumPy recomputations."""

from __future__ import annotations

import numpy as np
import pytest

from shared.stats.vendor import DAY, INSUFFICIENT, NO_SLA, OK, VIOLATION, VendorDay, compare, period, persistent

SLA = {"accuracy": 0.9, "latency_p95_ms": 200.0, "latency_p99_ms": 400.0, "uptime": 0.99, "min_samples": 100,
       "period_days": 7, "tolerance": 0.02}


def days(rng, n_days=7, per_day=500, p95_factor=1.0, acc=0.9, errors=0.001):
    out, lat_all, pred_all, lab_all, err_all = [], [], [], [], []
    for _ in range(n_days):
        lat = rng.lognormal(np.log(100), 0.4, per_day) * p95_factor
        err = rng.uniform(size=per_day) < errors
        lab = rng.integers(0, 2, per_day)
        pred = np.where(rng.uniform(size=per_day) < acc, lab, 1 - lab)
        out.append(VendorDay().add_calls(lat, err).add_labelled(pred.tolist(), lab.tolist(), 1))
        lat_all.append(lat), pred_all.append(pred), lab_all.append(lab), err_all.append(err)
    return out, *(np.concatenate(x) for x in (lat_all, pred_all, lab_all, err_all))


def test_period_metrics_equal_numpys():
    d, lat, pred, lab, err = days(np.random.default_rng(0))
    m = period(d)
    assert m["accuracy"] == pytest.approx((pred == lab).mean())
    assert m["precision"] == pytest.approx(((pred == 1) & (lab == 1)).sum() / (pred == 1).sum())
    assert m["recall"] == pytest.approx(((pred == 1) & (lab == 1)).sum() / (lab == 1).sum())
    assert m["uptime"] == pytest.approx(1 - err.mean())
    for q, key in ((0.95, "latency_p95_ms"), (0.99, "latency_p99_ms")):
        exact = np.quantile(lat, q, method="lower")
        assert abs(m[key] - exact) <= 0.01 * exact


def test_latency_p95_at_1_3_times_the_contract_violates_latency_p95_only():
    rng = np.random.default_rng(1)
    d, lat, *_ = days(rng)
    p95, p99 = np.quantile(lat, [0.95, 0.99])
    sla = {**SLA, "latency_p95_ms": p95 / 1.3, "latency_p99_ms": p99}  # observed p95 = 1.3 x contract
    r = compare(period(d), sla)
    assert r["status"] == VIOLATION and [v["sla"] for v in r["violations"]] == ["latency_p95"]
    v = r["violations"][0]
    assert v["contracted"] == pytest.approx(p95 / 1.3) and v["limit"] == pytest.approx(1.2 * p95 / 1.3)
    assert v["observed"] == pytest.approx(p95, rel=0.01)


def test_accuracy_within_tolerance_is_no_violation_and_below_it_is():
    d, _, pred, lab, _ = days(np.random.default_rng(2), acc=0.9)
    acc = (pred == lab).mean()
    assert compare(period(d), {**SLA, "accuracy": acc + 0.019, "latency_p95_ms": None, "latency_p99_ms": None,
                               "uptime": None})["status"] == OK
    r = compare(period(d), {**SLA, "accuracy": acc + 0.021, "latency_p95_ms": None, "latency_p99_ms": None,
                            "uptime": None})
    assert [v["sla"] for v in r["violations"]] == ["accuracy"]


def test_fewer_labelled_samples_than_min_samples_is_insufficient_data_without_violations():
    d, *_ = days(np.random.default_rng(3), n_days=1, per_day=50, p95_factor=5.0)
    r = compare(period(d), SLA)
    assert r["status"] == INSUFFICIENT and r["violations"] == []
    assert compare(period(d), None)["status"] == NO_SLA


def test_two_consecutive_non_overlapping_bad_periods_are_persistent():
    end = 20 * DAY
    assert persistent({end: VIOLATION, end - 7 * DAY: VIOLATION}, end, 7)
    assert not persistent({end: VIOLATION, end - DAY: VIOLATION}, end, 7)  # overlapping
    assert not persistent({end: VIOLATION, end - 7 * DAY: INSUFFICIENT}, end, 7)


def test_days_merge_and_round_trip():
    d, *_ = days(np.random.default_rng(4), n_days=2)
    total = VendorDay().merge(d[0]).merge(d[1])
    assert VendorDay.from_dict(total.to_dict()) == total
    assert period([total]) == period(d)


def test_the_markdown_report_shows_period_sample_terms_violations_and_trend():
    from services.oversight.report import combine, markdown
    d, lat, *_ = days(np.random.default_rng(5))
    m = period(d)
    graded = compare(m, {**SLA, "latency_p95_ms": m["latency_p95_ms"] / 1.3})
    report = {"vendor": "acme", "model_id": "m", "status": graded["status"], "terms": graded["terms"],
              "violations": graded["violations"], "metrics": m,
              "period": {"start": "2026-01-01T00:00:00+00:00", "end": "2026-01-08T00:00:00+00:00", "days": 7},
              "sample_size": {"calls": int(m["calls"]), "labelled": int(m["labelled"]), "min_samples": 100},
              "trend": [{"end": "2026-01-08T00:00:00+00:00", "status": "violation", "labelled": m["labelled"],
                         "accuracy": m["accuracy"], "latency_p95_ms": m["latency_p95_ms"], "uptime": m["uptime"],
                         "violations": ["latency_p95"]}]}
    md = markdown(combine("acme", {"m": report}))
    assert md.startswith("# Vendor SLA report: acme\n") and "Overall status: **violation**" in md
    assert "- Period: 2026-01-01T00:00:00+00:00 to 2026-01-08T00:00:00+00:00 (7 days)" in md
    assert "3,500 calls, 3,500 labelled (minimum 100)" in md
    rows = [ln for ln in md.splitlines() if ln.startswith("| latency_p95 |")]
    assert len(rows) == 1 and rows[0].endswith("| violation |")
    assert [ln for ln in md.splitlines() if ln.startswith("| accuracy |")][0].endswith("| ok |")
    assert "Violations: latency_p95" in md and "| 2026-01-08T00:00:00+00:00 | violation |" in md
