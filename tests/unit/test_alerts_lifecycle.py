"""The alert lifecycle, pure: findings in, alerts, actions and notification reasons out."""

from __future__ import annotations

import doctest
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from services.alerts import lifecycle as lc
from services.alerts.lifecycle import InhibitRule, Matcher, Silence, apply_finding, parse_time

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
NOW = T0 + timedelta(days=1)


def finding(i: int, severity: str = "high", window: int | None = None, kind: str = "data_drift",
            feature: str | None = "x", model: str = "m", **extra) -> dict:
    w = i if window is None else window
    return {"finding_id": f"f{i}", "kind": kind, "model_id": model, "feature": feature, "severity": severity,
            "window_start": lc.iso(T0 + timedelta(minutes=15 * w)),
            "window_end": lc.iso(T0 + timedelta(minutes=15 * (w + 1))),
            "n": 100, "metrics": {"psi": 0.25}, "evidence": {}, **extra}


def fold(findings, alert=None, resolve_after=2):
    changes = []
    for f in findings:
        c = apply_finding(alert, f, now=NOW, resolve_after=resolve_after)
        alert = c.alert
        changes.append(c)
    return alert, changes


def test_the_lifecycle_doctests_pass():
    assert doctest.testmod(lc).failed == 0


def test_a_thousand_findings_of_one_fingerprint_make_one_alert():
    alert, changes = fold([finding(i) for i in range(1000)])
    assert alert["occurrences"] == 1000
    assert {c.alert["alert_id"] for c in changes} == {alert["alert_id"]}
    assert len(alert["findings"]) == lc.MAX_FINDINGS and alert["findings"][-1] == "f999"
    assert alert["first_seen"] == finding(0)["window_end"] and alert["last_seen"] == finding(999)["window_end"]
    assert [c.reason for c in changes].count("new") == 1


def test_actions_are_made_once_per_severity_not_per_repeat():
    _, changes = fold([finding(0, "medium"), finding(1, "medium"), finding(2, "critical"), finding(3, "high")])
    types = [[a["type"] for a in c.actions] for c in changes]
    assert types == [["notify", "queue_retraining"], [], ["page_oncall", "enable_human_review", "queue_retraining"], []]


def test_severity_escalates_and_never_falls_while_open():
    alert, changes = fold([finding(0, "medium"), finding(1, "critical"), finding(2, "medium")])
    assert [c.reason for c in changes] == ["new", "escalated", "repeat"]
    assert alert["severity"] == "critical"


def test_the_same_finding_twice_changes_nothing():
    alert, _ = fold([finding(0), finding(1)])
    again = apply_finding(alert, finding(1), now=NOW)
    assert again.reason == "duplicate" and again.alert is alert


@pytest.mark.parametrize("resolve_after", [1, 2, 3])
def test_resolves_after_n_clear_windows(resolve_after):
    alert, _ = fold([finding(0)])
    lows = [finding(10 + i, "low") for i in range(resolve_after)]
    alert, changes = fold(lows, alert, resolve_after)
    assert [c.reason for c in changes] == ["clear"] * (resolve_after - 1) + ["resolved"]
    assert alert["status"] == "resolved"


def test_a_bad_window_resets_the_clear_count():
    alert, changes = fold([finding(0), finding(1, "low"), finding(2, "high"), finding(3, "low")])
    assert [c.reason for c in changes] == ["new", "clear", "repeat", "clear"]
    assert alert["status"] == "firing" and len(alert["clear_windows"]) == 1


def test_a_clear_finding_of_an_earlier_window_does_not_count():
    alert, changes = fold([finding(5), finding(1, "low"), finding(2, "low")])
    assert alert["status"] == "firing" and alert["clear_windows"] == []


def test_stale_alerts_resolve_after_n_window_lengths_without_findings():
    alert, _ = fold([finding(0)])  # window 00:00-00:15
    end = parse_time(alert["received_at"])  # wall time: when its last bad finding arrived
    assert not lc.stale(alert, end + timedelta(minutes=29), 2)
    assert lc.stale(alert, end + timedelta(minutes=30), 2)
    assert lc.stale(alert, end + timedelta(minutes=15), 1)


