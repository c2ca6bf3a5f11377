"""Slack incoming webhook: `text` fallback plus Block Kit `blocks` (header, section, context).

One message per notification (a group of one model's alerts). Limits from Slack's Block Kit
reference are kept: header text <= 150 characters, section text <= 3000, at most 10 section
fields of <= 2000 characters, at most 10 context elements, at most 50 blocks.
"""

from __future__ import annotations

import httpx

from services.alerts.receivers import Outcome, key_numbers, post_json
from services.alerts.routing import Receiver

HEADER_MAX, SECTION_MAX, FIELD_MAX, FIELDS_MAX, CONTEXT_MAX, BLOCKS_MAX = 150, 3000, 2000, 10, 10, 50
EMOJI = {"critical": ":red_circle:", "high": ":large_orange_circle:", "medium": ":large_yellow_circle:",
         "low": ":white_circle:"}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _escape(text: str) -> str:
    """mrkdwn control characters (&, <, >) as Slack asks."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def title_of(notification: dict) -> str:
    alerts = notification["alerts"]
    firing = [a for a in alerts if a.get("status") != "resolved"]
    if notification["status"] == "resolved":
        return f"[RESOLVED] {notification['model_id']}: {len(alerts)} alert(s)"
    if len(alerts) == 1:
        a = alerts[0]
        return f"[{a['severity'].upper()}] {notification['model_id']}: {a.get('title') or a['kind']}"
    top = max(firing, key=lambda a: ("low", "medium", "high", "critical").index(a["severity"]))
    return f"[{top['severity'].upper()}] {notification['model_id']}: {len(firing)} alert(s) firing"


def payload(notification: dict, channel: str | None = None) -> dict:
    """The webhook body.

    >>> n = {"model_id": "fraud", "status": "firing", "model": {"owners": ["ana"], "runbook_url": None},
    ...      "alerts": [{"alert_id": "a1", "severity": "critical", "status": "firing", "kind": "data_drift",
    ...                  "title": "Drift of amount", "summary": "PSI 0.41", "occurrences": 3,
    ...                  "latest": {"metrics": {"psi": 0.41}, "feature": "amount"}}]}
    >>> body = payload(n)
    >>> body["text"], [b["type"] for b in body["blocks"]]
    ('[CRITICAL] fraud: Drift of amount\\n- critical Drift of amount (firing)', ['header', 'section', 'section', 'context'])
    """
    model = notification.get("model") or {}
    alerts = notification["alerts"]
    title = title_of(notification)
    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": _cut(title, HEADER_MAX),
                                                      "emoji": True}}]
    for a in alerts[: (BLOCKS_MAX - 3) // 2]:
        latest = a.get("latest") or {}
        state = "resolved" if a.get("status") == "resolved" else a["severity"]
        head = (f"{EMOJI.get(a['severity'], '')} *{_escape(a.get('title') or a['kind'])}*"
                f" — {_escape(state)}\n{_escape(a.get('summary') or '')}")
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(head, SECTION_MAX)}})
        fields = [f"*Severity*\n{a['severity']}", f"*Model*\n{_escape(a.get('model_id') or notification['model_id'])}",
                  f"*Kind*\n{a['kind']}", f"*Occurrences*\n{a.get('occurrences', 1)}"]
        if latest.get("feature"):
            fields.append(f"*Feature*\n{_escape(latest['feature'])}")
        if latest.get("vendor"):
            fields.append(f"*Vendor*\n{_escape(latest['vendor'])}")
        fields += [f"*{_escape(k)}*\n{v}" for k, v in key_numbers(latest.get("metrics"))]
        blocks.append({"type": "section", "fields": [{"type": "mrkdwn", "text": _cut(f, FIELD_MAX)}
                                                     for f in fields[:FIELDS_MAX]]})
    if len(alerts) > (BLOCKS_MAX - 3) // 2:
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": f"…and {len(alerts) - (BLOCKS_MAX - 3) // 2} more"}})
    context = []
    owners = ", ".join(model.get("owners") or []) or "none"
    context.append({"type": "mrkdwn", "text": _cut(f"Owners: {_escape(owners)}", FIELD_MAX)})
    if model.get("risk_tier"):
        context.append({"type": "mrkdwn", "text": f"Risk tier: {_escape(model['risk_tier'])}"})
    if model.get("runbook_url"):
        context.append({"type": "mrkdwn", "text": _cut(f"<{model['runbook_url']}|Runbook>", FIELD_MAX)})
    blocks.append({"type": "context", "elements": context[:CONTEXT_MAX]})
    lines = [title] + [f"- {a['severity']} {a.get('title') or a['kind']} ({a.get('status')})" for a in alerts]
    body = {"text": _cut("\n".join(lines), SECTION_MAX), "blocks": blocks[:BLOCKS_MAX]}
    if channel:
        body["channel"] = channel
    return body


class Slack:
    def __init__(self, receiver: Receiver, client: "httpx.AsyncClient | aiohttp.ClientSession"):
        self.receiver, self.client = receiver, client

    def __repr__(self) -> str:
        return f"Slack(name={self.receiver.name!r})"

    async def send(self, notification: dict) -> Outcome:
        url = self.receiver.url.get_secret_value()
        return await post_json(self.client, url, payload(notification, self.receiver.channel))
