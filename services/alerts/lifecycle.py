"""The alert lifecycle as pure functions: findings in, alert states, actions and reasons out.

No I/O and no clock: `now` is passed in. `store.py` loads the state from Redis, calls these,
and writes the result atomically; `app.py` publishes what they return.

An alert is a JSON-ready dict: the contract's Alert fields plus the lifecycle's own
(`generation`, `revision`, `feature`, `vendor`, `latest`, `clear_windows`, `acknowledged`,
`silenced_by`, `inhibited_by`, `resolved_at`, `notified`).

Choices where the contract is silent (*Vigil's choice*):

- Fingerprint: a hash of (model_id, kind, feature, vendor), hex like Alertmanager's. One
  open alert per fingerprint; after it resolves the next finding opens a new alert of the
  next `generation` (its `alert_id` hashes fingerprint and generation, so it is the same
  whatever order the findings arrive in).
- `first_seen` / `last_seen` are the earliest / latest `window_end` of the alert's findings
  (event time), so a replayed history gives the same alert as live traffic.
- Severity only rises while an alert is open (the highest of its findings): a milder finding
  of medium or above is a repeat, and the alert de-escalates only by resolving. Escalating
  an acknowledged alert sets it firing again (the acknowledgement stays on record).
- The finding's severity already carries the risk-tier escalation (`shared.policy.escalate`,
  applied where the finding is made); it is used as is, never raised again here.
- A finding below medium opens no alert (it is kept with the findings, `GET /v1/findings`);
  for an open alert it counts as a clear window (one per distinct window).
- Silences and inhibitions both give status ``silenced`` (Alertmanager's "suppressed"):
  `silenced_by` lists silence ids, `inhibited_by` alert ids. They mute notifications only:
  the alert, its actions and the model mode are still recorded.
- Default inhibition: a critical alert of a model inhibits that model's medium alerts (not its
  high ones); an alert never inhibits itself; a silenced critical alert still inhibits (as in
  Alertmanager). An alert notified before it was inhibited is not withdrawn from the Dispatcher.
- Actions (``shared.policy.responses``) are made when an alert opens and each time it
  escalates to a new severity, with ids derived from (alert, severity, type): at most one of
  each per severity, whatever the number of repeats.

>>> f = {"finding_id": "f1", "kind": "data_drift", "model_id": "m", "feature": "x", "severity": "high",
...      "window_start": "2026-01-01T00:00:00+00:00", "window_end": "2026-01-01T00:15:00+00:00",
...      "metrics": {"psi": 0.25}, "n": 100}
>>> now = parse_time("2026-01-01T00:16:00+00:00")
>>> c = apply_finding(None, f, now=now)
>>> c.reason, c.alert["status"], c.alert["severity"], c.alert["occurrences"], [a["type"] for a in c.actions]
('new', 'firing', 'high', 1, ['notify', 'queue_retraining', 'increase_monitoring_frequency'])
>>> apply_finding(c.alert, f, now=now).reason
'duplicate'
>>> c2 = apply_finding(c.alert, {**f, "finding_id": "f2", "severity": "critical"}, now=now)
>>> c2.reason, c2.alert["severity"], c2.alert["occurrences"], c2.alert["revision"]
('escalated', 'critical', 2, 2)
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

from shared import policy
from shared.policy import CRITICAL, LOW, MEDIUM, RANK

MAX_FINDINGS = 100  # finding ids kept on an alert (the latest by window); all are in GET /v1/findings
NOTIFY_AT = MEDIUM  # alerts below this never notify
DEFAULT_WINDOW_SECONDS = 900.0  # window length when a finding's window is empty


def parse_time(value: str | datetime) -> datetime:
    """RFC 3339 text (or a datetime) -> an aware datetime.

    >>> parse_time("2026-01-01T00:00:00Z").isoformat()
    '2026-01-01T00:00:00+00:00'
    """
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat()


def _hash(*parts: str) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


def fingerprint(model_id: str, kind: str, feature: str | None = None, vendor: str | None = None) -> str:
    """What makes findings "the same condition": model, kind, feature and vendor.

    >>> fingerprint("m", "data_drift", "x") == fingerprint("m", "data_drift", "x")
    True
    >>> fingerprint("m", "data_drift", "x") == fingerprint("m", "data_drift", "y")
    False
    """
    return _hash(model_id, kind, feature or "", vendor or "")


def alert_id(fp: str, generation: int) -> str:
    return _hash(fp, str(generation))[:24]


# --- matchers, silences, inhibition --------------------------------------------------------


@dataclass(frozen=True)
class Matcher:
    """Alertmanager's matcher: label `name` equals (or, `is_regex`, fully matches) `value`;
    `is_equal=False` negates. A missing label is the empty string.

    >>> Matcher("severity", "critical|high", is_regex=True).matches({"severity": "high"})
    True
    >>> Matcher("team", "risk", is_equal=False).matches({})
    True
    """

    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def __post_init__(self):
        if not self.name:
            raise ValueError("matcher.name: must not be empty")
        if self.is_regex:
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"matcher.value={self.value!r}: not a valid regular expression ({exc})") from None

    def matches(self, labels: dict[str, str]) -> bool:
        got = str(labels.get(self.name, "") or "")
        hit = re.fullmatch(self.value, got) is not None if self.is_regex else got == self.value
        return hit == self.is_equal

    @classmethod
    def from_dict(cls, d: dict) -> "Matcher":
        return cls(d["name"], str(d["value"]), bool(d.get("isRegex", False)), bool(d.get("isEqual", True)))

    def to_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "isRegex": self.is_regex, "isEqual": self.is_equal}


@dataclass(frozen=True)
class Silence:
    """Alertmanager's silence: matchers (all must match), active in [starts_at, ends_at)."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str = ""

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: dict[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    @classmethod
    def from_dict(cls, d: dict) -> "Silence":
        return cls(d["id"], tuple(Matcher.from_dict(m) for m in d["matchers"]), parse_time(d["startsAt"]),
                   parse_time(d["endsAt"]), d.get("createdBy", ""), d.get("comment", ""))

    def to_dict(self, now: datetime | None = None) -> dict:
        d = {"id": self.id, "matchers": [m.to_dict() for m in self.matchers], "startsAt": iso(self.starts_at),
             "endsAt": iso(self.ends_at), "createdBy": self.created_by, "comment": self.comment}
        if now is not None:
            d["status"] = {"state": "active" if self.active(now) else
                           ("pending" if now < self.starts_at else "expired")}
        return d


@dataclass(frozen=True)
class InhibitRule:
    """An alert matching `source` inhibits the alerts matching `target` that have the same
    values of the `equal` labels (Alertmanager's inhibit_rules)."""

    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...] = ("model_id",)