def test_in_a_replayed_history_the_models_other_findings_are_the_clock():
    # a backfill: windows pass in milliseconds, so wall time says nothing; f03 keeps firing
    once, _ = fold([{**finding(0), "feature": "f16", "finding_id": "f16-0"}])
    steady, _ = fold([finding(w) for w in range(4)])
    clock = lc.model_clock([once, steady])
    assert clock == parse_time(steady["last_seen"])
    now = parse_time(once["received_at"])  # no wall time has passed
    assert lc.stale(once, now, 2, clock) and not lc.stale(steady, now, 2, clock)
    assert not lc.stale(once, now, 4, clock)  # 3 windows later: not yet 4


def test_the_cadence_of_a_period_evaluated_hourly_is_the_hour():
    day = 86_400
    f = [{**finding(0), "finding_id": f"o{h}", "window_start": lc.iso(T0 + timedelta(seconds=h * 3600 - 7 * day)),
          "window_end": lc.iso(T0 + timedelta(seconds=h * 3600)), "evidence": {"evaluated_every_seconds": 3600}}
         for h in (3, 1, 2)]  # a 7-day period evaluated hourly, out of order
    alert, _ = fold(f)
    assert lc.cadence(alert) == 3600.0
    assert lc.stale(alert, parse_time(alert["received_at"]) + timedelta(hours=2), 2)


def test_low_findings_open_no_alert():
    assert apply_finding(None, finding(0, "low"), now=NOW) == (None, "ignored", [])


def test_acknowledged_alert_fires_again_when_it_escalates():
    alert, _ = fold([finding(0, "medium")])
    alert = lc.acknowledge(alert, "ana", "on it", NOW)
    c = apply_finding(alert, finding(1, "medium"), now=NOW)
    assert c.alert["status"] == "acknowledged" and lc.notify_reason(alert, c.alert) is None
    c2 = apply_finding(c.alert, finding(2, "high"), now=NOW)
    assert c2.alert["status"] == "firing" and lc.notify_reason(c.alert, c2.alert) == "firing"
    assert c2.alert["acknowledged"]["by"] == "ana"


def test_silence_matchers_and_expiry():
    s = Silence("s1", (Matcher("model_id", "m"), Matcher("kind", "data_.*", is_regex=True)), T0, T0 + timedelta(hours=1),
                "ana", "maintenance")
    alert, _ = fold([finding(0)])
    labels = lc.labels_of(alert, {"team": "risk"})
    assert lc.suppression(alert, labels, [s], [], T0 + timedelta(minutes=5)) == (["s1"], [])
    assert lc.suppression(alert, labels, [s], [], T0 + timedelta(hours=1)) == ([], [])  # expired
    other = lc.labels_of({**alert, "model_id": "n"})
    assert lc.suppression(alert, other, [s], [], T0 + timedelta(minutes=5)) == ([], [])
    s2 = Silence.from_dict(s.to_dict())
    assert s2 == s


def test_bad_regex_matcher_is_refused_naming_the_value():
    with pytest.raises(ValueError, match="matcher.value='\\('"):
        Matcher("kind", "(", is_regex=True)


def test_default_inhibition_holds_back_medium_of_the_same_model_only():
    crit, _ = fold([finding(0, "critical", kind="performance_degradation", feature=None)])
    med, _ = fold([finding(1, "medium")])
    high, _ = fold([finding(2, "high", feature="y")])
    med_other, _ = fold([finding(3, "medium", model="n")])
    others = [(a, lc.labels_of(a)) for a in (crit, med, high, med_other)]
    assert lc.suppression(med, lc.labels_of(med), [], others, NOW) == ([], [crit["alert_id"]])
    assert lc.suppression(high, lc.labels_of(high), [], others, NOW) == ([], [])
    assert lc.suppression(med_other, lc.labels_of(med_other), [], others, NOW) == ([], [])
    assert lc.suppression(crit, lc.labels_of(crit), [], others, NOW) == ([], [])
    resolved = lc.resolve(crit, NOW)
    assert lc.suppression(med, lc.labels_of(med), [], [(resolved, lc.labels_of(resolved))], NOW) == ([], [])


