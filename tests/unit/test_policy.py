"""Severity policy: the DESIGN.md tiers at and around every threshold, gates, escalation, overrides, actions."""

from __future__ import annotations

import pytest

from shared import policy
from shared.policy import (CRITICAL, HIGH, LOW, MEDIUM, escalate, recommended_actions, responses, severity, threshold,
                           tier, validate_thresholds)

# metric -> thresholds of DESIGN.md "Default statistics and thresholds", mildest first
DESIGN = {
    "psi": [(0.1, MEDIUM), (0.2, HIGH), (0.3, CRITICAL)],
    "ks_statistic": [(0.1, MEDIUM), (0.2, HIGH)],
    "js_distance": [(0.1, MEDIUM), (0.2, HIGH), (0.3, CRITICAL)],
    "degradation": [(0.03, MEDIUM), (0.05, HIGH), (0.10, CRITICAL)],
    "demographic_parity_difference": [(0.1, MEDIUM), (0.2, HIGH)],
    "equalized_odds_difference": [(0.1, MEDIUM), (0.2, HIGH)],
    "concept_drift": [(0.05, MEDIUM)],
}
CASES = [(metric, above, sev, below) for metric, rules in DESIGN.items()
         for (above, sev), below in zip(rules, [LOW] + [s for _, s in rules])]


@pytest.mark.parametrize("metric,above,sev,below", CASES)
def test_a_tier_starts_strictly_above_its_threshold(metric, above, sev, below):
    assert tier(metric, above - 1e-9) == below
    assert tier(metric, above) == below
    assert tier(metric, above + 1e-9) == sev


@pytest.mark.parametrize("metric", DESIGN)
def test_tiers_are_the_design_values(metric):
    assert sorted(policy.TIERS[metric]) == sorted(DESIGN[metric])


def test_missing_or_nan_values_are_low():
    assert tier("psi", None) == LOW and tier("psi", float("nan")) == LOW


def test_unknown_metric_names_the_valid_ones():
    with pytest.raises(ValueError, match="no tiers; valid: psi, ks_statistic"):
        tier("psy", 1.0)


def test_named_constants_are_the_design_values():
    assert (policy.PSI_EPS, policy.PSI_BINS, policy.ALPHA) == (1e-4, 10, 0.05)
    assert (policy.ROLLBACK_DEGRADATION, policy.CONCEPT_DRIFT_WINDOWS, policy.TREND_WINDOWS) == (0.15, 4, 7)
    assert (policy.OVERRIDE_RATE_MIN, policy.RUBBER_STAMP_RATE, policy.RUBBER_STAMP_SHARE) == (0.02, 0.01, 0.30)
    assert (policy.SLA_TOLERANCE, policy.SLA_LATENCY_FACTOR, policy.SLA_MIN_SAMPLES) == (0.02, 1.2, 100)
    assert (policy.CANARY_ERROR_MARGIN, policy.FAIRNESS_MIN_GROUP, policy.WORKLOAD_RATIO) == (0.005, 100, 0.5)


# --- gates and a finding's severity -----------------------------------------------------------

def test_ks_counts_only_when_its_adjusted_p_value_is_below_alpha():
    drifted = {"ks_statistic": 0.25, "ks_p_value": 0.001, "ks_p_adjusted": 0.049}
    assert severity(drifted) == HIGH
    assert severity({**drifted, "ks_p_adjusted": 0.05}) == LOW
    assert severity({**drifted, "ks_p_adjusted": None}) == LOW


def test_prediction_drift_needs_a_significant_chi2():
    assert severity({"js_distance": 0.35, "chi2_p_value": 0.01}) == CRITICAL
    assert severity({"js_distance": 0.35, "chi2_p_value": 0.2}) == LOW


def test_a_finding_takes_its_worst_gated_tier():
    assert severity({"psi": 0.35, "ks_statistic": 0.15, "ks_p_adjusted": 0.001}) == CRITICAL
    assert severity({"psi": 0.05, "ks_statistic": 0.15, "ks_p_adjusted": 0.001}) == MEDIUM
    assert severity({"psi": 0.05, "confidence_psi": 5.0}) == LOW  # only contract metrics are graded


def test_a_psi_that_is_ordinary_noise_at_the_window_size_does_not_count():
    assert severity({"psi": 0.35, "psi_p_adjusted": 0.2}) == LOW  # a tiny window: usual for its n
    assert severity({"psi": 0.35, "psi_p_adjusted": 0.049}) == CRITICAL
    assert severity({"psi": 0.35, "psi_p_adjusted": 0.2}, {"psi_p_value": 1.0}) == CRITICAL  # gate off
    assert severity({"psi": 0.35, "psi_p_adjusted": 0.02}, {"psi_p_value": 0.01}) == LOW


