"""Vigil's Grafana dashboards, written as code: `python deploy/grafana/dashboards.py` writes
deploy/grafana/dashboards/*.json (provisioned by deploy/grafana/provisioning). Edit here, then
run it; tests/unit/test_deploy.py fails when the JSON and this file disagree.

Five dashboards: the fleet overview, one model's drift and performance, human oversight,
vendor SLAs, and Vigil's own health. Every query uses the contract's metric names
(DESIGN.md, "Metrics") or the recording rules of deploy/prometheus/rules.yml; variables
filter with `=~` so "All" is `.*`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "vigil-prometheus"}

# thresholds: [(value, colour), ...] from the lowest; DESIGN.md's tiers
PSI = [(None, "green"), (0.1, "yellow"), (0.2, "orange"), (0.3, "red")]
KS = [(None, "green"), (0.1, "yellow"), (0.2, "orange")]
JS_DISTANCE = [(None, "green"), (0.1, "yellow"), (0.2, "orange"), (0.3, "red")]
FAIRNESS = [(None, "green"), (0.1, "orange"), (0.2, "red")]
OVERRIDE = [(None, "red"), (0.02, "green")]  # below 2%: override_rate_low
UP = [(None, "red"), (1, "green")]
UP_MAPPINGS = [{"type": "value", "options": {"0": {"text": "down", "color": "red"}, "1": {"text": "up", "color": "green"}}}]
SEVERITY_COLOURS = {"critical": "red", "high": "orange", "medium": "yellow", "low": "blue"}
OVERSIGHT_KINDS = "override_rate_low|reviewer_rubber_stamping|workload_pressure|review_coverage_gap"


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> dict:
    return {"datasource": DS, "refId": ref, "expr": expr, "legendFormat": legend,
            "range": not instant, "instant": instant}


def steps(th: list) -> dict:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in th]}


def panel(kind: str, title: str, description: str, targets: list[dict], w: int = 12, h: int = 8,
          unit: str = "short", thresholds: list | None = None, **extra: Any) -> dict:
    defaults: dict[str, Any] = {"unit": unit, "color": {"mode": "thresholds" if thresholds and kind != "timeseries"
                                                        else "palette-classic"}}
    if thresholds:
        defaults["thresholds"] = steps(thresholds)
    if kind == "timeseries":
        defaults["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
                              "spanNulls": False, "axisSoftMin": 0,
                              "thresholdsStyle": {"mode": "line" if thresholds else "off"}}
    defaults.update(extra.pop("defaults", {}))
    p = {"type": kind, "title": title, "description": description, "datasource": DS,
         "targets": [{**t, "refId": chr(ord("A") + i)} for i, t in enumerate(targets)],
         "fieldConfig": {"defaults": defaults, "overrides": extra.pop("overrides", [])},
         "_w": w, "_h": h}
    options = {
        "timeseries": {"legend": {"displayMode": "table", "placement": "right", "showLegend": True,
                                  "calcs": ["lastNotNull", "max"]}, "tooltip": {"mode": "multi", "sort": "desc"}},
        "stat": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                 "colorMode": "background", "graphMode": "area", "textMode": "auto"},
        "status-history": {"showValue": "never", "rowHeight": 0.9, "colWidth": 0.95,
                           "legend": {"showLegend": True, "displayMode": "list", "placement": "bottom"}},
        "state-timeline": {"showValue": "never", "mergeValues": True, "rowHeight": 0.9,
                           "legend": {"showLegend": True, "displayMode": "list", "placement": "bottom"}},
        "bargauge": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                     "orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True},
        "table": {"showHeader": True, "footer": {"show": False}},
    }.get(kind, {})
    p["options"] = {**options, **extra.pop("options", {})}
    p.update(extra)
    return p


def ts(title: str, description: str, *targets: dict, **kw: Any) -> dict:
    return panel("timeseries", title, description, list(targets), **kw)


def stat(title: str, description: str, *targets: dict, w: int = 6, h: int = 4, **kw: Any) -> dict:
    return panel("stat", title, description, list(targets), w=w, h=h, **kw)


def row(title: str) -> dict:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "_w": 24, "_h": 1}


def variable(name: str, label: str, query: str, multi: bool = True) -> dict:
    return {"type": "query", "name": name, "label": label, "datasource": DS, "definition": query,
            "query": query, "refresh": 2, "regex": "", "sort": 1, "multi": multi, "includeAll": multi,
            "allValue": ".*" if multi else None, "hide": 0, "skipUrlSync": False, "options": [],
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if multi else {}}


MODEL = variable("model_id", "Model", "label_values(vigil_events_ingested_total, model_id)")
ONE_MODEL = variable("model_id", "Model", "label_values(vigil_feature_psi, model_id)", multi=False)
FEATURE = variable("feature", "Feature", 'label_values(vigil_feature_psi{model_id=~"$model_id"}, feature)')
VENDOR = variable("vendor", "Vendor", "label_values(vigil_vendor_sla_compliant, vendor)")
OVERSIGHT_MODEL = variable("model_id", "Model", "label_values(vigil_override_rate, model_id)")


def dashboard(uid: str, title: str, description: str, variables: list[dict], panels: list[dict],
              links: bool = True) -> dict:
    """Lay the panels out left to right, top to bottom, on Grafana's 24-column grid; number them."""
    x = y = line = 0
    for i, p in enumerate(panels, start=1):
        w, h = p.pop("_w"), p.pop("_h")
        if x + w > 24 or p["type"] == "row":
            x, y, line = 0, y + line, 0
        p["id"], p["gridPos"] = i, {"h": h, "w": w, "x": x, "y": y}
        x, line = x + w, max(line, h)
        if p["type"] == "row":
            x, y, line = 0, y + h, 0
    return {"uid": uid, "title": title, "description": description, "tags": ["vigil", "ml-monitoring"],
            "schemaVersion": 39, "version": 1, "editable": True, "graphTooltip": 1, "timezone": "",
            "time": {"from": "now-6h", "to": "now"}, "refresh": "30s", "fiscalYearStartMonth": 0,
            "liveNow": False, "id": None, "timepicker": {},
            "links": [{"type": "dashboards", "tags": ["vigil"], "asDropdown": True, "title": "Vigil",
                       "includeVars": False, "keepTime": True}] if links else [],
            "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                                      "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                                      "name": "Annotations & Alerts", "type": "dashboard"}]},
            "templating": {"list": variables}, "panels": panels}