DEFAULT_INHIBIT_RULES: tuple[InhibitRule, ...] = (
    InhibitRule(source=(Matcher("severity", CRITICAL),), target=(Matcher("severity", MEDIUM),), equal=("model_id",)),
)


def labels_of(alert: dict, model_labels: dict | None = None) -> dict[str, str]:
    """The labels silences, inhibition and routing match on: the model's labels, then the
    alert's own (which win).

    >>> labels_of({"model_id": "m", "kind": "data_drift", "severity": "high", "fingerprint": "f"}, {"team": "risk"})
    {'team': 'risk', 'model_id': 'm', 'kind': 'data_drift', 'severity': 'high', 'feature': '', 'vendor': '', 'fingerprint': 'f'}
    """
    out = {str(k): str(v) for k, v in (model_labels or {}).items()}
    out.update(model_id=alert["model_id"], kind=alert["kind"], severity=alert["severity"],
               feature=alert.get("feature") or "", vendor=alert.get("vendor") or "",
               fingerprint=alert["fingerprint"])
    return out


def suppression(alert: dict, labels: dict[str, str], silences: list[Silence], others: list[tuple[dict, dict]],
                now: datetime, rules: tuple[InhibitRule, ...] = DEFAULT_INHIBIT_RULES) -> tuple[list[str], list[str]]:
    """(silenced_by, inhibited_by) of an alert: the active silences matching it, and the open
    alerts (``others``: (alert, labels) pairs, resolved and suppressed ones left out by the caller
    or skipped here) that inhibit it. Sorted, so equal inputs give equal outputs.

    >>> a = {"alert_id": "a", "model_id": "m", "severity": "medium", "status": "firing"}
    >>> b = {"alert_id": "b", "model_id": "m", "severity": "critical", "status": "firing"}
    >>> suppression(a, {"model_id": "m", "severity": "medium"}, [], [(b, {"model_id": "m", "severity": "critical"})],
    ...             datetime(2026, 1, 1, tzinfo=timezone.utc))
    ([], ['b'])
    """
    silenced = sorted(s.id for s in silences if s.active(now) and s.matches(labels))
    inhibited = set()
    for rule in rules:
        if not all(m.matches(labels) for m in rule.target):
            continue
        for other, other_labels in others:
            if other["alert_id"] == alert["alert_id"] or other.get("status") == "resolved":
                continue
            if all(m.matches(other_labels) for m in rule.source) and \
                    all(labels.get(e, "") == other_labels.get(e, "") for e in rule.equal):
                inhibited.add(other["alert_id"])
    return silenced, sorted(inhibited)


