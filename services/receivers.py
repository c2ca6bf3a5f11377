"""Local stand-ins for Slack, PagerDuty, a JSON webhook and an SMTP server: for tests, and for
`vigil demo`, which shows what they received.

Each HTTP receiver is a real `http.server` on a free loopback port, in a daemon thread, so
sync and async tests alike can use it. It VALIDATES the exact payload shape of the service it
stands for, records every request, and can be scripted to fail:

    with SlackReceiver() as slack:                      # or the `slack_receiver` fixture
        settings = Settings(slack_webhook_url=slack.url, ...)
        slack.fail_for(30.0)                            # answer 500 for the next 30 s
        slack.script(429, headers={"Retry-After": "2"}) # the next request gets exactly this
        ...
        slack.wait_for(1, timeout=10)                   # block until one accepted request
        assert slack.errors == []                       # no request had a bad shape
        body = slack.accepted[0].body                   # the parsed JSON

Records (`Request`) hold `time` (time.time() at arrival), `path`, `headers`, `body` (parsed
JSON or None), `status` (what was answered) and `problems` (the shape violations found; a
request with problems is answered 400 like the real service and listed in `errors`).
`requests` has every request, `accepted` only those answered 2xx.

- `SlackReceiver`: incoming webhook. `text` (string) and/or `blocks`; blocks of known types
  (header, section, context, divider, actions, image), header plain_text <= 150 characters,
  section text <= 3000 or 1-10 fields of <= 2000, context 1-10 elements, at most 50 blocks,
  block_id <= 255. Answers 200 "ok" (text/plain), as Slack does.
- `PagerDutyReceiver`: Events API v2 `/v2/enqueue`. Top-level keys from routing_key,
  event_action, dedup_key, payload, images, links, client, client_url; event_action one of
  trigger / acknowledge / resolve; dedup_key <= 255; trigger needs payload.summary (1-1024
  characters), payload.source, payload.severity in critical / error / warning / info,
  optional component, group, class (strings), custom_details (object), timestamp;
  acknowledge/resolve need dedup_key. Answers 202 {"status": "success", "message": "Event
  processed", "dedup_key": ...} like PagerDuty, 400 {"status": "invalid event", "errors": [...]}.
  `url` is the full enqueue URL (for `Settings.pagerduty_url`).
- `WebhookReceiver`: Vigil's generic webhook (version, status, receiver, groupKey, alerts[]).
- `SmtpReceiver`: an aiosmtpd server recording `messages` (email.message.EmailMessage, with
  `envelope_from`/`envelope_to` kept in `envelopes`); `url(to=..., sender=...)` gives a
  `VIGIL_SMTP_URL`.

Fixtures of the same names (`slack_receiver`, `pagerduty_receiver`, `webhook_receiver`,
`smtp_receiver`) start a fresh one per test: `from tests.receivers import slack_receiver`.
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


SLACK_BLOCK_TYPES = {"header", "section", "context", "divider", "actions", "image"}
PD_SEVERITIES = {"critical", "error", "warning", "info"}
PD_ACTIONS = {"trigger", "acknowledge", "resolve"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Request:
    time: float
    path: str
    headers: dict[str, str]
    body: Any
    status: int = 0
    problems: list[str] = field(default_factory=list)


# -- shape validators (pure; unit tests call them directly) ---------------------------------
def _text_object(obj: Any, where: str, limit: int, kinds=("plain_text", "mrkdwn")) -> list[str]:
    if not isinstance(obj, dict):
        return [f"{where}: must be a text object"]
    out = []
    if obj.get("type") not in kinds:
        out.append(f"{where}.type: {obj.get('type')!r} not in {kinds}")
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        out.append(f"{where}.text: must be a non-empty string")
    elif len(text) > limit:
        out.append(f"{where}.text: {len(text)} characters > {limit}")
    extra = set(obj) - {"type", "text", "emoji", "verbatim"}
    if extra:
        out.append(f"{where}: unknown keys {sorted(extra)}")
    return out


def slack_problems(body: Any) -> list[str]:
    """Violations of Slack's incoming-webhook / Block Kit message shape ([] = valid)."""
    if not isinstance(body, dict):
        return ["body: must be a JSON object"]
    out = []
    extra = set(body) - {"text", "blocks", "channel", "username", "icon_emoji", "icon_url", "attachments",
                         "thread_ts", "mrkdwn", "unfurl_links", "unfurl_media"}
    if extra:
        out.append(f"body: unknown keys {sorted(extra)}")
    if "text" not in body and "blocks" not in body:
        out.append("body: needs text or blocks")
    if "text" in body and (not isinstance(body["text"], str) or not body["text"]):
        out.append("text: must be a non-empty string")
    blocks = body.get("blocks", [])
    if not isinstance(blocks, list):
        return out + ["blocks: must be a list"]
    if len(blocks) > 50:
        out.append(f"blocks: {len(blocks)} > 50")
    for i, b in enumerate(blocks):
        w = f"blocks[{i}]"
        if not isinstance(b, dict) or b.get("type") not in SLACK_BLOCK_TYPES:
            out.append(f"{w}.type: {b.get('type') if isinstance(b, dict) else b!r} not a block type")
            continue
        if len(str(b.get("block_id", ""))) > 255:
            out.append(f"{w}.block_id: > 255 characters")
        t = b["type"]
        if t == "header":
            out += _text_object(b.get("text"), f"{w}.text", 150, kinds=("plain_text",))
        elif t == "section":
            if "text" not in b and "fields" not in b:
                out.append(f"{w}: needs text or fields")
            if "text" in b:
                out += _text_object(b["text"], f"{w}.text", 3000)
            if "fields" in b:
                fields = b["fields"]
                if not isinstance(fields, list) or not 1 <= len(fields) <= 10:
                    out.append(f"{w}.fields: 1 to 10 text objects")
                else:
                    for j, f in enumerate(fields):
                        out += _text_object(f, f"{w}.fields[{j}]", 2000)
        elif t == "context":
            elements = b.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                out.append(f"{w}.elements: 1 to 10 elements")
            else:
                for j, e in enumerate(elements):
                    if isinstance(e, dict) and e.get("type") == "image":
                        continue
                    out += _text_object(e, f"{w}.elements[{j}]", 2000)
    return out


