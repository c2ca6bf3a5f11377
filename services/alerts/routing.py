"""Routing: which receivers an alert goes to, and with what timers. Pure: no I/O but reading the file.

A YAML file in the spirit of Prometheus Alertmanager (its `dispatch/route.go`): a tree of
routes, each with `match` (equality) and `match_re` (anchored regular expressions) on the
alert's `severity`, `model_id`, `kind`, `feature` and the model's labels (`team: fraud`);
an alert walks the tree depth first, the first matching child wins unless it says
`continue: true`, and when no child matches the route itself is the answer. A child inherits
`receiver`, `group_wait`, `group_interval` and `repeat_interval` from its parent. A route
whose receiver is `null` sends nothing (the defaults route low alerts there).

```yaml
route:                      # the root matches every alert
  receiver: null            # default: record only
  group_wait: 30s           # durations: 500ms, 30s, 5m, 4h, 1h30m, or a number of seconds
  group_interval: 5m
  repeat_interval: 4h
  routes:
    - match: {severity: critical}
      receiver: oncall
      continue: true
    - match_re: {severity: high|medium}
      match: {team: fraud}  # a model label
      receiver: fraud-slack
receivers:
  - {name: oncall, type: pagerduty, routing_key: "${VIGIL_PAGERDUTY_ROUTING_KEY}"}
  - {name: fraud-slack, type: slack, url: "${VIGIL_FRAUD_SLACK_URL}"}
  - {name: audit, type: webhook, url: "http://audit.internal/hook"}
  - {name: mail, type: email, to: [ml-oncall@example.com]}
```

Secrets (`url` of slack, `routing_key`, `smtp_url`, webhook `url`) are `SecretStr` and may
be written as `${VIGIL_...}` references to the environment; left out, they come from the
settings (`VIGIL_SLACK_WEBHOOK_URL`, `VIGIL_PAGERDUTY_ROUTING_KEY`, `VIGIL_WEBHOOK_URL`,
`VIGIL_SMTP_URL`). A mistake is refused with `RoutingError("<file>:<line>: <key>: <reason>")`.

>>> routing = Routing.parse('''
... route:
...   routes:
...     - {match: {severity: critical}, receiver: pd}
... receivers:
...   - {name: pd, type: pagerduty, routing_key: k}
... ''')
>>> [(r.name, route.group_wait) for r, route in routing.match({"severity": "critical"}, {})]
[('pd', 30.0)]
>>> routing.match({"severity": "high"}, {})
[]
>>> try:
...     Routing.parse("route: {group_wait: soon}")
... except RoutingError as exc:
...     print(exc)
<routing>:1: route.group_wait: 'soon' is not a duration (e.g. 30s, 5m, 4h, 1h30m, or seconds)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml
from pydantic import SecretStr

from shared.events import SEVERITIES

RECEIVER_TYPES = ("slack", "pagerduty", "webhook", "email")
ALERT_LABELS = ("severity", "model_id", "kind", "feature", "vendor")  # taken from the alert; others from the model's labels
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?$")
_ROUTE_KEYS = {"receiver", "match", "match_re", "group_wait", "group_interval", "repeat_interval",
               "continue", "routes"}
_RECEIVER_KEYS = {
    "slack": {"name", "type", "url", "channel", "send_resolved"},
    "pagerduty": {"name", "type", "routing_key", "url", "send_resolved"},
    "webhook": {"name", "type", "url", "send_resolved"},
    "email": {"name", "type", "to", "from", "smtp_url", "send_resolved"},
}


class RoutingError(ValueError):
    """A routing file that cannot be used; str(e) = "<file>:<line>: <path.to.key>: <reason>"."""


@dataclass(frozen=True)
class Receiver:
    """A named destination. `type` picks the class in `services.alerts.receivers`.

    slack: `url` (the incoming webhook, secret), optional `channel`; pagerduty: `routing_key`
    (secret) and `url` (the Events API v2 endpoint); webhook: `url` (secret: it may embed a
    token); email: `smtp_url` (secret, smtp://user:pass@host:port?from=&to=), `to`, `sender`.
    `send_resolved` (default true): whether resolved alerts are sent.
    """

    name: str
    type: str
    url: SecretStr | None = None
    routing_key: SecretStr | None = None
    smtp_url: SecretStr | None = None
    to: tuple[str, ...] = ()
    sender: str | None = None
    channel: str | None = None
    send_resolved: bool = True


@dataclass(frozen=True)
class Route:
    """A node of the route tree; timers are seconds, already inherited from the parent."""

    receiver: str | None
    match: dict
    group_wait: float
    group_interval: float
    repeat_interval: float
    continue_: bool
    routes: tuple["Route", ...]
    match_re: dict = field(default_factory=dict)  # label -> compiled pattern (fullmatch)

    def matches(self, labels: dict) -> bool:
        return (all(str(labels.get(k, "")) == str(v) for k, v in self.match.items())
                and all(p.fullmatch(str(labels.get(k, ""))) for k, p in self.match_re.items()))

    def walk(self, labels: dict) -> list["Route"]:
        """The routes an alert with these labels ends at (Alertmanager's `Route.Match`)."""
        if not self.matches(labels):
            return []
        found: list[Route] = []
        for child in self.routes:
            got = child.walk(labels)
            found += got
            if got and not child.continue_:
                break
        return found or [self]


def labels_of(alert: dict, model_labels: dict) -> dict:
    """The label set routes match on: the model's labels, then the alert's own fields over them."""
    out = {str(k): str(v) for k, v in (model_labels or {}).items()}
    out.update({k: str(alert[k]) for k in ALERT_LABELS if alert.get(k) is not None})
    return out


class Routing:
    """The receivers and the route tree; `match` answers where an alert goes."""

    def __init__(self, root: Route, receivers: dict[str, Receiver], source: str = "<defaults>"):
        self.root = root
        self.receivers = receivers
        self.source = source

    def __repr__(self) -> str:
        return f"Routing(source={self.source!r}, receivers={sorted(self.receivers)})"

    def match(self, alert: dict, model_labels: dict) -> list[tuple[Receiver, Route]]:
        """(receiver, route) pairs for an alert, in tree order, one per receiver; [] = no notification."""
        out, seen = [], set()
        for route in self.root.walk(labels_of(alert, model_labels)):
            if route.receiver is None or route.receiver in seen:
                continue
            seen.add(route.receiver)
            out.append((self.receivers[route.receiver], route))
        return out

    @classmethod
    def load(cls, settings) -> "Routing":
        """From `settings.routing_file`, or the defaults by tier when it is unset."""
        path = getattr(settings, "routing_file", None)
        if not path:
            return cls.defaults(settings)
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise RoutingError(f"{path}:0: routing_file: cannot read: {exc.strerror or exc}") from None
        return cls.parse(text, source=str(path), settings=settings)

    @classmethod
    def defaults(cls, settings) -> "Routing":
        """critical -> PagerDuty, high and medium -> Slack, low -> none; webhook and e-mail get medium and up.

        Only receivers whose URL or key is configured are present.
        """
        timers = dict(group_wait=float(settings.group_wait_seconds),
                      group_interval=float(settings.group_interval_seconds),
                      repeat_interval=float(settings.repeat_interval_seconds))
        receivers: dict[str, Receiver] = {}
        routes: list[Route] = []

        def add(receiver: Receiver, severities: str) -> None:
            receivers[receiver.name] = receiver
            routes.append(Route(receiver=receiver.name, match={}, continue_=True, routes=(),
                                match_re={"severity": re.compile(severities)}, **timers))

        if settings.pagerduty_routing_key:
            add(Receiver("pagerduty", "pagerduty", url=SecretStr(settings.pagerduty_url),
                         routing_key=settings.pagerduty_routing_key), "critical")
        if settings.slack_webhook_url:
            add(Receiver("slack", "slack", url=settings.slack_webhook_url), "high|medium")
        if settings.webhook_url:
            add(Receiver("webhook", "webhook", url=SecretStr(settings.webhook_url)), "critical|high|medium")
        if settings.smtp_url:
            to, sender = smtp_addresses(settings.smtp_url.get_secret_value())
            if not to:
                raise RoutingError("<settings>:0: smtp_url: VIGIL_SMTP_URL needs ?to=<address>[,<address>...] "
                                   "when no routing file names the e-mail receivers")
            add(Receiver("email", "email", smtp_url=settings.smtp_url, to=to, sender=sender),
                "critical|high|medium")
        root = Route(receiver=None, match={}, continue_=False, routes=tuple(routes), **timers)
        return cls(root, receivers)

    @classmethod
    def parse(cls, text: str, *, source: str = "<routing>", settings=None) -> "Routing":
        """Parse and check a routing document; `settings` gives defaults for timers and secrets."""
        return _Parser(text, source, settings).routing()


def smtp_addresses(smtp_url: str) -> tuple[tuple[str, ...], str | None]:
    """(to, from) from the query of an smtp:// URL; `to` may be comma-separated or repeated.

    >>> smtp_addresses("smtp://u:p@mail:25?from=vigil@x.io&to=a@x.io,b@x.io")
    (('a@x.io', 'b@x.io'), 'vigil@x.io')
    """
    query = parse_qs(urlsplit(smtp_url).query)
    to = tuple(a.strip() for v in query.get("to", []) for a in unquote(v).split(",") if a.strip())
    sender = query.get("from", [None])[0]
    return to, sender


def parse_duration(value: Any) -> float:
    """Seconds from an Alertmanager-style duration or a number.

    >>> [parse_duration(v) for v in ("30s", "5m", "4h", "1h30m", "500ms", 2, "0")]
    [30.0, 300.0, 14400.0, 5400.0, 0.5, 2.0, 0.0]
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, (int, float)):
        if value < 0 or value != value or value == float("inf"):
            raise ValueError(f"{value!r} must be a finite number of seconds >= 0")
        return float(value)
    text = str(value).strip()
    if text in ("0", "0s"):
        return 0.0
    m = _DURATION.match(text)
    if not text or not m or not any(m.groups()):
        raise ValueError(f"{value!r} is not a duration (e.g. 30s, 5m, 4h, 1h30m, or seconds)")
    h, mi, s, ms = m.groups()
    return int(h or 0) * 3600.0 + int(mi or 0) * 60.0 + float(s or 0) + int(ms or 0) / 1000.0


class _Parser:
    """Turns YAML nodes into plain values while remembering each key path's line."""

    def __init__(self, text: str, source: str, settings):
        self.source, self.settings = source, settings
        self.lines: dict[tuple, int] = {}
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else 0
            raise RoutingError(f"{source}:{line}: <document>: not valid YAML: {exc.problem}") from None
        except yaml.YAMLError as exc:
            raise RoutingError(f"{source}:0: <document>: not valid YAML: {exc}") from None
        finally:
            loader.dispose()
        self.loader = yaml.SafeLoader("")
        self.data = self._plain(node, ()) if node is not None else None

    # -- node -> plain, with lines -------------------------------------------------------
    def _plain(self, node, path: tuple) -> Any:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict = {}
            for knode, vnode in node.value:
                key = self.loader.construct_object(knode, deep=True)
                if not isinstance(key, str):
                    self.lines[path + (str(key),)] = knode.start_mark.line + 1
                    self.fail(path + (str(key),), f"keys must be strings, not {type(key).__name__}")
                if key in out:
                    self.lines[path + (key,)] = knode.start_mark.line + 1
                    self.fail(path + (key,), "duplicate key")
                self.lines[path + (key,)] = knode.start_mark.line + 1
                out[key] = self._plain(vnode, path + (key,))
                self.lines[path + (key,)] = knode.start_mark.line + 1
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self._plain(v, path + (i,)) for i, v in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)

    def fail(self, path: tuple, reason: str):
        line = next((self.lines[path[:i]] for i in range(len(path), -1, -1) if path[:i] in self.lines), 0)
        raise RoutingError(f"{self.source}:{line}: {_dotted(path)}: {reason}")

    # -- checks -------------------------------------------------------------------------
    def routing(self) -> Routing:
        data = self.data
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.fail((), "the document must be a mapping with `route` and `receivers`")
        for key in data:
            if key not in ("route", "receivers"):
                self.fail((key,), "unknown key (expected route, receivers)")
        receivers = self.receivers(data.get("receivers", []))
        route_data = data.get("route", {})
        if route_data is None:
            route_data = {}
        s = self.settings
        inherited = dict(group_wait=float(getattr(s, "group_wait_seconds", 30.0)),
                         group_interval=float(getattr(s, "group_interval_seconds", 300.0)),
                         repeat_interval=float(getattr(s, "repeat_interval_seconds", 14400.0)))
        root = self.route(route_data, ("route",), receivers, None, inherited, root=True)
        return Routing(root, receivers, self.source)

    def receivers(self, items: Any) -> dict[str, Receiver]:
        if not isinstance(items, list):
            self.fail(("receivers",), "must be a list of receivers")
        out: dict[str, Receiver] = {}
        for i, item in enumerate(items):
            path = ("receivers", i)
            if not isinstance(item, dict):
                self.fail(path, "a receiver must be a mapping with name and type")
            name = item.get("name")
            if not isinstance(name, str) or not _NAME.match(name):
                self.fail(path + ("name",), f"{name!r}: required, letters, digits, '.', '_' or '-'")
            if name in out:
                self.fail(path + ("name",), f"duplicate receiver name {name!r}")
            rtype = item.get("type")
            if rtype not in RECEIVER_TYPES:
                self.fail(path + ("type",), f"{rtype!r} must be one of {', '.join(RECEIVER_TYPES)}")
            for key in item:
                if key not in _RECEIVER_KEYS[rtype]:
                    self.fail(path + (key,), f"unknown key for a {rtype} receiver "
                                             f"(expected {', '.join(sorted(_RECEIVER_KEYS[rtype]))})")
            out[name] = self.receiver(item, path, name, rtype)
        return out

    def _text(self, item: dict, path: tuple, key: str) -> str | None:
        value = item.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(path + (key,), "must be a non-empty string")

        def env(m: re.Match) -> str:
            var = m.group(1)
            if not var.startswith("VIGIL_"):
                self.fail(path + (key,), f"${{{var}}}: only VIGIL_* environment variables may be referenced")
            if var not in os.environ:
                self.fail(path + (key,), f"${{{var}}}: environment variable is not set")
            return os.environ[var]

        return _ENV.sub(env, value)

    def _setting(self, name: str) -> str | None:
        value = getattr(self.settings, name, None) if self.settings is not None else None
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        return value or None

    def _url(self, item: dict, path: tuple, key: str, setting: str | None) -> SecretStr:
        url = self._text(item, path, key) or (self._setting(setting) if setting else None)
        if not url:
            where = f" (or set VIGIL_{setting.upper()})" if setting else ""
            self.fail(path + (key,), f"required{where}")
        scheme = urlsplit(url).scheme
        allowed = ("smtp", "smtps") if key == "smtp_url" else ("http", "https")
        if scheme not in allowed or not urlsplit(url).hostname:
            # the value may be a secret: name the scheme only
            self.fail(path + (key,), f"must be an {' or '.join(allowed)} URL with a host")
        return SecretStr(url)

    def receiver(self, item: dict, path: tuple, name: str, rtype: str) -> Receiver:
        send_resolved = item.get("send_resolved", True)
        if not isinstance(send_resolved, bool):
            self.fail(path + ("send_resolved",), "must be true or false")
        common = dict(name=name, type=rtype, send_resolved=send_resolved)
        if rtype == "slack":
            return Receiver(url=self._url(item, path, "url", "slack_webhook_url"),
                            channel=self._text(item, path, "channel"), **common)
        if rtype == "webhook":
            return Receiver(url=self._url(item, path, "url", "webhook_url"), **common)
        if rtype == "pagerduty":
            key = self._text(item, path, "routing_key") or self._setting("pagerduty_routing_key")
            if not key:
                self.fail(path + ("routing_key",), "required (or set VIGIL_PAGERDUTY_ROUTING_KEY)")
            url = item.get("url") or self._setting("pagerduty_url") or "https://events.pagerduty.com/v2/enqueue"
            url = self._url({"url": url}, path, "url", None)
            return Receiver(routing_key=SecretStr(key), url=url, **common)
        smtp = self._url(item, path, "smtp_url", "smtp_url")
        url_to, url_from = smtp_addresses(smtp.get_secret_value())
        to = item.get("to", list(url_to))
        if isinstance(to, str):
            to = [to]
        if not isinstance(to, list) or not to or not all(isinstance(a, str) and "@" in a for a in to):
            self.fail(path + ("to",), "required: a list of e-mail addresses (or ?to= in smtp_url)")
        sender = self._text(item, path, "from") or url_from
        if sender is not None and "@" not in sender:
            self.fail(path + ("from",), f"{sender!r} is not an e-mail address")
        return Receiver(smtp_url=smtp, to=tuple(to), sender=sender, **common)

    def route(self, data: Any, path: tuple, receivers: dict, parent_receiver: str | None,
              inherited: dict, root: bool = False) -> Route:
        if not isinstance(data, dict):
            self.fail(path, "a route must be a mapping")
        for key in data:
            if key not in _ROUTE_KEYS:
                self.fail(path + (key,), f"unknown key (expected {', '.join(sorted(_ROUTE_KEYS))})")
        if root and ("match" in data or "match_re" in data):
            self.fail(path + ("match" if "match" in data else "match_re",), "the root route matches every alert")
        if root and data.get("continue"):
            self.fail(path + ("continue",), "the root route cannot continue")
        receiver = data.get("receiver", parent_receiver)
        if receiver is not None and receiver not in receivers:
            known = ", ".join(sorted(receivers)) or "none defined"
            self.fail(path + ("receiver",), f"{receiver!r} is not a receiver (known: {known})")
        timers = dict(inherited)
        for key in ("group_wait", "group_interval", "repeat_interval"):
            if key in data:
                try:
                    timers[key] = parse_duration(data[key])
                except ValueError as exc:
                    self.fail(path + (key,), str(exc))
        if timers["group_interval"] <= 0:
            self.fail(path + ("group_interval",), "must be > 0")
        if timers["repeat_interval"] <= 0:
            self.fail(path + ("repeat_interval",), "must be > 0")
        match = self.matchers(data.get("match", {}), path + ("match",), regex=False)
        match_re = self.matchers(data.get("match_re", {}), path + ("match_re",), regex=True)
        cont = data.get("continue", False)
        if not isinstance(cont, bool):
            self.fail(path + ("continue",), "must be true or false")
        children = data.get("routes", [])
        if not isinstance(children, list):
            self.fail(path + ("routes",), "must be a list of routes")
        routes = tuple(self.route(c, path + ("routes", i), receivers, receiver, timers)
                       for i, c in enumerate(children))
        return Route(receiver=receiver, match=match, continue_=cont, routes=routes,
                     match_re=match_re, **timers)

    def matchers(self, data: Any, path: tuple, regex: bool) -> dict:
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.fail(path, "must be a mapping of label -> value")
        out = {}
        for key, value in data.items():
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                self.fail(path + (key,), "must be a string")
            value = str(value)
            if regex:
                try:
                    out[key] = re.compile(value)
                except re.error as exc:
                    self.fail(path + (key,), f"{value!r} is not a regular expression: {exc}")
            else:
                if key == "severity" and value not in SEVERITIES:
                    self.fail(path + (key,), f"{value!r} must be one of {', '.join(SEVERITIES)}")
                out[key] = value
        return out


def _dotted(path: tuple) -> str:
    """('route', 'routes', 0, 'match') -> 'route.routes[0].match'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<document>"