def status_of(alert: dict) -> str:
    """resolved > silenced (silence or inhibition) > acknowledged > firing."""
    if alert.get("resolved_at"):
        return "resolved"
    if alert.get("silenced_by") or alert.get("inhibited_by"):
        return "silenced"
    if alert.get("acknowledged") and RANK[alert["severity"]] <= RANK[alert["acknowledged"].get("severity", LOW)]:
        return "acknowledged"
    return "firing"


def suppress(alert: dict, silenced_by: list[str], inhibited_by: list[str]) -> dict:
    """The alert with its suppression set (a new dict, revision raised) or itself when unchanged."""
    if alert.get("silenced_by", []) == silenced_by and alert.get("inhibited_by", []) == inhibited_by:
        return alert
    out = {**alert, "silenced_by": silenced_by, "inhibited_by": inhibited_by, "revision": alert["revision"] + 1}
    out["status"] = status_of(out)
    return out


# --- findings ---------------------------------------------------------------------------------


class Change(NamedTuple):
    """What a finding did: the alert after it (None: no alert), a reason, and new actions."""

    alert: dict | None
    reason: str  # new | repeat | escalated | duplicate | clear | resolved | ignored
    actions: list[dict]


def _window(f: dict) -> tuple[datetime, datetime]:
    return parse_time(f["window_start"]), parse_time(f["window_end"])


def _summary(f: dict) -> str:
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in list((f.get("metrics") or {}).items())[:4]
                        if isinstance(v, (int, float)))
    where = f" feature {f['feature']}" if f.get("feature") else ""
    vendor = f" vendor {f['vendor']}" if f.get("vendor") else ""
    return f"{f['kind']} on model {f['model_id']}{where}{vendor}: {metrics or 'see evidence'} (n={f.get('n', 0)})"


def _title(f: dict, severity: str) -> str:
    target = f.get("feature") or f.get("vendor")
    return f"[{severity.upper()}] {f['kind'].replace('_', ' ')} of {f['model_id']}" + (f" ({target})" if target else "")


def _later(a: dict, b: dict) -> bool:
    """Whether finding a is later than finding b: by window_end, then finding_id (a total order)."""
    return (parse_time(a["window_end"]), a["finding_id"]) > (parse_time(b["window_end"]), b["finding_id"])


def actions_for(alert: dict, finding: dict, now: datetime) -> list[dict]:
    """Response actions for the alert's severity (``shared.policy.responses``), as Action dicts.

    >>> a = {"alert_id": "a1", "model_id": "m", "kind": "performance_degradation", "severity": "critical", "summary": "s"}
    >>> [x["type"] for x in actions_for(a, {"metrics": {"degradation": 0.2}}, datetime(2026, 1, 1, tzinfo=timezone.utc))]
    ['page_oncall', 'enable_human_review', 'queue_retraining', 'rollback']
    """
    out = []
    for r in policy.responses(alert["severity"], finding.get("metrics") or {}, alert["kind"]):
        out.append({"action_id": _hash(alert["alert_id"], alert["severity"], r.type)[:24], "type": r.type,
                    "model_id": alert["model_id"], "priority": r.priority,
                    "reason": f"{alert['severity']} {alert['kind']} alert {alert['alert_id']}: {alert['summary']}",
                    "alert_id": alert["alert_id"], "created_at": iso(now)})
    return out


def new_alert(finding: dict, generation: int, owners: list[str]) -> dict:
    fp = fingerprint(finding["model_id"], finding["kind"], finding.get("feature"), finding.get("vendor"))
    sev = finding["severity"]
    return {"alert_id": alert_id(fp, generation), "fingerprint": fp, "generation": generation, "revision": 1,
            "severity": sev, "status": "firing", "title": _title(finding, sev), "summary": _summary(finding),
            "model_id": finding["model_id"], "kind": finding["kind"], "feature": finding.get("feature"),
            "vendor": finding.get("vendor"), "first_seen": finding["window_end"], "last_seen": finding["window_end"],
            "occurrences": 1, "findings": [finding["finding_id"]], "actions": [], "owners": list(owners),
            "latest": finding, "clear_windows": [], "acknowledged": None, "silenced_by": [], "inhibited_by": [],
            "resolved_at": None, "notified": False}


