"""PagerDuty Events API v2: one event per alert, `dedup_key` = the alert's fingerprint.

A firing alert is `event_action: trigger` (a repeat re-triggers the same incident, which
PagerDuty de-duplicates); a resolved one is `resolve` with the same dedup_key.
"""

from __future__ import annotations

import httpx

from services.alerts.receivers import Outcome, key_numbers, post_json
from services.alerts.routing import Receiver

SUMMARY_MAX = 1024
SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}


def payload(notification: dict, routing_key: str) -> dict:
    """The enqueue body for the notification's one alert.

    >>> n = {"model_id": "fraud", "status": "firing", "model": {"owners": ["ana"], "labels": {"team": "risk"}},
    ...      "alerts": [{"alert_id": "a1", "fingerprint": "fp1", "severity": "high", "status": "firing",
    ...                  "kind": "data_drift", "title": "t", "summary": "s" * 2000, "model_id": "fraud",
    ...                  "latest": {"metrics": {"psi": 0.25}}}]}
    >>> body = payload(n, "key")
    >>> body["event_action"], body["dedup_key"], body["payload"]["severity"], len(body["payload"]["summary"])
    ('trigger', 'fp1', 'error', 1024)
    >>> payload({**n, "status": "resolved"}, "key")
    {'routing_key': 'key', 'event_action': 'resolve', 'dedup_key': 'fp1'}
    """
    (alert,) = notification["alerts"]
    if notification["status"] == "resolved" or alert.get("status") == "resolved":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": alert["fingerprint"]}
    model = notification.get("model") or {}
    latest = alert.get("latest") or {}
    summary = f"[{alert['severity'].upper()}] {alert.get('title') or alert['kind']}: {alert.get('summary') or ''}"
    summary = summary if len(summary) <= SUMMARY_MAX else summary[: SUMMARY_MAX - 1] + "…"
    details = {
        "alert_id": alert["alert_id"], "fingerprint": alert["fingerprint"], "model_id": alert["model_id"],
        "kind": alert["kind"], "severity": alert["severity"], "occurrences": alert.get("occurrences", 1),
        "first_seen": alert.get("first_seen"), "last_seen": alert.get("last_seen"),
        "owners": model.get("owners") or [], "risk_tier": model.get("risk_tier"),
        "labels": model.get("labels") or {}, "metrics": dict(key_numbers(latest.get("metrics"), limit=20)),
        "evidence": latest.get("evidence") or {}, "finding_id": latest.get("finding_id"),
        "window": [latest.get("window_start"), latest.get("window_end")],
    }
    body = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": alert["fingerprint"],
        "payload": {
            "summary": summary,
            "source": f"vigil/{alert['model_id']}",
            "severity": SEVERITY[alert["severity"]],
            "component": latest.get("feature") or latest.get("vendor") or alert["model_id"],
            "group": alert["model_id"],
            "class": alert["kind"],
            "custom_details": details,
        },
        "client": "Vigil",
    }
    if model.get("runbook_url"):
        body["links"] = [{"href": model["runbook_url"], "text": "Runbook"}]
    return body


class PagerDuty:
    def __init__(self, receiver: Receiver, client: "httpx.AsyncClient | aiohttp.ClientSession"):
        self.receiver, self.client = receiver, client

    def __repr__(self) -> str:
        return f"PagerDuty(name={self.receiver.name!r})"

    async def send(self, notification: dict) -> Outcome:
        key = self.receiver.routing_key.get_secret_value()
        url = self.receiver.url.get_secret_value()
        return await post_json(self.client, url, payload(notification, key), key)