def test_calibrated_mode_grades_the_percentile_instead():
    metrics = {"psi": 0.5, "psi_percentile": 96.0, "ks_statistic": 0.01, "ks_statistic_percentile": 99.5,
               "ks_p_adjusted": 0.01}
    assert severity(metrics) == CRITICAL
    assert severity(metrics, {"calibrated": True}) == HIGH
    assert severity({"psi": 0.5, "psi_percentile": 99.95}, {"calibrated": True}) == CRITICAL
    assert severity({"psi": 0.5}, {"calibrated": True}) == CRITICAL  # no percentile: the raw tiers


def test_alpha_overrides_move_the_gates():
    metrics = {"ks_statistic": 0.25, "ks_p_adjusted": 0.02}
    assert severity(metrics, {"ks_p_value": 0.01}) == LOW
    assert severity({"js_distance": 0.15, "chi2_p_value": 0.08}, {"chi2_p_value": 0.1}) == MEDIUM


# --- escalation and actions -------------------------------------------------------------------

@pytest.mark.parametrize("sev,raised", [(LOW, LOW), (MEDIUM, HIGH), (HIGH, CRITICAL), (CRITICAL, CRITICAL)])
def test_a_high_risk_model_is_raised_one_tier(sev, raised):
    assert escalate(sev, "high") == raised
    assert escalate(sev, "medium") == sev and escalate(sev, "low") == sev


def test_response_actions_per_tier():
    assert recommended_actions(CRITICAL) == ["page_oncall", "enable_human_review", "queue_retraining"]
    assert recommended_actions(HIGH) == ["notify", "queue_retraining", "increase_monitoring_frequency"]
    assert recommended_actions(MEDIUM) == ["notify", "queue_retraining"]
    assert recommended_actions(LOW) == []
    assert [r.priority for r in responses(CRITICAL)] == ["urgent"] * 3
    assert {r.priority for r in responses(HIGH)} == {"high"} and {r.priority for r in responses(MEDIUM)} == {"normal"}


def test_rollback_when_critical_and_degradation_above_015():
    assert "rollback" in recommended_actions(CRITICAL, {"degradation": 0.16})
    assert "rollback" not in recommended_actions(CRITICAL, {"degradation": 0.15})
    assert "rollback" not in recommended_actions(HIGH, {"degradation": 0.3})
    assert "rollback" not in recommended_actions(CRITICAL, {"degradation": 0.16}, overrides={"rollback_degradation": 0.2})
    assert "rollback" in recommended_actions(MEDIUM, {}, kind="canary_regression")


# --- overrides --------------------------------------------------------------------------------

def test_tier_overrides_accept_pairs_in_any_order_or_a_mapping():
    assert tier("psi", 0.25, {"psi": [[0.2, "medium"], [0.4, "critical"]]}) == MEDIUM
    assert tier("psi", 0.45, {"psi": {"critical": 0.4, "medium": 0.2}}) == CRITICAL
    assert validate_thresholds({"psi": [[0.2, "medium"], [0.4, "critical"]]}) == {"psi": ((0.4, CRITICAL), (0.2, MEDIUM))}


def test_scalar_and_flag_overrides():
    assert validate_thresholds({"ks_p_value": 0.01, "calibrated": True, "psi_eps": 1e-5}) == {
        "ks_p_value": 0.01, "calibrated": True, "psi_eps": 1e-5}
    assert threshold("ks_p_value") == 0.05 and threshold("calibrated") is False
    assert threshold("override_rate_min", {"override_rate_min": 0.05}) == 0.05


@pytest.mark.parametrize("thresholds,message", [
    ({"psy": 0.1}, r"thresholds\.psy: unknown key; valid keys: .*psi"),
    ({"psi": 0.1}, r"thresholds\.psi=0\.1: must be \[\[above, severity\], \.\.\.\]"),
    ({"psi": [[0.1, "severe"]]}, r"thresholds\.psi=.*severity 'severe' must be one of low, medium, high, critical"),
    ({"psi": [["x", "high"]]}, r"thresholds\.psi=.*must be a finite number"),
    ({"psi": [[float("nan"), "high"]]}, r"must be a finite number"),
    ({"psi": [[0.1, "high"], [0.2, "high"]]}, r"each severity may appear once"),
    ({"psi": [[0.3, "medium"], [0.2, "high"]]}, r"a more severe tier must not have a lower threshold"),
    ({"ks_p_value": 1.5}, r"thresholds\.ks_p_value=1\.5: must be > 0\.0 and <= 1\.0"),
    ({"ks_p_value": 0}, r"thresholds\.ks_p_value=0: must be > 0\.0"),
    ({"ks_p_value": True}, r"thresholds\.ks_p_value=True: must be a finite number"),
    ({"calibrated": "yes"}, r"thresholds\.calibrated='yes': must be true or false"),
])
def test_bad_overrides_name_the_key_and_the_rule(thresholds, message):
    with pytest.raises(ValueError, match=message):
        validate_thresholds(thresholds)


def test_a_bad_override_is_also_caught_when_grading():
    with pytest.raises(ValueError, match="thresholds.psi"):
        tier("psi", 0.2, {"psi": [[0.1, "severe"]]})