def apply_finding(alert: dict | None, finding: dict, *, now: datetime, generation: int = 0,
                  owners: list[str] = (), resolve_after: int = 2) -> Change:
    """Apply one finding to the open alert of its fingerprint (None: there is none).

    ``generation``: the generation a new alert gets. ``resolve_after``: clear windows (later
    findings of the fingerprint below medium) that resolve the alert.

    >>> f = {"finding_id": "f1", "kind": "k", "model_id": "m", "severity": "medium", "n": 1, "metrics": {},
    ...      "window_start": "2026-01-01T00:00:00Z", "window_end": "2026-01-01T00:15:00Z"}
    >>> now = parse_time("2026-01-01T01:00:00Z")
    >>> a = apply_finding(None, f, now=now).alert
    >>> low = lambda i, w: {**f, "finding_id": i, "severity": "low", "window_start": w, "window_end": w}
    >>> c = apply_finding(a, low("c1", "2026-01-01T00:30:00Z"), now=now)
    >>> c.reason, c.alert["status"], c.alert["clear_windows"]
    ('clear', 'firing', ['2026-01-01T00:30:00Z'])
    >>> c = apply_finding(c.alert, low("c2", "2026-01-01T00:45:00Z"), now=now)
    >>> c.reason, c.alert["status"], c.alert["resolved_at"]
    ('resolved', 'resolved', '2026-01-01T01:00:00+00:00')
    >>> apply_finding(None, low("c3", "2026-01-01T00:45:00Z"), now=now).reason
    'ignored'
    """
    sev = finding["severity"]
    firing = RANK[sev] >= RANK[NOTIFY_AT]
    if alert is None:
        if not firing:
            return Change(None, "ignored", [])
        a = {**new_alert(finding, generation, owners), "received_at": iso(now)}
        actions = actions_for(a, finding, now)
        a["actions"] = [x["action_id"] for x in actions]
        return Change(a, "new", actions)
    if finding["finding_id"] in alert["findings"] or finding["finding_id"] in alert.get("clear_ids", []):
        return Change(alert, "duplicate", [])
    a = {**alert, "revision": alert["revision"] + 1}
    if not firing:
        # a clear window: counts once per distinct window that ends after the last bad one
        w = finding["window_end"]
        a["clear_ids"] = (alert.get("clear_ids", []) + [finding["finding_id"]])[-MAX_FINDINGS:]
        if parse_time(w) <= parse_time(alert["last_seen"]) or w in alert["clear_windows"]:
            return Change(a, "clear", [])
        a["clear_windows"] = sorted(alert["clear_windows"] + [w], key=parse_time)
        if len(a["clear_windows"]) >= resolve_after:
            return Change(resolve(a, now), "resolved", [])
        return Change(a, "clear", [])
    escalated = RANK[sev] > RANK[alert["severity"]]
    a["occurrences"] = alert["occurrences"] + 1
    ids = alert["findings"] + [finding["finding_id"]]
    a["findings"] = ids[-MAX_FINDINGS:]
    if _later(finding, alert["latest"]):
        a["latest"] = finding
        a["summary"] = _summary(finding)
    a["received_at"] = iso(now)
    a["first_seen"] = min(alert["first_seen"], finding["window_end"], key=parse_time)
    a["last_seen"] = max(alert["last_seen"], finding["window_end"], key=parse_time)
    # a bad window clears the clear windows before it
    a["clear_windows"] = [w for w in alert["clear_windows"] if parse_time(w) > parse_time(a["last_seen"])]
    actions: list[dict] = []
    if escalated:
        a["severity"] = sev
        a["title"] = _title(finding, sev)
        actions = actions_for(a, finding, now)
        a["actions"] = alert["actions"] + [x["action_id"] for x in actions]
    a["status"] = status_of(a)
    return Change(a, "escalated" if escalated else "repeat", actions)


def resolve(alert: dict, now: datetime) -> dict:
    out = {**alert, "resolved_at": iso(now)}
    out["status"] = "resolved"
    return out


