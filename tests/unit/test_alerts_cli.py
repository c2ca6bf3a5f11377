"""`vigil alerts`: the query plan, the table, the diff between polls and the error when the
service does not answer. The run against the real alerts service is in
tests/e2e/test_operator_page.py (it starts one)."""

from __future__ import annotations

import argparse
import doctest
import socket
import threading
from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from services import alerts_cli as cli
from tests.support import free_port

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def alert(aid: str, severity: str = "high", status: str = "firing", last_seen: str = "2026-01-01T11:55:00+00:00",
          **kw) -> dict:
    return {"alert_id": aid, "fingerprint": f"fp-{aid}", "severity": severity, "status": status,
            "title": f"[{severity.upper()}] data drift of m ({aid})", "summary": "", "model_id": "m",
            "kind": "data_drift", "first_seen": "2026-01-01T11:00:00+00:00", "last_seen": last_seen,
            "occurrences": 3, "findings": [], "actions": [], "owners": [], "feature": "x", **kw}


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="vigil")
    cli.add_parser(p.add_subparsers(dest="command", required=True))
    return p.parse_args(["alerts", *argv])


def rendered(renderable) -> str:
    console = Console(record=True, width=220, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_the_cli_doctests_pass():
    assert doctest.testmod(cli).failed == 0


def test_parser_defaults_to_active_alerts_and_takes_every_filter():
    args = parse()
    assert (args.follow, args.status, args.model, args.severity, args.json, args.url) == \
        (False, "active", None, None, False, None)
    args = parse("--follow", "--model", "fraud", "--severity", "critical", "--status", "resolved",
                 "--url", "http://h:1", "--json", "--kind", "data_drift")
    assert (args.follow, args.model, args.severity, args.status, args.url, args.json, args.kind) == \
        (True, "fraud", "critical", "resolved", "http://h:1", True, "data_drift")
    with pytest.raises(SystemExit):
        parse("--severity", "urgent")


def test_active_queries_the_three_open_statuses_and_all_queries_without_status():
    assert [q["status"] for q in cli.queries(None, None, "active", None)] == ["firing", "acknowledged", "silenced"]
    assert cli.queries("m", "low", "all", "data_drift") == [{"model_id": "m", "severity": "low", "kind": "data_drift"}]
    assert cli.queries(None, None, "resolved", None) == [{"status": "resolved"}]


def test_alerts_of_takes_a_bare_list_or_a_wrapped_one_and_names_anything_else():
    assert cli.alerts_of([alert("a")])[0]["alert_id"] == "a"
    assert cli.alerts_of({"alerts": [alert("b")]})[0]["alert_id"] == "b"
    with pytest.raises(ValueError, match="unexpected answer from /v1/alerts"):
        cli.alerts_of({"detail": "nope"})


def test_table_lists_critical_first_then_the_most_recently_seen():
    alerts = [alert("low1", "low"), alert("hi-old", "high", last_seen="2026-01-01T10:00:00+00:00"),
              alert("crit", "critical"), alert("hi-new", "high", last_seen="2026-01-01T11:59:00+00:00"),
              alert("med", "medium", "silenced")]
    text = rendered(cli.alerts_table(alerts, NOW))
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if "data_drift" in line]
    assert [r[-1] for r in rows] == ["crit", "hi-new", "hi-old", "med", "low1"], text
    assert [r[-2] for r in rows] == ["5m", "1m", "2h", "5m", "5m"]  # ages of last_seen at NOW
    assert rows[3][:2] == ["medium", "silenced"]


def test_a_narrow_table_leaves_the_ids_out_and_keeps_one_line_per_alert():
    alerts = [alert("45c2d4b7c15b4e6fbf5ce21f", "critical"), alert("b", "medium", "silenced")]
    console = Console(record=True, width=80, color_system=None)
    console.print(cli.alerts_table(alerts, NOW, ids=False))
    text = console.export_text()
    assert "45c2d4b7" not in text and "alert id" not in text
    assert len([line for line in text.splitlines() if "data_drift" in line]) == 2, text


