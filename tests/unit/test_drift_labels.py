"""The drift worker's label join and performance findings, on the pure state (`services.drift.state`):
what the worker does with each batch, without Kafka. The integration tests run the same through
real brokers and kill -9."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from shared.events import ModelSpec
from shared.settings import Settings
from shared.stats.reference import profile
from shared.stats.baseline import Baseline
from services.drift.labels import JoinConfig, LabelJoin, check_label, hash_ids
from services.drift.state import DriftState, window_config

SETTINGS = Settings()
T0 = 1_700_000_040  # a multiple of 60
W = 60


def make_model(with_reference: bool = False, **spec) -> SimpleNamespace:
    s = ModelSpec(**{"window_seconds": W, "allowed_lateness_seconds": 0, "label_wait_seconds": W, **spec})
    base = None
    if with_reference:
        rng = np.random.default_rng(0)
        cols = {"x": rng.normal(size=2_000).tolist(), "prediction": rng.integers(0, 2, size=2_000).tolist()}
        base = Baseline.from_profile(profile(cols, 2_000, seed=0), task=s.task)
    return SimpleNamespace(spec=s, base=base, cfg=window_config(s, base, 2_000))


def window(k: int, n: int, accuracy: float, rng, prefix: str = "e", **extra) -> tuple[list[dict], list[dict]]:
    """n predictions in window k, exactly round(accuracy * n) of them labelled right; labels 30 s later."""
    ts = T0 + k * W + np.sort(rng.uniform(0, W - 1, size=n))
    pred = rng.integers(0, 2, size=n)
    right = np.zeros(n, dtype=bool)
    right[rng.permutation(n)[: round(accuracy * n)]] = True
    label = np.where(right, pred, 1 - pred)
    preds = [{"event_id": f"{prefix}{k}-{i}", "model_id": "m", "timestamp": float(ts[i]),
              "features": {"x": float(rng.normal())}, "prediction": int(pred[i]), "confidence": 0.8, **extra}
             for i in range(n)]
    labels = [{"event_id": f"{prefix}{k}-{i}", "model_id": "m", "timestamp": float(ts[i]) + 30, "label": int(label[i])}
              for i in range(n)]
    return preds, labels


def run(model, steps, state: DriftState | None = None) -> tuple[dict[str, dict], DriftState]:
    """Apply [(topic, events)] in order; the findings by id (a repeat must be identical)."""
    state = state or DriftState()
    out: dict[str, dict] = {}
    for topic, events in steps:
        applied = (state.predictions if topic == "p" else state.labels)("m", model, events, SETTINGS)
        for f in applied.findings:
            d = f.model_dump(mode="json")
            assert out.setdefault(d["finding_id"], d) == d
    return out, state


def interleave(preds: list[dict], labels: list[dict], step: int = 200) -> list[tuple[str, list[dict]]]:
    """Predictions and labels in time order, batches of `step` of each in turn (a labels batch
    never precedes the predictions of its time)."""
    out = []
    for i in range(0, max(len(preds), len(labels)), step):
        if preds[i:i + step]:
            out.append(("p", preds[i:i + step]))
        if labels[i:i + step]:
            out.append(("l", labels[i:i + step]))
    return out


def series(accuracies, n=500, seed=0, **extra):
    rng = np.random.default_rng(seed)
    preds, labels = [], []
    for k, a in enumerate(accuracies):
        p, lab = window(k, n, a, rng, **extra)
        preds += p
        labels += lab
    return preds, labels


def of_kind(found: dict, kind: str) -> list[dict]:
    return sorted((f for f in found.values() if f["kind"] == kind), key=lambda f: f["window_start"])


# --- the join ---------------------------------------------------------------------------------

def test_labels_out_of_order_duplicated_early_and_unknown_are_counted_right():
    cfg = JoinConfig(label_wait=60, lateness=0, size=60)
    lj = LabelJoin()
    keys = hash_ids([f"p{i}" for i in range(4)])
    lj.add_predictions(lj.rows(keys, np.zeros(4, np.int64), np.arange(4.0), lj.classes.codes([1, 0, 1, 0])), {0: 60}, cfg)
    # out of order, p1 twice in one batch, "early" before its prediction, "ghost" matches nothing
    j = lj.add_labels(hash_ids(["p3", "p1", "p1", "early", "ghost"]), np.array([50.0, 40.0, 41.0, 45.0, 46.0]),
                      [0, 0, 1, 1, 1], cfg)
    assert (j.matched, j.duplicate, j.buffered, j.late) == (2, 1, 2, 0)
    assert lj.add_labels(hash_ids(["p3"]), np.array([52.0]), [1], cfg).duplicate == 1  # the first label wins
    lj.add_predictions(lj.rows(hash_ids(["early"]), np.zeros(1, np.int64), np.array([5.0]), lj.classes.codes([1])),
                       {0: 60}, cfg)
    assert "early" not in lj.buffer and len(lj.buffer) == 1  # joined when its prediction came
    assert lj.expire(pred_wm=46.0 + 60 + 0, cfg=cfg) == 1  # "ghost": no prediction can still come
    late_ghost = lj.add_labels(hash_ids(["ghost2"]), np.array([46.0]), [1], cfg, pred_wm=106.0)
    assert late_ghost.unmatched == 1 and not lj.buffer  # known hopeless on arrival: not buffered
    assert lj.add_labels(hash_ids(["p0"]), np.array([130.0]), [1], cfg).late == 1  # after end + label_wait
    (w,) = lj.due(pred_wm=200.0, cfg=cfg)
    names = {int(hash_ids([n])[0]): n for n in ("p0", "p1", "p2", "p3", "early")}
    got = {names[int(k)]: None if np.isnan(lab) else lj.classes.values[int(lab)]
           for k, lab in zip(w.rows["key"], w.rows["label"])}
    assert got == {"p0": None, "p1": 0, "p2": None, "p3": 0, "early": 1}
    assert lj.add_labels(hash_ids(["p2"]), np.array([131.0]), [1], cfg).late == 1  # its window was evaluated


def test_check_label_names_the_field():
    assert check_label({"event_id": "", "model_id": "m", "label": 1, "timestamp": 0}, "m", False).startswith("event_id")
    assert check_label({"event_id": "e", "model_id": "x", "label": 1, "timestamp": 0}, "m", False).startswith("model_id")
    assert check_label({"event_id": "e", "model_id": "m", "label": None, "timestamp": 0}, "m", False).startswith("label")
    assert isinstance(check_label({"event_id": "e", "model_id": "m", "label": 1, "timestamp": "x"}, "m", False), str)
    assert check_label({"event_id": "e", "model_id": "m", "label": "a", "timestamp": "1970-01-01T00:01:00Z"},
                       "m", False) == 60.0


def test_the_pending_store_keeps_every_row_across_merges(monkeypatch):
    import services.drift.labels as labels
    monkeypatch.setattr(labels, "MERGE_MIN", 50)
    cfg = JoinConfig(label_wait=60, lateness=0, size=60)
    lj, rng = LabelJoin(), np.random.default_rng(1)
    ids = [f"k{i}" for i in range(2_000)]
    for chunk in np.array_split(rng.permutation(2_000), 37):
        keys = hash_ids([ids[i] for i in chunk])
        lj.add_predictions(lj.rows(keys, np.zeros(len(chunk), np.int64), chunk.astype(float), chunk % 2 * 1.0),
                           {0: 60}, cfg)
    assert len(lj) == 2_000 and len(lj.pending.keys[0]) > 0  # merged into the large run
    assert np.array_equal(np.sort(lj.pending.rows()["key"]), np.sort(hash_ids(ids)))
    j = lj.add_labels(hash_ids(ids), np.full(2_000, 30.0), [1] * 2_000, cfg)
    assert j.matched == 2_000
    taken = lj.pending.take([0])
    assert len(taken) == 2_000 and len(lj) == 0 and lj.pending.used == 0  # compacted
    assert (taken["label"] == lj.classes.codes([1])[0]).all()


# --- performance ------------------------------------------------------------------------------

def test_window_metrics_equal_an_independent_numpy_recomputation():
    model = make_model(baseline_metrics={"accuracy": 0.9})
    preds, labels = series([0.9, 0.78], n=400, seed=4)
    ticks = [("p", [{**preds[0], "event_id": "tick", "timestamp": T0 + 5 * W}]),
             ("l", [{**labels[0], "event_id": "tock", "timestamp": T0 + 5 * W}])]  # move both watermarks on
    found, _ = run(model, interleave(preds, labels) + ticks)
    (f,) = [f for f in of_kind(found, "performance_degradation")]
    win = [p for p in preds if T0 + W <= p["timestamp"] < T0 + 2 * W]
    lab = {e["event_id"]: e["label"] for e in labels}
    y = np.array([lab[p["event_id"]] for p in win])
    yhat = np.array([p["prediction"] for p in win])
    tp, fp, fn = ((yhat == 1) & (y == 1)).sum(), ((yhat == 1) & (y == 0)).sum(), ((yhat == 0) & (y == 1)).sum()
    assert f["metrics"]["accuracy"] == pytest.approx((y == yhat).mean())
    assert f["metrics"]["precision"] == pytest.approx(tp / (tp + fp))
    assert f["metrics"]["recall"] == pytest.approx(tp / (tp + fn))
    assert f["metrics"]["degradation"] == pytest.approx(0.9 - (y == yhat).mean())
    assert f["severity"] == "critical" and "rollback" not in f["recommended_actions"]  # 0.12: critical, below the 0.15 of rollback


def test_accuracy_losing_a_point_per_window_is_a_trend_two_windows_before_degradation_passes_005():
    model = make_model(baseline_metrics={"accuracy": 0.9})
    accs = [0.9 - 0.01 * k for k in range(9)]
    preds, labels = series(accs, n=1_000, seed=2)
    found, _ = run(model, interleave(preds, labels))
    trend = of_kind(found, "performance_trend")
    degr = [f for f in of_kind(found, "performance_degradation") if f["metrics"]["degradation"] > 0.05]
    assert trend and degr
    first_trend = (T0 + 0) if not trend else trend[0]["window_start"]
    windows_between = (_t(degr[0]["window_start"]) - _t(first_trend)) / W
    assert windows_between >= 2, (first_trend, degr[0]["window_start"])
    t = trend[0]
    assert t["metrics"]["slope"] < 0 and t["metrics"]["p_value"] < 0.05 and t["metrics"]["windows_to_breach"] <= 7
    assert "queue_retraining" in t["recommended_actions"]


def test_performance_gauges_carry_the_baseline_the_floor_and_the_trend_projection():
    model = make_model(baseline_metrics={"accuracy": 0.9})
    preds, labels = series([0.9 - 0.01 * k for k in range(8)], n=1_000, seed=2)
    state, last = DriftState(), {}
    for topic, events in interleave(preds, labels):
        applied = (state.predictions if topic == "p" else state.labels)("m", model, events, SETTINGS)
        for f in applied.findings:
            if f.kind == "performance_trend":
                last["finding"] = f
        for gauge, labels_, value in applied.gauges:
            last[gauge, labels_.get("metric")] = value
    t = last["finding"].metrics
    assert last["performance_baseline", "accuracy"] == 0.9
    assert last["performance_min_acceptable", "accuracy"] == pytest.approx(t["min_acceptable"]) == pytest.approx(0.85)
    assert last["performance_projected", "accuracy"] == pytest.approx(t["projected"])


def _t(iso: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(iso).timestamp()


def test_concept_drift_says_whether_the_inputs_drifted():
    model = make_model(with_reference=True, baseline_metrics={"accuracy": 0.9})
    preds, labels = series([0.9, 0.9, 0.9, 0.9, 0.75, 0.9], n=600, seed=3)
    found, _ = run(model, interleave(preds, labels))
    (c,) = [f for f in of_kind(found, "concept_drift") if f["evidence"].get("rule", "").startswith("mean")]
    assert c["metrics"]["concept_drift"] == pytest.approx(0.15, abs=1e-9)
    assert c["evidence"]["inputs_drifted"] == [] and "concept drift" in c["evidence"]["explanation"]


def test_degradation_names_the_features_that_drifted_in_its_window():
    model = make_model(with_reference=True, baseline_metrics={"accuracy": 0.9})
    preds, labels = series([0.9, 0.9, 0.7, 0.7], n=600, seed=4)
    for e in preds[2 * 600:]:  # the inputs drift where the accuracy falls
        e["features"]["x"] += 3.0
    found, _ = run(model, interleave(preds, labels))
    degr = of_kind(found, "performance_degradation")
    assert [f["window_start"] for f in degr] == [f["window_start"] for f in of_kind(found, "data_drift")][:len(degr)]
    assert degr and all(f["evidence"]["inputs_drifted"] == ["x"] for f in degr)


def test_too_few_labels_judge_nothing():
    model = make_model(baseline_metrics={"accuracy": 0.9})
    preds, labels = series([0.5, 0.5, 0.5], n=60, seed=1)
    found, _ = run(model, interleave(preds, labels))
    assert not of_kind(found, "performance_degradation")


def test_online_detection_flags_an_abrupt_change_before_the_window_closes():
    model = make_model(window_seconds=3_600, label_wait_seconds=3_600, baseline_metrics={"accuracy": 0.9})
    rng = np.random.default_rng(7)
    n = 6_000
    ts = T0 + np.sort(rng.uniform(0, 3 * 3_600, size=n))
    pred = rng.integers(0, 2, size=n)
    change_at = T0 + 1.5 * 3_600
    wrong = rng.random(n) < np.where(ts < change_at, 0.05, 0.35)
    preds = [{"event_id": f"o{i}", "model_id": "m", "timestamp": float(ts[i]), "features": {"x": 0.0},
              "prediction": int(pred[i])} for i in range(n)]
    labels = [{"event_id": f"o{i}", "model_id": "m", "timestamp": float(ts[i]) + 1,
               "label": int(1 - pred[i] if wrong[i] else pred[i])} for i in range(n)]
    found, _ = run(model, interleave(preds, labels, step=100))
    online = [f for f in of_kind(found, "concept_drift") if f["evidence"].get("detector") == "adwin"]
    assert online, "ADWIN must flag the jump from 5% to 35% errors"
    at = online[0]["metrics"]["detected_at"]
    assert change_at <= at < change_at + 600  # within 10 minutes of event time, mid-window
    assert online[0]["metrics"]["error_after"] > online[0]["metrics"]["error_before"]


# --- canary, shadow, fairness -----------------------------------------------------------------

def _calls(variant: str, n: int, error_rate: float, rng, prefix: str, k: int = 0) -> list[dict]:
    ts = T0 + k * W + rng.uniform(0, W - 1, size=n)
    err = rng.permutation(n) < round(error_rate * n)
    return [{"event_id": f"{prefix}{i}", "model_id": "m", "timestamp": float(ts[i]), "features": {"x": 0.0},
             "prediction": 1, "variant": variant, "error": bool(err[i]), "latency_ms": 20.0} for i in range(n)]


@pytest.mark.parametrize("canary_rate,decision", [(0.05, "rollback"), (0.03, None)])
def test_a_canary_two_points_worse_is_rolled_back_an_equal_one_is_not(canary_rate, decision):
    model = make_model()
    rng = np.random.default_rng(11)
    events = _calls("primary", 5_000, 0.03, rng, "p") + _calls("canary", 5_000, canary_rate, rng, "c")
    rng.shuffle(events)
    events.sort(key=lambda e: e["timestamp"])
    found, _ = run(model, [("p", events), ("p", [{**events[0], "event_id": "tick", "timestamp": T0 + 2 * W}])])
    canary = of_kind(found, "canary_regression")
    if decision is None:
        assert canary == []
    else:
        (f,) = canary
        assert f["evidence"]["decision"] == decision and "rollback" in f["recommended_actions"]
        assert f["metrics"]["canary_error_rate"] == pytest.approx(canary_rate)


def test_shadow_that_disagrees_on_a_fifth_of_requests_is_a_finding():
    model = make_model()
    rng = np.random.default_rng(5)
    events = []
    for i in range(1_000):
        t = float(T0 + rng.uniform(0, W - 1))
        events.append({"event_id": f"p{i}", "model_id": "m", "timestamp": t, "features": {"x": 0.0},
                       "prediction": 1, "request_id": f"r{i}"})
        events.append({"event_id": f"s{i}", "model_id": "m", "timestamp": t, "features": {"x": 0.0},
                       "prediction": 0 if i % 5 == 0 else 1, "request_id": f"r{i}", "variant": "shadow"})
    found, _ = run(model, [("p", events), ("p", [{**events[0], "event_id": "tick", "timestamp": T0 + 2 * W}])])
    (f,) = of_kind(found, "shadow_disagreement")
    assert f["metrics"]["disagreement"] == pytest.approx(0.2) and f["n"] == 1_000 and f["severity"] == "medium"


def test_a_segment_with_a_positive_rate_15_points_lower_is_a_fairness_violation_small_groups_ignored():
    model = make_model(fairness={"attributes": ["region"], "min_group_size": 100})
    rng = np.random.default_rng(9)
    events = []
    for region, n, rate in (("north", 2_000, 0.60), ("south", 2_000, 0.45), ("tiny", 40, 0.0)):
        pos = rng.permutation(n) < round(rate * n)
        events += [{"event_id": f"{region}{i}", "model_id": "m", "timestamp": float(T0 + rng.uniform(0, W - 1)),
                    "features": {"x": 0.0}, "prediction": int(pos[i]), "segment": {"region": region}}
                   for i in range(n)]
    events.sort(key=lambda e: e["timestamp"])
    found, _ = run(model, [("p", events), ("p", [{**events[0], "event_id": "tick", "timestamp": T0 + 2 * W}])])
    (f,) = of_kind(found, "fairness_violation")
    assert f["feature"] == "region" and f["metrics"]["demographic_parity_difference"] == pytest.approx(0.15)
    assert f["evidence"]["excluded"] == {"tiny": 40} and set(f["evidence"]["groups"]) == {"north", "south"}


# --- exactness --------------------------------------------------------------------------------

def regression_series(sd=(1, 1, 1, 1, 1, 2, 2, 2), n=500, seed=21):
    """Predictions N(10, 3) with labels off by N(0, sd[k]) in window k: the error doubles from window 5."""
    rng = np.random.default_rng(seed)
    preds, labels = [], []
    for k, s in enumerate(sd):
        ts = T0 + k * W + np.sort(rng.uniform(0, W - 1, size=n))
        y = rng.normal(10, 3, size=n)
        for i in range(n):
            preds.append({"event_id": f"r{k}-{i}", "model_id": "m", "timestamp": float(ts[i]),
                          "features": {"x": 0.0}, "prediction": round(float(y[i]), 4)})
            labels.append({"event_id": f"r{k}-{i}", "model_id": "m", "timestamp": float(ts[i]) + 30,
                           "label": round(float(y[i] + rng.normal(0, s)), 4)})
    return preds, labels


SCENARIOS = {
    "classification": (make_model(baseline_metrics={"accuracy": 0.9},
                                  fairness={"attributes": ["region"], "min_group_size": 50}),
                       *series([0.9, 0.9, 0.9, 0.9, 0.8, 0.78, 0.76, 0.9], n=300, seed=13,
                               segment={"region": "north"}, latency_ms=10.0)),
    "regression": (make_model(task="regression", baseline_metrics={"rmse": 1.0}), *regression_series()),
}
REFERENCES = {name: run(model, interleave(p, lab))[0] for name, (model, p, lab) in SCENARIOS.items()}


def test_the_reference_runs_have_performance_and_online_findings():
    kinds = {name: {(f["kind"], f["evidence"].get("detector")) for f in ref.values()} for name, ref in REFERENCES.items()}
    assert {("performance_degradation", None), ("concept_drift", None), ("concept_drift", "adwin")} \
        <= kinds["classification"]
    assert {("performance_degradation", None), ("concept_drift", "page_hinkley")} <= kinds["regression"]


def test_regression_degradation_is_relative_to_the_baseline_rmse():
    found = REFERENCES["regression"]
    worst = max(f["metrics"]["degradation"] for f in of_kind(found, "performance_degradation"))
    assert worst == pytest.approx(1.0, abs=0.15)  # rmse 2 against a baseline of 1: 100% worse


def test_regression_degradation_is_gated_by_the_loss_z_test():
    """A stable regression at 300 labels a window: some windows' rmse is > 3 % above the baseline
    by noise alone, and none is flagged; the doubled error of the reference run is, with its p-value."""
    preds, labels = regression_series(sd=(1,) * 12, n=300, seed=5)
    found, state = run(make_model(task="regression", baseline_metrics={"rmse": 1.0}), interleave(preds, labels))
    history = state.join("m").extra["history"]
    assert max(h[1]["rmse"] for h in history) > 1.03  # noise the tier alone would have flagged
    assert not [f for f in found.values() if f["kind"] in ("performance_degradation", "concept_drift")]
    flagged = of_kind(REFERENCES["regression"], "performance_degradation")
    assert flagged and all(f["metrics"]["degradation_p_value"] < 0.05 for f in flagged)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@hsettings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_findings_do_not_depend_on_interleaving_batching_or_a_checkpoint_restore(scenario, data):
    """Any interleaving of the two logs (each in its own order), any batch sizes, and a restore
    from a JSON checkpoint at any point: the same findings."""
    EXACT_MODEL, PREDS, LABELS = SCENARIOS[scenario]
    REFERENCE = REFERENCES[scenario]
    cuts = lambda n: sorted(data.draw(st.sets(st.integers(1, n - 1), max_size=12)))  # noqa: E731
    pc = cuts(len(PREDS))
    p_batches = [b for b in (PREDS[a:b] for a, b in zip([0, *pc], [*pc, len(PREDS)])) if b]
    lc = cuts(len(LABELS))
    l_batches = [b for b in (LABELS[a:b] for a, b in zip([0, *lc], [*lc, len(LABELS)])) if b]
    order = data.draw(st.permutations(["p"] * len(p_batches) + ["l"] * len(l_batches)))
    pi = li = 0
    steps = []
    for t in order:
        if t == "p":
            steps.append(("p", p_batches[pi]))
            pi += 1
        else:
            steps.append(("l", l_batches[li]))
            li += 1
    split = data.draw(st.integers(0, len(steps)))
    first, state = run(EXACT_MODEL, steps[:split])
    restored = DriftState.from_dict(orjson.loads(orjson.dumps(state.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY)))
    rest, _ = run(EXACT_MODEL, steps[split:], restored)
    for k, v in rest.items():
        assert first.setdefault(k, v) == v
    assert first == REFERENCE


def test_pending_predictions_are_dropped_past_retention_and_past_max_pending():
    cfg = JoinConfig(label_wait=60, lateness=0, size=60, retention=600, max_pending=250)
    lj = LabelJoin()
    for w in range(3):  # 100 predictions in each of windows 0, 60, 120
        keys = hash_ids([f"w{w}-{i}" for i in range(100)])
        lj.add_predictions(lj.rows(keys, np.full(100, 60 * w), np.full(100, 60.0 * w), np.ones(100)),
                           {60 * w: 60 * w + 60}, cfg)
    assert lj.due(pred_wm=200.0, cfg=cfg) == [] and len(lj) == 200 and sorted(lj.open) == [60, 120]  # the oldest
    assert lj.evicted == 100
    lj.extra["closed"] = {"120": {"drifted": [], "version": "v1"}}  # as the drift window's close leaves it
    lj.due(pred_wm=120 + 60 + 600.0, cfg=cfg)  # window 120 ends at 180: past 600 s of retention
    assert len(lj) == 0 and lj.open == {} and lj.evicted == 300
    assert lj.extra["closed"] == {}  # nothing left behind for a window that is gone