def window_seconds(finding: dict) -> float:
    start, end = _window(finding)
    return (end - start).total_seconds() or DEFAULT_WINDOW_SECONDS


def cadence(alert: dict) -> float:
    """Seconds between the alert's evaluations: what its latest finding says
    (`evidence.evaluated_every_seconds`: oversight evaluates a 7-day period every hour), else
    its window's length (drift evaluates each window once).

    >>> a = {"latest": {"window_start": "2025-12-25T02:00:00Z", "window_end": "2026-01-01T02:00:00Z"}}
    >>> cadence(a), cadence({"latest": {**a["latest"], "evidence": {"evaluated_every_seconds": 3600}}})
    (604800.0, 3600.0)
    """
    every = (alert["latest"].get("evidence") or {}).get("evaluated_every_seconds")
    if isinstance(every, (int, float)) and not isinstance(every, bool) and every > 0:
        return float(every)
    return window_seconds(alert["latest"])


def stale(alert: dict, now: datetime, resolve_after: int = 2, clock: datetime | None = None) -> bool:
    """Whether an open alert's condition has been clear for `resolve_after` evaluations
    (`cadence`) because no finding of it came. Two clocks, either suffices:

    - event time: `clock`, the latest window end of the model's open alerts, has moved that far
      past the alert's last bad window — the model's stream went on without this condition
      (right for a replayed history, where windows pass in milliseconds);
    - wall time: that long has passed since its last bad finding arrived (`received_at`) — for
      a model that went quiet and publishes nothing at all.

    >>> a = {"last_seen": "2026-01-01T00:15:00Z", "received_at": "2026-01-01T00:15:00Z", "resolved_at": None,
    ...      "latest": {"window_start": "2026-01-01T00:00:00Z", "window_end": "2026-01-01T00:15:00Z"}}
    >>> stale(a, parse_time("2026-01-01T00:44:59Z")), stale(a, parse_time("2026-01-01T00:45:00Z"))
    (False, True)
    >>> stale(a, parse_time("2026-01-01T00:16:00Z"), clock=parse_time("2026-01-01T00:45:00Z"))
    True
    """
    if alert.get("resolved_at"):
        return False
    if clock is not None and clock - parse_time(alert["last_seen"]) >= timedelta(seconds=resolve_after * cadence(alert)):
        return True
    return stale_at(alert, resolve_after) <= now


def stale_at(alert: dict, resolve_after: int = 2) -> datetime:
    """When an open alert goes stale by the wall clock if no finding of it comes (see `stale`)."""
    return parse_time(alert.get("received_at") or alert["last_seen"]) + timedelta(seconds=resolve_after * cadence(alert))


def model_clock(alerts) -> datetime | None:
    """The event-time clock `stale` reads: the latest `last_seen` of a model's open alerts."""
    ends = [parse_time(a["last_seen"]) for a in alerts if not a.get("resolved_at")]
    return max(ends) if ends else None


def acknowledge(alert: dict, by: str, comment: str, now: datetime) -> dict:
    """Record who acknowledged and when; an acknowledged alert does not repeat its notifications
    until it escalates past the acknowledged severity.

    >>> a = {"severity": "high", "status": "firing", "revision": 3, "silenced_by": [], "inhibited_by": []}
    >>> b = acknowledge(a, "ana", "looking", datetime(2026, 1, 1, tzinfo=timezone.utc))
    >>> b["status"], b["acknowledged"]["by"], b["revision"]
    ('acknowledged', 'ana', 4)
    """
    out = {**alert, "revision": alert["revision"] + 1,
           "acknowledged": {"by": by, "at": iso(now), "comment": comment, "severity": alert["severity"]}}
    out["status"] = status_of(out)
    return out