def test_table_colours_each_severity_and_says_when_there_are_no_alerts():
    alerts = [alert(s, s) for s in ("critical", "high", "medium", "low")]
    table = cli.alerts_table(alerts, NOW)
    styles = {cell.plain: str(cell.style) for cell in table.columns[0]._cells}
    assert styles == {s: cli.COLOURS[s] for s in ("critical", "high", "medium", "low")}
    assert len(set(styles.values())) == 4
    assert "no alerts" in rendered(cli.alerts_table([], NOW))


def test_diff_reports_new_alerts_severity_and_status_changes_and_departures():
    before = {"a": alert("a", "high"), "b": alert("b", "medium"), "c": alert("c", "low")}
    after = {"a": alert("a", "critical"), "b": alert("b", "medium", "acknowledged"), "d": alert("d", "high")}
    changes = cli.diff(before, after)
    got = {(c.kind, c.alert["alert_id"], c.before, c.after) for c in changes}
    assert got == {("severity", "a", "high", "critical"), ("status", "b", "firing", "acknowledged"),
                   ("new", "d", None, "firing"), ("gone", "c", "firing", None)}
    assert changes[0].alert["severity"] == "critical"  # most severe first


def test_a_repeat_that_only_counts_occurrences_is_not_a_change():
    before = {"a": alert("a")}
    after = {"a": {**alert("a"), "occurrences": 40, "last_seen": "2026-01-01T11:59:59+00:00"}}
    assert cli.diff(before, after) == []


sev = st.sampled_from(cli.SEVERITIES)
status = st.sampled_from(cli.STATUSES)


@given(st.dictionaries(st.sampled_from("abcdefgh"), st.tuples(sev, status)),
       st.dictionaries(st.sampled_from("abcdefgh"), st.tuples(sev, status)))
def test_diff_counts_every_difference_once(b, a):
    before = {k: alert(k, s, t) for k, (s, t) in b.items()}
    after = {k: alert(k, s, t) for k, (s, t) in a.items()}
    changes = cli.diff(before, after)
    kinds = [c.kind for c in changes]
    assert kinds.count("new") == len(a.keys() - b.keys())
    assert kinds.count("gone") == len(b.keys() - a.keys())
    assert kinds.count("severity") == sum(b[k][0] != a[k][0] for k in a.keys() & b.keys())
    assert kinds.count("status") == sum(b[k][1] != a[k][1] for k in a.keys() & b.keys())
    assert cli.diff(after, after) == []


def test_change_lines_say_what_happened():
    a = alert("a", "critical", "acknowledged")
    assert "new firing" in rendered(cli.change_text(cli.Change("new", alert("a", "critical"), None, "firing"), NOW))
    line = rendered(cli.change_text(cli.Change("status", a, "firing", "acknowledged"), NOW))
    assert "12:00:00" in line and "critical" in line and "firing -> acknowledged" in line and "[x]" in line
    assert "severity high -> critical" in rendered(cli.change_text(cli.Change("severity", a, "high", "critical"), NOW))
    assert cli.change_json(cli.Change("gone", a, "firing", None)) == \
        {"change": "gone", "before": "firing", "after": None, "alert": a}


def test_a_service_that_does_not_answer_is_a_clear_error_not_a_traceback(capsys):
    port = free_port()  # nothing listens there
    assert cli.run(parse("--url", f"http://127.0.0.1:{port}")) == 1
    err = capsys.readouterr().err
    assert f"the alerts service at http://127.0.0.1:{port} does not answer" in err
    assert "vigil serve alerts" in err and "Traceback" not in err


def test_a_service_that_hangs_up_is_a_clear_error(capsys):
    with socket.socket() as s:  # accepts the connection and closes it without a word
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        def hang_up():
            while True:
                try:
                    conn, _ = s.accept()
                except OSError:  # the test closed the socket
                    return
                conn.close()

        threading.Thread(target=hang_up, daemon=True).start()
        assert cli.run(parse("--url", f"http://127.0.0.1:{port}", "--json")) == 1
    err = capsys.readouterr().err
    assert "does not answer" in err and "Traceback" not in err
