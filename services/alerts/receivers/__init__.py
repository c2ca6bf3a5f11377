"""Receivers: one per file, one contract (Alertmanager's `Notifier`): `send` returns an Outcome.

A notification (a dict, as the dispatcher keeps it in its Redis outbox) is::

    {"id": str, "receiver": str, "type": "slack" | "pagerduty" | "webhook" | "email",
     "group_key": "<receiver>/<model_id>", "model_id": str,
     "status": "firing" | "resolved",          # firing when any alert of it fires
     "alerts": [Alert JSON + "latest" (Finding JSON) + "revision"], # PagerDuty: exactly one
     "model": {"owners": [...], "labels": {...}, "risk_tier": str, "runbook_url": str | None},
     "created_at": float, "attempts": int}

Receivers only build the request and classify the answer: 2xx sent; 429 retryable after
`Retry-After`; 5xx and connection errors retryable; other 4xx permanent. Retry and
idempotency live in the dispatcher. Secrets (URLs, keys) never reach an error text.
"""

from __future__ import annotations

import asyncio
import time
from email.utils import parsedate_to_datetime
from typing import NamedTuple, Protocol

import httpx
import orjson

from services.alerts.routing import Receiver


class Outcome(NamedTuple):
    """`error` None = delivered. Otherwise `retryable` says whether to try again, not before `retry_after` s."""

    retryable: bool = False
    error: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


SENT = Outcome()


class Notifier(Protocol):
    receiver: Receiver

    async def send(self, notification: dict) -> Outcome: ...


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None when absent or bad.

    >>> retry_after_seconds("3")
    3.0
    >>> retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412485.0)
    5.0
    >>> retry_after_seconds("soon") is None
    True
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def classify(response: httpx.Response) -> Outcome:
    """Alertmanager's `RetryFunc`: 2xx sent, 429 and 5xx retryable, other statuses permanent."""
    body = response.text if response.content else ""
    return classify_status(response.status_code, response.headers.get("retry-after"), body)


def classify_status(status: int, retry_after: str | None, body: str = "") -> Outcome:
    """`classify` from the parts of an answer (any HTTP client).

    >>> classify_status(429, "2", "slow down")
    Outcome(retryable=True, error='HTTP 429: slow down', retry_after=2.0)
    >>> classify_status(403, None).retryable
    False
    """
    if 200 <= status < 300:
        return SENT
    body = body[:200].replace("\n", " ")
    error = f"HTTP {status}" + (f": {body}" if body else "")
    if status == 429 or status >= 500:
        return Outcome(True, error, retry_after_seconds(retry_after))
    return Outcome(False, error, None)


def redact(text: str, *secrets: str | None) -> str:
    """Text with every secret replaced by '***'.

    >>> redact("POST https://hooks.example/T0/abc failed", "https://hooks.example/T0/abc")
    'POST *** failed'
    """
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


async def post_json(client, url: str, body: dict, *secrets: str | None) -> Outcome:
    """POST body as JSON and classify the answer; transport errors are retryable, named without the URL.

    `client` is an `httpx.AsyncClient` or an `aiohttp.ClientSession` (the dispatcher's own
    default: several times cheaper per request than httpx here).
    """
    if isinstance(client, httpx.AsyncClient):
        try:
            response = await client.post(url, json=body)
        except httpx.TransportError as exc:
            return Outcome(True, redact(f"{type(exc).__name__}: {exc}", url, *secrets), None)
        return classify(response)
    import aiohttp

    try:
        async with client.post(url, data=orjson.dumps(body), headers=_JSON) as response:
            text = await response.text(errors="replace")
            return classify_status(response.status, response.headers.get("Retry-After"), text)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        return Outcome(True, redact(f"{type(exc).__name__}: {exc}", url, *secrets), None)


_JSON = {"Content-Type": "application/json"}


def build(receiver: Receiver, client) -> Notifier:
    """The notifier for a configured receiver."""
    from services.alerts.receivers import email, pagerduty, slack, webhook

    kinds = {"slack": slack.Slack, "pagerduty": pagerduty.PagerDuty, "webhook": webhook.Webhook,
             "email": email.Email}
    if receiver.type == "email":
        return email.Email(receiver)
    return kinds[receiver.type](receiver, client)


def key_numbers(metrics: dict | None, limit: int = 6) -> list[tuple[str, str]]:
    """The first `limit` metrics of a finding, formatted for people.

    >>> key_numbers({"psi": 0.31234, "ks_p_value": 1.2e-7, "n": 5000, "x": None})
    [('psi', '0.3123'), ('ks_p_value', '1.2e-07'), ('n', '5000'), ('x', '-')]
    """
    out = []
    for name, value in list((metrics or {}).items())[:limit]:
        if value is None:
            text = "-"
        elif isinstance(value, float) and not value.is_integer():
            text = f"{value:.4g}" if abs(value) >= 1e-3 else f"{value:.2g}"
        else:
            text = str(int(value)) if isinstance(value, float) else str(value)
        out.append((str(name), text))
    return out