def notify_reason(prev: dict | None, cur: dict | None) -> str | None:
    """Whether a state change goes to the Dispatcher, and why (None: it does not).

    Firing alerts of medium or above go when they open, repeat, escalate, or stop being
    silenced/inhibited/acknowledged; a resolve goes when the alert was notified before.
    A notified alert that becomes silenced, inhibited or acknowledged goes as "muted": the
    Dispatcher sends nothing for it and stops repeating it (its resolve still goes out).

    >>> a = {"severity": "high", "status": "firing", "occurrences": 1, "notified": False}
    >>> notify_reason(None, a), notify_reason(a, {**a, "status": "silenced"})
    ('firing', None)
    >>> notify_reason({**a, "notified": True}, {**a, "status": "resolved", "notified": True})
    'resolved'
    >>> notify_reason(a, {**a, "status": "resolved"}) is None  # never notified: nothing to resolve
    True
    >>> notify_reason({**a, "notified": True}, {**a, "status": "acknowledged", "notified": True})
    'muted'
    """
    if cur is None or RANK[cur["severity"]] < RANK[NOTIFY_AT]:
        return None
    if cur["status"] == "resolved":
        if prev is not None and prev["status"] == "resolved":
            return None
        return "resolved" if cur.get("notified") else None
    if cur["status"] != "firing":
        return "muted" if cur.get("notified") and (prev is None or prev["status"] == "firing") else None
    if prev is None or prev["status"] != "firing":
        return "firing"
    if cur["severity"] != prev["severity"] or cur["occurrences"] != prev["occurrences"]:
        return "firing"
    return None


class Settled(NamedTuple):
    """The outcome of a change to one model's alerts: the alerts whose state changed (stored and
    published) and the notifications to hand to the Dispatcher, (alert, "firing" | "resolved")."""

    changed: list[dict]
    notify: list[tuple[dict, str]]


def _is_source(alert: dict | None, model_labels: dict | None, rules: tuple[InhibitRule, ...]) -> bool:
    if alert is None or alert.get("resolved_at"):
        return False
    labels = labels_of(alert, model_labels)
    return any(all(m.matches(labels) for m in r.source) for r in rules)


def settle(before: dict[str, dict], after: dict[str, dict], model_labels: dict | None, silences: list[Silence],
           now: datetime, rules: tuple[InhibitRule, ...] = DEFAULT_INHIBIT_RULES, full: bool = True) -> Settled:
    """Recompute silences and inhibitions of one model's alerts (``after``: alert_id -> alert, the
    open ones and any just changed) and decide what notifies, against ``before``.

    ``full=False`` recomputes only the alerts that changed, unless a changed alert is or was an
    inhibition source (then all): for a finding, whose silences and time barely moved. The
    sweep and silence changes settle in full, so a silence that began or ended applies to
    unchanged alerts within one sweep.

    >>> f = {"finding_id": "f1", "kind": "k", "model_id": "m", "severity": "medium", "n": 1, "metrics": {},
    ...      "window_start": "2026-01-01T00:00:00Z", "window_end": "2026-01-01T00:15:00Z"}
    >>> now = parse_time("2026-01-01T01:00:00Z")
    >>> med = apply_finding(None, f, now=now).alert
    >>> s = settle({}, {med["alert_id"]: med}, {}, [], now)
    >>> [(a["status"], a["notified"]) for a in s.changed], [r for _, r in s.notify]
    ([('firing', True)], ['firing'])
    >>> crit = apply_finding(None, {**f, "finding_id": "f2", "kind": "j", "severity": "critical"}, now=now).alert
    >>> s2 = settle({med["alert_id"]: s.changed[0]}, {med["alert_id"]: s.changed[0], crit["alert_id"]: crit}, {}, [], now)
    >>> sorted((a["severity"], a["status"]) for a in s2.changed), [(a["severity"], r) for a, r in s2.notify]
    ([('critical', 'firing'), ('medium', 'silenced')], [('critical', 'firing'), ('medium', 'muted')])
    """
    moved = [aid for aid, a in after.items() if aid not in before or before[aid]["revision"] != a["revision"]]
    if not full:
        full = any(_is_source(before.get(aid), model_labels, rules) or _is_source(after[aid], model_labels, rules)
                   for aid in moved)
    sources = [(a, labels_of(a, model_labels)) for a in after.values() if _is_source(a, model_labels, rules)]
    changed, notify = [], []
    for aid in sorted(after) if full else sorted(moved):
        a = after[aid]
        if not a.get("resolved_at"):
            a = suppress(a, *suppression(a, labels_of(a, model_labels), silences, sources, now, rules))
        prev = before.get(aid)
        if prev is not None and a["revision"] == prev["revision"]:
            continue
        reason = notify_reason(prev, a)
        if reason == "firing":
            a = {**a, "notified": True}
        changed.append(a)
        if reason:
            notify.append((a, reason))
    return Settled(changed, notify)


def public(alert: dict) -> dict:
    """The alert as the API and `vigil.alerts` show it: the contract's fields and the
    lifecycle's, without bookkeeping."""
    return {k: v for k, v in alert.items() if k not in ("clear_ids", "notified", "generation")}