def severity_overrides() -> list[dict]:
    return [{"matcher": {"id": "byName", "options": s},
             "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": c}}]}
            for s, c in SEVERITY_COLOURS.items()]


# --- the dashboards --------------------------------------------------------------------------

def overview() -> dict:
    m = 'model_id=~"$model_id"'
    return dashboard("vigil-overview", "Vigil — fleet overview",
                     "Every watched model at a glance: traffic, drift, performance, alerts. Drill into one model "
                     "with the model drift dashboard.", [MODEL], [
        row("Fleet"),
        stat("Services up", "Prometheus scrape status of each Vigil service (job=\"vigil\").",
             target('up{job="vigil"}', "{{service}}"), thresholds=UP,
             defaults={"mappings": UP_MAPPINGS}),
        stat("Events ingested / s", "Events acknowledged by the broker, all kinds.",
             target(f"sum(rate(vigil_events_ingested_total{{{m}}}[5m]))", "events/s"), unit="ops"),
        stat("Rejected share", "Share of incoming events refused by ingest (422 and others), per kind.",
             target("vigil:ingest_rejection_ratio:rate5m", "{{kind}}"), unit="percentunit",
             thresholds=[(None, "green"), (0.01, "yellow"), (0.05, "red")]),
        stat("Alerts firing", "Vigil alerts firing now, by severity.",
             target("sum by (severity) (vigil_alerts_active)", "{{severity}}"),
             thresholds=[(None, "green"), (1, "orange")], overrides=severity_overrides()),
        panel("table", "Models now", "One row per model: prediction rate, worst feature PSI, prediction "
              "Jensen–Shannon divergence and its primary performance metric in the last window.", [
            target(f'sum by (model_id) (rate(vigil_events_ingested_total{{kind="predictions",{m}}}[5m]))',
                   instant=True),
            target(f"max by (model_id) (vigil_feature_psi{{{m}}})", instant=True),
            target(f"max by (model_id) (vigil_prediction_js_divergence{{{m}}})", instant=True),
            target(f'max by (model_id) (vigil_model_performance{{{m},metric=~"accuracy|rmse"}})', instant=True),
        ], w=24, h=7, transformations=[
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {"excludeByName": {"Time": True}, "renameByName": {
                "Value #A": "predictions / s", "Value #B": "worst PSI", "Value #C": "prediction JS",
                "Value #D": "accuracy or RMSE"}}}]),
        row("Drift and performance"),
        ts("Worst feature PSI per model", "The largest PSI over each model's features in its last closed window. "
           "Tiers: > 0.1 medium, > 0.2 high, > 0.3 critical.",
           target(f"max by (model_id) (vigil_feature_psi{{{m}}})", "{{model_id}}"), thresholds=PSI),
        ts("Model performance", "Each model's metrics in its last evaluated performance window.",
           target(f"vigil_model_performance{{{m}}}", "{{model_id}} {{metric}}"), unit="percentunit"),
        ts("Prediction drift (Jensen–Shannon distance)", "sqrt of the JS divergence of the prediction distribution "
           "against the reference (> 0.1 medium with p < 0.05).",
           target(f"sqrt(vigil_prediction_js_divergence{{{m}}})", "{{model_id}}"), thresholds=JS_DISTANCE),
        ts("Fairness gap", "Demographic parity and equalized-odds differences per segment attribute "
           "(> 0.1 fairness_violation, > 0.2 high).",
           target(f"vigil_fairness_gap{{{m}}}", "{{model_id}} {{attribute}} {{metric}}"), thresholds=FAIRNESS),
        row("Alerts"),
        ts("Alerts fired per hour by severity", "New alerts (not repeats of a firing alert).",
           target("sum by (severity) (vigil:alerts_fired:increase1h)", "{{severity}}"),
           overrides=severity_overrides()),
        panel("bargauge", "Alerts fired by kind (time range)", "New alerts in the dashboard's time range.",
              [target("sort_desc(sum by (kind) (increase(vigil_alerts_fired_total[$__range])))", "{{kind}}",
                      instant=True)]),
        ts("Detection latency", "From the batch that closed a window to its alert published (recording rules).",
           target("vigil:detection_latency_seconds:p50", "p50"), target("vigil:detection_latency_seconds:p99", "p99"),
           unit="s"),
        ts("Human override rate", "Share of reviews in which the reviewer changed the AI's decision, trailing "
           "7 days (< 2%: override_rate_low).",
           target(f"vigil_override_rate{{{m}}}", "{{model_id}}"), unit="percentunit", thresholds=OVERRIDE),
    ])


