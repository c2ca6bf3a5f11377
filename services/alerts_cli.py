"""`vigil alerts [--follow]`: list or follow alerts from the alerts API; and `vigil report MODEL`,
which writes a model's report (`GET /v1/models/{id}/report`) to a file (`add_report_parser`,
`run_report`).

The parser is `add_parser(subparsers)`, the command `run(args) -> int`. Rendering and the
diff between two polls are pure functions (`alerts_table`, `diff`, `change_text`), so they
are tested without a terminal or a server.

>>> before = {"a": {"alert_id": "a", "severity": "high", "status": "firing"}}
>>> after = {"a": {"alert_id": "a", "severity": "critical", "status": "firing"}}
>>> [(c.kind, c.before, c.after) for c in diff(before, after)]
[('severity', 'high', 'critical')]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

SEVERITIES = ("critical", "high", "medium", "low")  # most severe first, as listed
STATUSES = ("firing", "acknowledged", "silenced", "resolved")
ACTIVE = ("firing", "acknowledged", "silenced")
COLOURS = {"critical": "bold white on red", "high": "bold red", "medium": "yellow", "low": "blue"}
STATUS_COLOURS = {"firing": "red", "acknowledged": "green", "silenced": "dim", "resolved": "green"}
_RANK = {s: i for i, s in enumerate(SEVERITIES)}
WIDE = 110  # terminal columns from which the table shows alert ids


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("alerts", help="list or follow alerts from the alerts API",
                              description="List the alerts of the alerts service (active ones by default); "
                                          "--follow polls and prints every new alert and every status or "
                                          "severity change until Ctrl-C.")
    p.add_argument("--follow", "-f", action="store_true", help="print changes as they happen until Ctrl-C")
    p.add_argument("--model", default=None, help="only this model_id")
    p.add_argument("--severity", choices=SEVERITIES, default=None)
    p.add_argument("--status", choices=(*STATUSES, "active", "all"), default="active",
                   help="firing, acknowledged, silenced, resolved, active (the first three; default) or all")
    p.add_argument("--kind", default=None, help="only this finding kind (data_drift, ...)")
    p.add_argument("--url", default=None, help="alerts service base URL (default: from settings)")
    p.add_argument("--json", action="store_true", help="JSON: an array, or with --follow one change per line")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between polls with --follow (default 2)")
    p.add_argument("--api-key", default=None, help="bearer key (default: the first of VIGIL_API_KEYS)")
    return p


# --- pure parts ----------------------------------------------------------------------------


def queries(model: str | None, severity: str | None, status: str, kind: str | None) -> list[dict[str, str]]:
    """The query strings of `GET /v1/alerts` that together list what was asked for.

    >>> [q["status"] for q in queries("m", None, "active", None)]
    ['firing', 'acknowledged', 'silenced']
    >>> queries("m", None, "resolved", None)
    [{'model_id': 'm', 'status': 'resolved'}]
    >>> queries(None, "high", "all", None)
    [{'severity': 'high'}]
    """
    base = {k: v for k, v in (("model_id", model), ("severity", severity), ("kind", kind)) if v}
    statuses = ACTIVE if status == "active" else () if status == "all" else (status,)
    return [{**base, "status": s} for s in statuses] or [base]


def alerts_of(body: Any) -> list[dict]:
    """The alerts of a list answer: a bare array, or an object with "alerts" (or "items")."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for key in ("alerts", "items"):
            if isinstance(body.get(key), list):
                return body[key]
    raise ValueError(f"unexpected answer from /v1/alerts: {str(body)[:200]}")


def ordered(alerts: list[dict]) -> list[dict]:
    """Most severe first; within a severity the most recently seen first."""
    by_time = sorted(alerts, key=lambda a: str(a.get("last_seen", "")), reverse=True)
    return sorted(by_time, key=lambda a: _RANK.get(a.get("severity"), len(SEVERITIES)))


def ago(iso: str | None, now: datetime) -> str:
    """A short age: '42s', '5m', '3h', '2d' (or '' when the time does not parse).

    >>> ago("2026-01-01T00:00:00Z", datetime(2026, 1, 1, 0, 5, tzinfo=timezone.utc))
    '5m'
    """
    try:
        then = datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    except ValueError:
        return ""
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    s = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def feature_of(alert: dict) -> str:
    latest = alert.get("latest") or {}
    return alert.get("feature") or latest.get("feature") or latest.get("vendor") or ""


