"""Generic JSON webhook, shaped like Alertmanager's: version, status, receiver, groupKey, alerts[]."""

from __future__ import annotations

import httpx

from services.alerts.receivers import Outcome, post_json
from services.alerts.routing import Receiver

VERSION = "1"


def payload(notification: dict) -> dict:
    """The POST body: the group's alerts with their latest finding, and the model.

    >>> body = payload({"id": "n1", "receiver": "hook", "group_key": "hook/fraud", "model_id": "fraud",
    ...                 "status": "firing", "model": {}, "alerts": [{"alert_id": "a1", "status": "firing"}]})
    >>> sorted(body)
    ['alerts', 'groupKey', 'model', 'model_id', 'notification_id', 'receiver', 'status', 'truncatedAlerts', 'version']
    """
    return {
        "version": VERSION,
        "notification_id": notification["id"],
        "status": notification["status"],
        "receiver": notification["receiver"],
        "groupKey": notification["group_key"],
        "model_id": notification["model_id"],
        "model": notification.get("model") or {},
        "truncatedAlerts": 0,
        "alerts": notification["alerts"],
    }


class Webhook:
    def __init__(self, receiver: Receiver, client: "httpx.AsyncClient | aiohttp.ClientSession"):
        self.receiver, self.client = receiver, client

    def __repr__(self) -> str:
        return f"Webhook(name={self.receiver.name!r})"

    async def send(self, notification: dict) -> Outcome:
        return await post_json(self.client, self.receiver.url.get_secret_value(), payload(notification))