def test_custom_inhibit_rule_with_equal_labels():
    rule = InhibitRule(source=(Matcher("kind", "vendor_sla_persistent"),), target=(Matcher("kind", "vendor_sla_violation"),),
                       equal=("vendor",))
    src, _ = fold([finding(0, "high", kind="vendor_sla_persistent", feature=None, vendor="acme")])
    tgt, _ = fold([finding(1, "high", kind="vendor_sla_violation", feature=None, vendor="acme")])
    tgt2, _ = fold([finding(2, "high", kind="vendor_sla_violation", feature=None, vendor="other")])
    others = [(a, lc.labels_of(a)) for a in (src, tgt, tgt2)]
    assert lc.suppression(tgt, lc.labels_of(tgt), [], others, NOW, (rule,)) == ([], [src["alert_id"]])
    assert lc.suppression(tgt2, lc.labels_of(tgt2), [], others, NOW, (rule,)) == ([], [])


def test_suppressed_alert_is_recorded_as_silenced_and_not_notified():
    alert, _ = fold([finding(0)])
    s = lc.suppress(alert, ["s1"], [])
    assert s["status"] == "silenced" and s["revision"] == alert["revision"] + 1
    assert lc.notify_reason(alert, s) is None
    back = lc.suppress(s, [], [])
    assert back["status"] == "firing" and lc.notify_reason(s, back) == "firing"


def test_resolve_notifies_only_when_notified_before():
    alert, _ = fold([finding(0)])
    assert lc.notify_reason(alert, lc.resolve(alert, NOW)) is None
    notified = {**alert, "notified": True}
    assert lc.notify_reason(notified, lc.resolve(notified, NOW)) == "resolved"


_findings = st.lists(st.builds(lambda i, s: finding(i, s), st.integers(0, 30), st.sampled_from(["medium", "high", "critical"])),
                     min_size=1, max_size=25, unique_by=lambda f: f["finding_id"])


@settings(max_examples=200, deadline=None)
@given(_findings, st.randoms(use_true_random=False), st.integers(0, 10))
def test_any_order_and_duplication_of_the_same_findings_gives_the_same_alert(findings, rnd, dups):
    base, _ = fold(findings)
    shuffled = findings + [rnd.choice(findings) for _ in range(dups)]
    rnd.shuffle(shuffled)
    other, _ = fold(shuffled)
    keys = ("alert_id", "fingerprint", "severity", "status", "first_seen", "last_seen", "occurrences", "latest",
            "title", "summary")
    assert {k: other[k] for k in keys} == {k: base[k] for k in keys}
    assert set(other["findings"]) == set(base["findings"])
    assert base["occurrences"] == len(findings)
    assert base["severity"] == max((f["severity"] for f in findings), key=lc.RANK.__getitem__)


_specs = st.lists(st.tuples(st.sampled_from(["data_drift", "prediction_drift", "performance_degradation"]),
                            st.sampled_from(["a", "b", "c"]), st.sampled_from(["medium", "high", "critical"])),
                  min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(_specs, _specs)
def test_settling_only_the_changed_alerts_equals_settling_all(first, then):
    """A finding's settle (full=False) gives what a full settle gives, from a settled state."""
    state: dict[str, dict] = {}
    i = 0
    for kind, feat, sev in first:
        i += 1
        fp = lc.fingerprint("m", kind, feat)
        cur = next((a for a in state.values() if a["fingerprint"] == fp), None)
        c = apply_finding(cur, finding(i, sev, kind=kind, feature=feat), now=NOW)
        state = {**state, c.alert["alert_id"]: c.alert}
    state = {a["alert_id"]: a for a in [*state.values()]}
    settled = lc.settle({}, state, {}, [], NOW)
    state = {a["alert_id"]: a for a in settled.changed}
    for kind, feat, sev in then:
        i += 1
        fp = lc.fingerprint("m", kind, feat)
        cur = next((a for a in state.values() if a["fingerprint"] == fp), None)
        after = dict(state)
        c = apply_finding(cur, finding(i, sev, kind=kind, feature=feat), now=NOW)
        after[c.alert["alert_id"]] = c.alert
        quick = lc.settle(state, after, {}, [], NOW, full=False)
        full = lc.settle(state, after, {}, [], NOW, full=True)
        assert quick == full
        state = {**state, **{a["alert_id"]: a for a in full.changed}}