def alerts_table(alerts: list[dict], now: datetime, title: str = "Vigil alerts", *, ids: bool = True):
    """A rich Table: severity (coloured), status, model, kind, feature, occurrences, last seen
    (age) and, with `ids` (wide terminals), the alert id. The alert's title says no more than
    these columns, so it is left to --json and --follow."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, header_style="bold")
    fixed = {"no_wrap": True}
    for name, kw in (("severity", fixed), ("status", fixed), ("model", {"overflow": "fold"}),
                     ("kind", {"overflow": "fold"}), ("feature", {"overflow": "fold"}),
                     ("occ.", {"justify": "right", **fixed}), ("last seen", {"justify": "right", **fixed}),
                     *((("alert id", {"style": "dim", **fixed}),) if ids else ())):
        table.add_column(name, **kw)
    for a in ordered(alerts):
        sev, status = a.get("severity", "?"), a.get("status", "?")
        row = [Text(sev, style=COLOURS.get(sev, "")), Text(status, style=STATUS_COLOURS.get(status, "")),
               a.get("model_id", ""), a.get("kind", ""), feature_of(a), str(a.get("occurrences", "")),
               ago(a.get("last_seen"), now)]
        table.add_row(*row, *([a.get("alert_id", "")] if ids else []))
    if not alerts:
        table.caption = "no alerts"
    return table


@dataclass(frozen=True)
class Change:
    kind: str  # "new" | "severity" | "status" | "gone"
    alert: dict
    before: str | None = None
    after: str | None = None


def diff(before: dict[str, dict], after: dict[str, dict]) -> list[Change]:
    """What changed between two polls (alert_id -> alert): new alerts, severity changes,
    status changes, and alerts no longer listed ("gone"), most severe first.
    Repeats that only raise occurrences or last_seen are not changes."""
    out: list[Change] = []
    for aid, a in after.items():
        old = before.get(aid)
        if old is None:
            out.append(Change("new", a, None, a.get("status")))
            continue
        if old.get("severity") != a.get("severity"):
            out.append(Change("severity", a, old.get("severity"), a.get("severity")))
        if old.get("status") != a.get("status"):
            out.append(Change("status", a, old.get("status"), a.get("status")))
    out += [Change("gone", a, a.get("status"), None) for aid, a in before.items() if aid not in after]
    return sorted(out, key=lambda c: _RANK.get(c.alert.get("severity"), len(SEVERITIES)))


def change_text(change: Change, now: datetime):
    """One line for a change: time, what happened, severity, model, kind, feature, title."""
    from rich.text import Text

    a = change.alert
    sev = a.get("severity", "?")
    what = {"new": f"new {a.get('status', '')}", "severity": f"severity {change.before} -> {change.after}",
            "status": f"{change.before} -> {change.after}", "gone": "no longer listed"}[change.kind]
    line = Text(now.strftime("%H:%M:%S "), style="dim")
    line.append(f"{sev:<8}", style=COLOURS.get(sev, ""))
    line.append(f" {what:<28} ", style=STATUS_COLOURS.get(change.after or "", "bold"))
    line.append(f"{a.get('model_id', '')} {a.get('kind', '')}")
    if feature_of(a):
        line.append(f" [{feature_of(a)}]")
    line.append(f"  {a.get('title', '')}  ({a.get('occurrences', '?')}x, {a.get('alert_id', '')})", style="dim")
    return line


def change_json(change: Change) -> dict:
    return {"change": change.kind, "before": change.before, "after": change.after, "alert": change.alert}


# --- I/O -----------------------------------------------------------------------------------


class Unreachable(RuntimeError):
    """The alerts service did not answer, or answered with an error: a message for a person."""


def fetch(client, url: str, qs: list[dict[str, str]]) -> dict[str, dict]:
    """alert_id -> alert, over every query; raises Unreachable with what went wrong."""
    import httpx

    out: dict[str, dict] = {}
    for params in qs:
        try:
            res = client.get(f"{url}/v1/alerts", params=params)
        except httpx.TransportError as exc:
            why = f"{type(exc).__name__}: {exc or 'no reply'}"
            raise Unreachable(f"the alerts service at {url} does not answer ({why}); "
                              "start it with `vigil up` or `vigil serve alerts`, or pass --url") from None
        if res.status_code != 200:
            raise Unreachable(f"GET {res.request.url} answered {res.status_code}: {res.text[:300]}")
        try:
            alerts = alerts_of(res.json())
        except ValueError as exc:
            raise Unreachable(f"GET {res.request.url}: {exc}") from None
        out.update({a["alert_id"]: a for a in alerts if isinstance(a, dict) and "alert_id" in a})
    return out


def _now() -> datetime:
    return datetime.now(timezone.utc)


def run(args) -> int:
    import httpx
    import orjson
    from rich.console import Console

    from shared.settings import get_settings

    settings = get_settings()
    url = (args.url or settings.service_urls()["alerts"]).rstrip("/")
    key = args.api_key or next(iter(settings.api_key_list()), None)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    qs = queries(args.model, args.severity, args.status, args.kind)
    out, err = Console(), Console(stderr=True)

    def emit_json(obj) -> None:
        sys.stdout.write(orjson.dumps(obj).decode() + "\n")
        sys.stdout.flush()

    with httpx.Client(headers=headers, timeout=5.0) as client:
        try:
            seen = fetch(client, url, qs)
        except Unreachable as exc:
            err.print(f"[red]vigil alerts: {exc}[/red]", highlight=False)
            return 1
        if args.json and not args.follow:
            emit_json(ordered(list(seen.values())))
            return 0
        if args.json:  # a follower's first lines are what is there already, as "new"
            for change in diff({}, seen):
                emit_json(change_json(change))
        else:
            out.print(alerts_table(list(seen.values()), _now(), ids=out.width >= WIDE))
        if not args.follow:
            return 0
        if not args.json:
            out.print(f"following {url} every {args.interval:g}s; Ctrl-C stops", style="dim", highlight=False)
        lost = False
        try:
            while True:
                time.sleep(args.interval)
                try:
                    current = fetch(client, url, qs)
                except Unreachable as exc:
                    if not lost:
                        err.print(f"[red]vigil alerts: connection lost, retrying: {exc}[/red]", highlight=False)
                    lost = True
                    continue
                if lost:
                    err.print("[green]vigil alerts: connection back[/green]", highlight=False)
                    lost = False
                changes = diff(seen, current)
                for change in changes:
                    if change.kind == "gone":  # left the listing: say why when the API knows
                        change = _why_gone(client, url, change)
                    if args.json:
                        emit_json(change_json(change))
                    else:
                        out.print(change_text(change, _now()), highlight=False)
                seen = current
        except KeyboardInterrupt:
            return 0


def _why_gone(client, url: str, change: Change) -> Change:
    """An alert no longer listed (resolved under the default "active" filter): its status now."""
    import httpx

    try:
        res = client.get(f"{url}/v1/alerts/{change.alert['alert_id']}")
        if res.status_code == 200:
            alert = res.json()
            if alert.get("status") != change.before:
                return Change("status", alert, change.before, alert.get("status"))
    except (httpx.HTTPError, ValueError):
        pass
    return change


# --- vigil report --------------------------------------------------------------------------


def add_report_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="write a model's report (self-contained HTML) to a file",
                              description="Fetch GET /v1/models/MODEL/report from the alerts service and write "
                                          "it to a file that opens in any browser, offline.")
    p.add_argument("model", help="model_id")
    p.add_argument("-o", "--output", default=None, help="file to write (default: MODEL-report.html)")
    p.add_argument("--windows", type=int, default=96, help="drift windows shown, the newest (default 96)")
    p.add_argument("--url", default=None, help="alerts service base URL (default: from settings)")
    p.add_argument("--api-key", default=None, help="bearer key (default: the first of VIGIL_API_KEYS)")
    return p


def get_report(url: str, model: str, windows: int = 96, headers: dict | None = None, timeout: float = 30.0) -> str:
    """The report's HTML from the alerts service at `url`; raises Unreachable with what went wrong."""
    import urllib.parse

    import httpx

    path = f"{url}/v1/models/{urllib.parse.quote(model, safe='')}/report"
    try:
        res = httpx.get(path, params={"windows": windows}, headers=headers or {}, timeout=timeout)
    except httpx.TransportError as exc:
        why = f"{type(exc).__name__}: {exc or 'no reply'}"
        raise Unreachable(f"the alerts service at {url} does not answer ({why}); "
                          "start it with `vigil up` or `vigil serve alerts`, or pass --url") from None
    if res.status_code == 404:
        raise Unreachable(f"model {model!r}: the alerts service at {url} knows nothing of it "
                          "(no spec registered and nothing recorded)")
    if res.status_code != 200:
        raise Unreachable(f"GET {res.request.url} answered {res.status_code}: {res.text[:300]}")
    return res.text


def run_report(args) -> int:
    from pathlib import Path

    from rich.console import Console

    from shared.settings import get_settings

    settings = get_settings()
    url = (args.url or settings.service_urls()["alerts"]).rstrip("/")
    key = args.api_key or next(iter(settings.api_key_list()), None)
    err = Console(stderr=True)
    try:
        text = get_report(url, args.model, args.windows, {"Authorization": f"Bearer {key}"} if key else {})
    except Unreachable as exc:
        err.print(f"[red]vigil report: {exc}[/red]", highlight=False)
        return 1
    path = Path(args.output or f"{args.model}-report.html").expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        err.print(f"[red]vigil report: cannot write {path}: {exc}[/red]", highlight=False)
        return 1
    print(f"wrote the report of {args.model} to {path.resolve()} ({len(text.encode()) / 1024:.0f} KiB)")
    return 0