def pagerduty_problems(body: Any) -> list[str]:
    """Violations of the PagerDuty Events API v2 enqueue shape ([] = valid)."""
    if not isinstance(body, dict):
        return ["body: must be a JSON object"]
    out = []
    extra = set(body) - {"routing_key", "event_action", "dedup_key", "payload", "images", "links",
                         "client", "client_url"}
    if extra:
        out.append(f"body: unknown keys {sorted(extra)}")
    if not isinstance(body.get("routing_key"), str) or not body.get("routing_key"):
        out.append("routing_key: required string")
    action = body.get("event_action")
    if action not in PD_ACTIONS:
        out.append(f"event_action: {action!r} not in {sorted(PD_ACTIONS)}")
    dedup = body.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or not 0 < len(dedup) <= 255):
        out.append("dedup_key: 1 to 255 characters")
    if action in ("acknowledge", "resolve"):
        if dedup is None:
            out.append(f"dedup_key: required for {action}")
        return out
    payload = body.get("payload")
    if not isinstance(payload, dict):
        return out + ["payload: required object for trigger"]
    extra = set(payload) - {"summary", "source", "severity", "timestamp", "component", "group", "class",
                            "custom_details"}
    if extra:
        out.append(f"payload: unknown keys {sorted(extra)}")
    summary = payload.get("summary")
    if not isinstance(summary, str) or not 1 <= len(summary) <= 1024:
        out.append(f"payload.summary: 1 to 1024 characters (got {len(summary) if isinstance(summary, str) else summary!r})")
    if not isinstance(payload.get("source"), str) or not payload.get("source"):
        out.append("payload.source: required string")
    if payload.get("severity") not in PD_SEVERITIES:
        out.append(f"payload.severity: {payload.get('severity')!r} not in {sorted(PD_SEVERITIES)}")
    for key in ("component", "group", "class", "timestamp"):
        if key in payload and not isinstance(payload[key], str):
            out.append(f"payload.{key}: must be a string")
    if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
        out.append("payload.custom_details: must be an object")
    for key in ("links", "images"):
        if key in body and not isinstance(body[key], list):
            out.append(f"{key}: must be a list")
    return out


def webhook_problems(body: Any) -> list[str]:
    """Violations of Vigil's generic webhook shape ([] = valid)."""
    if not isinstance(body, dict):
        return ["body: must be a JSON object"]
    out = [f"{k}: required" for k in ("version", "status", "receiver", "groupKey", "alerts") if k not in body]
    if body.get("status") not in ("firing", "resolved"):
        out.append(f"status: {body.get('status')!r}")
    alerts = body.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        out.append("alerts: a non-empty list")
    else:
        for i, a in enumerate(alerts):
            for k in ("alert_id", "fingerprint", "severity", "status", "model_id", "kind"):
                if k not in a:
                    out.append(f"alerts[{i}].{k}: required")
    return out


