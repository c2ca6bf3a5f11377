"""The Prometheus metrics of the contract, defined once on one registry.

Label cardinality stays bounded: model, feature, vendor, severity, kind, channel — never
per event or per reviewer.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_INGESTED = Counter("vigil_events_ingested_total", "Events accepted and acknowledged by the broker.",
                          ["kind", "model_id"], registry=REGISTRY)
EVENTS_REJECTED = Counter("vigil_events_rejected_total", "Events or requests refused, by reason.",
                          ["kind", "reason"], registry=REGISTRY)
EVENTS_DUPLICATE = Counter("vigil_events_duplicate_total", "Events already seen (same idempotency key).",
                           ["kind"], registry=REGISTRY)
FEATURE_PSI = Gauge("vigil_feature_psi", "PSI of a feature in the last closed window.",
                    ["model_id", "feature"], registry=REGISTRY)
FEATURE_KS = Gauge("vigil_feature_ks_statistic", "KS statistic of a feature in the last closed window.",
                   ["model_id", "feature"], registry=REGISTRY)
PREDICTION_JS = Gauge("vigil_prediction_js_divergence", "Jensen-Shannon divergence of predictions.",
                      ["model_id"], registry=REGISTRY)
MODEL_PERFORMANCE = Gauge("vigil_model_performance", "Performance metric of the last evaluated window.",
                          ["model_id", "metric"], registry=REGISTRY)
MODEL_PERFORMANCE_BASELINE = Gauge("vigil_model_performance_baseline", "The baseline a window's performance is "
                                   "judged against (ModelSpec baseline_metrics, or the first labelled window).",
                                   ["model_id", "metric"], registry=REGISTRY)
MODEL_PERFORMANCE_PROJECTED = Gauge("vigil_model_performance_projected", "The performance trend's value projected "
                                    "7 windows ahead (least squares over the last 7 windows).",
                                    ["model_id", "metric"], registry=REGISTRY)
MODEL_PERFORMANCE_MIN = Gauge("vigil_model_performance_min_acceptable", "The value the trend's projected breach is "
                              "measured against (ModelSpec min_acceptable, else the baseline 0.05 worse).",
                              ["model_id", "metric"], registry=REGISTRY)
OVERRIDE_RATE = Gauge("vigil_override_rate", "Human override rate over the trailing period.",
                      ["model_id"], registry=REGISTRY)
VENDOR_LATENCY = Gauge("vigil_vendor_latency_ms", "Vendor latency quantiles over the trailing period.",
                       ["vendor", "quantile"], registry=REGISTRY)
VENDOR_SLA_COMPLIANT = Gauge("vigil_vendor_sla_compliant", "1 when the vendor meets the SLA term, else 0.",
                             ["vendor", "sla"], registry=REGISTRY)
FAIRNESS_GAP = Gauge("vigil_fairness_gap", "Fairness gap across groups of a segment attribute.",
                     ["model_id", "attribute", "metric"], registry=REGISTRY)
ALERTS_FIRED = Counter("vigil_alerts_fired_total", "Alerts fired.", ["severity", "kind"], registry=REGISTRY)
ALERTS_ACTIVE = Gauge("vigil_alerts_active", "Alerts firing now.", ["severity"], registry=REGISTRY)
NOTIFICATIONS = Counter("vigil_notifications_total", "Notification attempts by outcome.",
                        ["channel", "outcome"], registry=REGISTRY)
DETECTION_LATENCY = Histogram("vigil_detection_latency_seconds", "Window close to alert published.",
                              registry=REGISTRY,
                              buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
LATE_EVENTS = Counter("vigil_late_events_total", "Events that arrived after their window closed (counted, not added).",
                      ["model_id"], registry=REGISTRY)
STREAM_EVENTS = Counter("vigil_stream_events_total", "Input events a stream worker counted, per input topic.",
                        ["service", "topic"], registry=REGISTRY)
LABELS_MATCHED = Counter("vigil_labels_matched_total", "Labels joined to their prediction in time to count.",
                         ["model_id"], registry=REGISTRY)
LABELS_LATE = Counter("vigil_labels_late_total", "Labels later than their window's label_wait (not counted).",
                      ["model_id"], registry=REGISTRY)
LABELS_UNMATCHED = Counter("vigil_labels_unmatched_total", "Labels whose prediction never came.",
                           ["model_id"], registry=REGISTRY)
LABELS_PENDING = Gauge("vigil_labels_pending", "Predictions waiting for their label in the drift worker's join.",
                       ["model_id"], registry=REGISTRY)
DEADLETTERS = Counter("vigil_deadletter_total", "Input records or events sent to vigil.deadletter.",
                      ["service", "reason"], registry=REGISTRY)
CONSUMER_LAG = Gauge("vigil_consumer_lag", "Records in the input logs past what this consumer has applied, "
                     "over its assigned partitions.", ["service", "topic"], registry=REGISTRY)
PUBLISH_SECONDS = Histogram("vigil_ingest_publish_seconds", "Time from validated request to broker ack.",
                            registry=REGISTRY, buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))

CONTRACT_METRICS = (
    "vigil_events_ingested_total", "vigil_events_rejected_total", "vigil_feature_psi",
    "vigil_feature_ks_statistic", "vigil_prediction_js_divergence", "vigil_model_performance",
    "vigil_override_rate", "vigil_vendor_latency_ms", "vigil_vendor_sla_compliant",
    "vigil_fairness_gap", "vigil_alerts_fired_total", "vigil_alerts_active",
    "vigil_notifications_total", "vigil_detection_latency_seconds",
)


def exposition() -> tuple[bytes, str]:
    """The registry in Prometheus text format, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