def model_drift() -> dict:
    m, f = 'model_id=~"$model_id"', 'model_id=~"$model_id",feature=~"$feature"'
    return dashboard("vigil-model-drift", "Vigil — model drift and performance",
                     "One model: PSI and KS per feature over time, prediction drift, performance against its "
                     "baseline with the trend's projected breach, labels and fairness.", [ONE_MODEL, FEATURE], [
        row("Feature drift"),
        panel("status-history", "PSI per feature over time (heatmap)",
              "Each row a feature, each cell a window's PSI against the reference, coloured by tier: "
              "> 0.1 medium (yellow), > 0.2 high (orange), > 0.3 critical (red).",
              [target(f"vigil_feature_psi{{{f}}}", "{{feature}}")], w=24, h=10, thresholds=PSI),
        panel("status-history", "KS statistic per feature over time (heatmap)",
              "Two-sample KS statistic per window (> 0.1 medium, > 0.2 high, when p adjusted < 0.05).",
              [target(f"vigil_feature_ks_statistic{{{f}}}", "{{feature}}")], w=24, h=10, thresholds=KS),
        ts("PSI per feature", "The last closed window's PSI of each feature.",
           target(f"vigil_feature_psi{{{f}}}", "{{feature}}"), thresholds=PSI),
        panel("bargauge", "Features by PSI now", "Features sorted by their last window's PSI.",
              [target(f"sort_desc(vigil_feature_psi{{{f}}})", "{{feature}}", instant=True)], thresholds=PSI,
              defaults={"min": 0, "max": 0.5}),
        row("Prediction drift and performance"),
        ts("Prediction drift", "Jensen–Shannon divergence (natural log) of the prediction distribution and its "
           "distance sqrt(divergence).",
           target(f"vigil_prediction_js_divergence{{{m}}}", "JS divergence"),
           target(f"sqrt(vigil_prediction_js_divergence{{{m}}})", "JS distance"), thresholds=JS_DISTANCE),
        ts("Performance against baseline, with the trend's projection",
           "The window's metrics, the baseline they are judged against, the minimum acceptable value, and the "
           "value the least-squares trend over the last 7 windows projects 7 windows ahead.",
           target(f"vigil_model_performance{{{m}}}", "{{metric}}"),
           target(f"vigil_model_performance_baseline{{{m}}}", "{{metric}} baseline"),
           target(f"vigil_model_performance_min_acceptable{{{m}}}", "{{metric}} minimum acceptable"),
           target(f"vigil_model_performance_projected{{{m}}}", "{{metric}} projected (7 windows)"),
           defaults={"custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 0, "showPoints": "never",
                                "spanNulls": True, "thresholdsStyle": {"mode": "off"}}},
           overrides=[{"matcher": {"id": "byRegexp", "options": ".*(baseline|minimum|projected).*"},
                       "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}]}]),
        stat("Degradation from baseline", "Baseline − window metric, for metrics where higher is better "
             "(> 0.03 medium, > 0.05 high, > 0.10 critical).",
             target(f'vigil_model_performance_baseline{{{m},metric=~"accuracy|precision|recall|f1|f1_macro"}} '
                    f"- on (model_id, metric) vigil_model_performance{{{m}}}", "{{metric}}"),
             w=8, thresholds=[(None, "green"), (0.03, "yellow"), (0.05, "orange"), (0.10, "red")]),
        stat("Labels waiting", "Predictions waiting for their ground-truth label in the join.",
             target(f"sum(vigil_labels_pending{{{m}}})", "pending"), w=8),
        stat("Labels joined / s", "Labels matched to their prediction in time to count.",
             target(f"sum(rate(vigil_labels_matched_total{{{m}}}[5m]))", "matched"), w=8, unit="ops"),
        ts("Labels late and unmatched", "Labels after label_wait_seconds (not counted) and labels whose "
           "prediction never came.",
           target(f"sum(rate(vigil_labels_late_total{{{m}}}[5m]))", "late"),
           target(f"sum(rate(vigil_labels_unmatched_total{{{m}}}[5m]))", "unmatched"), unit="ops"),
        ts("Fairness gap", "Per segment attribute: demographic parity and equalized-odds differences.",
           target(f"vigil_fairness_gap{{{m}}}", "{{attribute}} {{metric}}"), thresholds=FAIRNESS),
    ])


def oversight() -> dict:
    m = 'model_id=~"$model_id"'
    return dashboard("vigil-oversight", "Vigil — human oversight",
                     "Are reviewers reviewing, or rubber-stamping? Override rates and the oversight findings.",
                     [OVERSIGHT_MODEL], [
        row("Override rate"),
        ts("Override rate", "Share of reviews in which the final human decision differs from the AI's, over "
           "the trailing 7 days, evaluated each event-time hour (< 2%: override_rate_low).",
           target(f"vigil_override_rate{{{m}}}", "{{model_id}}"), unit="percentunit", thresholds=OVERRIDE, w=16),
        stat("Override rate now", "The last evaluation's override rate.",
             target(f"vigil_override_rate{{{m}}}", "{{model_id}}"), unit="percentunit", thresholds=OVERRIDE,
             w=8, h=8),
        ts("Reviews ingested / s", "Review events accepted by ingest.",
           target(f'sum by (model_id) (rate(vigil_events_ingested_total{{kind="reviews",{m}}}[5m]))',
                  "{{model_id}}"), unit="ops"),
        ts("Reviews processed / s", "Review events the oversight workers counted.",
           target('sum by (topic) (rate(vigil_stream_events_total{service="oversight"}[5m]))', "{{topic}}"),
           unit="ops"),
        panel("bargauge", "Oversight alerts fired (time range)", "override_rate_low, reviewer_rubber_stamping, "
              "workload_pressure and review_coverage_gap alerts opened in the time range.",
              [target(f'sum by (kind) (increase(vigil_alerts_fired_total{{kind=~"{OVERSIGHT_KINDS}"}}[$__range]))',
                      "{{kind}}", instant=True)], w=24, h=6),
    ])


def vendors() -> dict:
    v = 'vendor=~"$vendor"'
    return dashboard("vigil-vendors", "Vigil — vendor SLAs",
                     "Third-party AI components against their contracted SLAs: latency quantiles and compliance "
                     "per term over the trailing period.", [VENDOR], [
        row("Compliance"),
        panel("state-timeline", "SLA compliance per term", "1 when the vendor meets the term over the trailing "
              "period (accuracy within tolerance, p95/p99 within 1.2 × contracted, uptime).",
              [target(f"vigil_vendor_sla_compliant{{{v}}}", "{{vendor}} {{sla}}")], w=24, h=7,
              thresholds=[(None, "red"), (1, "green")],
              defaults={"mappings": [{"type": "value", "options": {"0": {"text": "violation", "color": "red"},
                                                                   "1": {"text": "ok", "color": "green"}}}]}),
        stat("Terms in violation", "SLA terms each vendor is failing now.",
             target(f"sum by (vendor) (1 - vigil_vendor_sla_compliant{{{v}}})", "{{vendor}}"), w=8, h=8,
             thresholds=[(None, "green"), (1, "red")]),
        ts("Latency quantiles", "p50/p95/p99 of the vendor's call latency over the trailing period (sketch "
           "with at most 1% relative error).",
           target(f"vigil_vendor_latency_ms{{{v}}}", "{{vendor}} {{quantile}}"), unit="ms", w=16),
        panel("bargauge", "Vendor alerts fired (time range)", "vendor_sla_violation and vendor_sla_persistent "
              "alerts opened in the time range.",
              [target('sum by (kind) (increase(vigil_alerts_fired_total{kind=~"vendor_sla_.*"}[$__range]))',
                      "{{kind}}", instant=True)], w=24, h=5),
    ])


def health() -> dict:
    return dashboard("vigil-health", "Vigil — health",
                     "Vigil itself: services up, consumer lag, throughput, rejects, dead letters, "
                     "notifications, latencies.", [], [
        row("Services"),
        panel("state-timeline", "Services up", "Prometheus scrape status per service.",
              [target('up{job="vigil"}', "{{service}}")], w=24, h=5, thresholds=UP,
              defaults={"mappings": UP_MAPPINGS}),
        ts("Consumer lag", "Records in each input log past what its consumer applied (drift, oversight, "
           "alerts). Growing lag: the workers fall behind (scale them out).",
           target("vigil:consumer_lag:sum", "{{service}} {{topic}}")),
        ts("Stream throughput", "Input events the stream workers count, per service and topic.",
           target("sum by (service, topic) (rate(vigil_stream_events_total[5m]))", "{{service}} {{topic}}"),
           unit="ops"),
        row("Input"),
        ts("Ingested / s by kind", "Events acknowledged by the broker.",
           target("sum by (kind) (vigil:events_ingested:rate5m)", "{{kind}}"), unit="ops"),
        ts("Rejected / s by reason", "Events or requests ingest refused (invalid -> 422, unavailable -> 503, ...).",
           target("vigil:events_rejected:rate5m", "{{kind}} {{reason}}"), unit="ops"),
        ts("Duplicates / s", "Events ingest had already accepted (same idempotency key): retries of clients.",
           target("sum by (kind) (rate(vigil_events_duplicate_total[5m]))", "{{kind}}"), unit="ops"),
        ts("Dead letters / s", "Records or events the stream workers sent to vigil.deadletter, by reason.",
           target("vigil:deadletter:rate5m", "{{service}} {{reason}}"), unit="ops"),
        ts("Ingest publish latency", "From a validated request to the broker's acknowledgement (acks=all).",
           target("histogram_quantile(0.5, sum by (le) (rate(vigil_ingest_publish_seconds_bucket[5m])))", "p50"),
           target("histogram_quantile(0.99, sum by (le) (rate(vigil_ingest_publish_seconds_bucket[5m])))", "p99"),
           unit="s"),
        ts("Predictions waiting for labels", "Pending rows in the drift workers' label join.",
           target("sum(vigil_labels_pending)", "pending")),
        row("Alerts and notifications"),
        ts("Notifications by channel and outcome", "sent, retry (channel down, kept in the outbox) and failed.",
           target("sum by (channel, outcome) (rate(vigil_notifications_total[5m]))", "{{channel}} {{outcome}}"),
           unit="ops"),
        ts("Notification failure ratio", "Share of attempts that did not get through, per channel "
           "(> 20% for 10 min: VigilNotificationsFailing).",
           target("vigil:notification_failure_ratio:rate15m", "{{channel}}"), unit="percentunit",
           thresholds=[(None, "green"), (0.2, "red")]),
        ts("Alerts firing by severity", "Alerts firing now.",
           target("sum by (severity) (vigil_alerts_active)", "{{severity}}"), overrides=severity_overrides()),
        ts("Detection latency", "Window close to alert published.",
           target("vigil:detection_latency_seconds:p50", "p50"), target("vigil:detection_latency_seconds:p99", "p99"),
           unit="s"),
    ])


DASHBOARDS = {"vigil-overview": overview, "vigil-model-drift": model_drift, "vigil-oversight": oversight,
              "vigil-vendors": vendors, "vigil-health": health}


def render(name: str) -> str:
    return json.dumps(DASHBOARDS[name](), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name in DASHBOARDS:
        (OUT / f"{name}.json").write_text(render(name))
        print(f"wrote {OUT / name}.json")


if __name__ == "__main__":
    main()