# -- the HTTP server -----------------------------------------------------------------------
class HttpReceiver:
    """A scripted, validating HTTP endpoint; subclasses set `validate` and `ok_response`."""

    path = "/"

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[Request] = []
        self._lock = threading.Condition()
        self._fail_until = 0.0
        self._fail_status = 500
        self._script: list[tuple[int, dict, bytes]] = []
        self._server: ThreadingHTTPServer | None = None

    # subclasses
    def validate(self, body: Any) -> list[str]:
        return []

    def ok_response(self, body: Any) -> tuple[int, dict, bytes]:
        return 200, {"Content-Type": "text/plain"}, b"ok"

    def bad_response(self, problems: list[str]) -> tuple[int, dict, bytes]:
        return 400, {"Content-Type": "text/plain"}, "; ".join(problems).encode()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    # scripting
    def fail_for(self, seconds: float, status: int = 500) -> None:
        """Answer `status` to every request for the next `seconds`."""
        self._fail_until, self._fail_status = time.time() + seconds, status

    def script(self, status: int, headers: dict | None = None, body: bytes = b"") -> None:
        """Queue one answer: the next request not failed by `fail_for` gets exactly this."""
        self._script.append((status, headers or {}, body))

    # results
    @property
    def accepted(self) -> list[Request]:
        return [r for r in self.requests if 200 <= r.status < 300]

    @property
    def errors(self) -> list[str]:
        return [p for r in self.requests for p in r.problems]

    def wait_for(self, n: int, timeout: float = 10.0, accepted: bool = True) -> list[Request]:
        """Block until `n` accepted (or any, with accepted=False) requests arrived; AssertionError on timeout."""
        deadline = time.time() + timeout
        with self._lock:
            while True:
                got = self.accepted if accepted else list(self.requests)
                if len(got) >= n:
                    return got
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError(f"{type(self).__name__}: {len(got)} of {n} requests after {timeout}s; "
                                         f"statuses {[r.status for r in self.requests]}, errors {self.errors}")
                self._lock.wait(min(left, 0.05))

    async def await_for(self, n: int, timeout: float = 10.0, accepted: bool = True) -> list[Request]:
        """`wait_for` for async tests (does not block the event loop)."""
        import asyncio

        return await asyncio.to_thread(self.wait_for, n, timeout, accepted)

    # serving
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        req = Request(time.time(), handler.path, {k.lower(): v for k, v in handler.headers.items()}, body)
        if req.time < self._fail_until:
            status, headers, out = self._fail_status, {}, b"scripted failure"
        elif self._script:
            status, headers, out = self._script.pop(0)
        else:
            req.problems = ([] if handler.path == self.path else [f"path {handler.path!r} != {self.path!r}"])
            if raw and body is None:
                req.problems.append("body: not JSON")
            req.problems += self.validate(body)
            status, headers, out = self.bad_response(req.problems) if req.problems else self.ok_response(body)
        req.status = status
        handler.send_response(status)
        for k, v in headers.items():
            handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(out)))
        handler.end_headers()
        handler.wfile.write(out)
        with self._lock:
            self.requests.append(req)
            self._lock.notify_all()

    def start(self) -> "HttpReceiver":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real services

            def setup(self):
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no delayed-ACK stalls

            def do_POST(self):  # noqa: N802
                owner._handle(self)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # the default 5 resets connections under load
            daemon_threads = True

            def handle_error(self, request, client_address):  # a client dropping keep-alive is no error
                import sys

                if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
                    super().handle_error(request, client_address)

        self._server = Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class SlackReceiver(HttpReceiver):
    path = "/services/T000/B000/XXXX"

    def validate(self, body: Any) -> list[str]:
        return slack_problems(body)

    def bad_response(self, problems: list[str]) -> tuple[int, dict, bytes]:
        return 400, {"Content-Type": "text/plain"}, b"invalid_blocks"


class PagerDutyReceiver(HttpReceiver):
    path = "/v2/enqueue"

    def validate(self, body: Any) -> list[str]:
        return pagerduty_problems(body)

    def ok_response(self, body: Any) -> tuple[int, dict, bytes]:
        out = {"status": "success", "message": "Event processed", "dedup_key": body.get("dedup_key") or "generated"}
        return 202, {"Content-Type": "application/json"}, json.dumps(out).encode()

    def bad_response(self, problems: list[str]) -> tuple[int, dict, bytes]:
        out = {"status": "invalid event", "message": "Event object is invalid", "errors": problems}
        return 400, {"Content-Type": "application/json"}, json.dumps(out).encode()

    def events(self, dedup_key: str | None = None) -> list[dict]:
        """Accepted event bodies, optionally of one dedup_key."""
        return [r.body for r in self.accepted if dedup_key is None or r.body.get("dedup_key") == dedup_key]


class WebhookReceiver(HttpReceiver):
    path = "/hook"

    def validate(self, body: Any) -> list[str]:
        return webhook_problems(body)


class SmtpReceiver:
    """aiosmtpd on a free port, in its own thread; records every message."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self._lock = threading.Condition()
        self._controller = None

    def url(self, to: str = "oncall@example.com", sender: str = "vigil@example.com") -> str:
        return f"smtp://127.0.0.1:{self.port}?from={sender}&to={to}"

    def start(self) -> "SmtpReceiver":
        from aiosmtpd.controller import Controller

        owner = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802
                msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
                with owner._lock:
                    owner.messages.append(msg)
                    owner.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
                    owner._lock.notify_all()
                return "250 Message accepted for delivery"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller:
            self._controller.stop()
            self._controller = None

    def wait_for(self, n: int, timeout: float = 10.0) -> list:
        deadline = time.time() + timeout
        with self._lock:
            while len(self.messages) < n:
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError(f"SMTP: {len(self.messages)} of {n} messages after {timeout}s")
                self._lock.wait(min(left, 0.05))
            return list(self.messages)

    async def await_for(self, n: int, timeout: float = 10.0) -> list:
        import asyncio

        return await asyncio.to_thread(self.wait_for, n, timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
