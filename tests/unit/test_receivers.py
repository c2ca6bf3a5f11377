"""Receivers' payload builders against the shapes the local stand-ins validate, and the answer classification."""

from __future__ import annotations

import email.policy
import logging
from email import message_from_bytes

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from services.alerts.receivers import Outcome, build, classify, redact, retry_after_seconds
from services.alerts.receivers import email as email_receiver
from services.alerts.receivers import pagerduty, slack, webhook
from services.alerts.routing import Receiver
from shared.events import SEVERITIES
from tests.receivers import pagerduty_problems, slack_problems, webhook_problems

MODEL = {"owners": ["ana@example.com", "bo@example.com"], "labels": {"team": "fraud"}, "risk_tier": "high",
         "runbook_url": "https://runbooks.example.com/fraud"}


def alert(severity="critical", status="firing", title="Drift of amount", summary="PSI 0.41 > 0.3",
          metrics=None, i=0, model_id="fraud-v2") -> dict:
    return {"alert_id": f"a{i}", "fingerprint": f"{model_id}:data_drift:f{i}", "severity": severity,
            "status": status, "title": title, "summary": summary, "model_id": model_id, "kind": "data_drift",
            "first_seen": "2026-01-01T00:00:00+00:00", "last_seen": "2026-01-01T01:00:00+00:00",
            "occurrences": 3, "findings": ["f1"], "actions": [], "owners": MODEL["owners"], "revision": 1,
            "latest": {"finding_id": "f1", "feature": f"f{i}", "window_start": "2026-01-01T00:00:00+00:00",
                       "window_end": "2026-01-01T01:00:00+00:00",
                       "metrics": metrics if metrics is not None else {"psi": 0.41, "ks_p_value": 1e-9},
                       "evidence": {"reference_mean": 1.0}}}


def note(*alerts, status=None, receiver="r", kind="slack") -> dict:
    status = status or ("firing" if any(a["status"] == "firing" for a in alerts) else "resolved")
    return {"id": "n1", "receiver": receiver, "type": kind, "group_key": f"{receiver}/fraud-v2",
            "model_id": "fraud-v2", "status": status, "alerts": list(alerts), "model": MODEL,
            "created_at": 0.0, "attempts": 0}


# -- Slack -----------------------------------------------------------------------------------
def test_slack_message_has_title_severity_model_numbers_owners_and_runbook():
    body = slack.payload(note(alert()))
    assert slack_problems(body) == []
    header, head, fields, context = body["blocks"]
    assert header["text"]["text"] == "[CRITICAL] fraud-v2: Drift of amount"
    assert "PSI 0.41 &gt; 0.3" in head["text"]["text"]  # mrkdwn-escaped
    texts = [f["text"] for f in fields["fields"]]
    assert "*Severity*\ncritical" in texts and "*Model*\nfraud-v2" in texts and "*psi*\n0.41" in texts
    assert "*ks_p_value*\n1e-09" in texts
    ctx = [e["text"] for e in context["elements"]]
    assert "Owners: ana@example.com, bo@example.com" in ctx
    assert "<https://runbooks.example.com/fraud|Runbook>" in ctx
    assert body["text"].startswith("[CRITICAL] fraud-v2: Drift of amount")


def test_slack_limits_hold_for_huge_groups_and_texts():
    many = [alert(title="T" * 500, summary="<&>" * 2000, i=i, metrics={f"m{j}": j * 0.1 for j in range(40)})
            for i in range(80)]
    body = slack.payload(note(*many))
    assert slack_problems(body) == []
    assert len(body["blocks"]) <= 50 and "…and" in str(body["blocks"][-2])
    assert "&lt;&amp;&gt;" in body["blocks"][1]["text"]["text"]  # mrkdwn control characters escaped


def test_slack_resolved_group_title():
    body = slack.payload(note(alert(status="resolved"), alert(status="resolved", i=1)))
    assert body["blocks"][0]["text"]["text"] == "[RESOLVED] fraud-v2: 2 alert(s)" and slack_problems(body) == []


@settings(max_examples=60, deadline=None)
@given(title=st.text(min_size=1, max_size=400), summary=st.text(max_size=4000),
       sev=st.sampled_from(SEVERITIES), n=st.integers(1, 30),
       metrics=st.dictionaries(st.text(min_size=1, max_size=50),
                               st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
                               max_size=15))
def test_slack_payload_is_always_valid(title, summary, sev, n, metrics):
    body = slack.payload(note(*[alert(sev, title=title, summary=summary, metrics=metrics, i=i) for i in range(n)]))
    assert slack_problems(body) == []


def test_slack_validator_catches_what_slack_refuses():
    assert slack_problems({"blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "x" * 151}}]}) == [
        "blocks[0].text.type: 'mrkdwn' not in ('plain_text',)", "blocks[0].text.text: 151 characters > 150"]
    assert slack_problems({"text": "t", "blocks": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "x"}] * 11}]})
    assert slack_problems({"text": "t", "blocks": [{"type": "banner"}]})


# -- PagerDuty -------------------------------------------------------------------------------
@pytest.mark.parametrize("severity,expected", [("critical", "critical"), ("high", "error"), ("medium", "warning"),
                                               ("low", "info")])
def test_pagerduty_trigger_shape_and_severity_map(severity, expected):
    body = pagerduty.payload(note(alert(severity), kind="pagerduty"), "R" * 32)
    assert pagerduty_problems(body) == []
    assert body["routing_key"] == "R" * 32 and body["event_action"] == "trigger"
    assert body["dedup_key"] == "fraud-v2:data_drift:f0"
    p = body["payload"]
    assert p["severity"] == expected and p["source"] == "vigil/fraud-v2" and p["component"] == "f0"
    assert p["group"] == "fraud-v2" and p["class"] == "data_drift"
    assert p["custom_details"]["owners"] == MODEL["owners"] and p["custom_details"]["metrics"]["psi"] == "0.41"
    assert body["links"] == [{"href": MODEL["runbook_url"], "text": "Runbook"}]


def test_pagerduty_summary_is_cut_at_1024_characters():
    body = pagerduty.payload(note(alert(summary="x" * 5000), kind="pagerduty"), "k")
    assert len(body["payload"]["summary"]) == 1024 and pagerduty_problems(body) == []
    short = pagerduty.payload(note(alert(summary="short"), kind="pagerduty"), "k")
    assert short["payload"]["summary"] == "[CRITICAL] Drift of amount: short"


def test_pagerduty_resolve_has_only_the_keys_it_needs():
    body = pagerduty.payload(note(alert(status="resolved"), kind="pagerduty"), "k")
    assert body == {"routing_key": "k", "event_action": "resolve", "dedup_key": "fraud-v2:data_drift:f0"}
    assert pagerduty_problems(body) == []


def test_pagerduty_validator_catches_bad_events():
    assert "payload.severity: 'high' not in ['critical', 'error', 'info', 'warning']" in pagerduty_problems(
        {"routing_key": "k", "event_action": "trigger", "payload": {"summary": "s", "source": "x", "severity": "high"}})
    assert "dedup_key: required for resolve" in pagerduty_problems({"routing_key": "k", "event_action": "resolve"})
    assert pagerduty_problems({"routing_key": "k", "event_action": "trigger",
                               "payload": {"summary": "s" * 1025, "source": "x", "severity": "info"}})


# -- webhook, e-mail ----------------------------------------------------------------------------
def test_webhook_body_is_alertmanager_like():
    body = webhook.payload(note(alert(), alert(status="resolved", i=1), receiver="hook", kind="webhook"))
    assert webhook_problems(body) == []
    assert (body["version"], body["status"], body["receiver"], body["groupKey"]) == ("1", "firing", "hook",
                                                                                     "hook/fraud-v2")
    assert [a["status"] for a in body["alerts"]] == ["firing", "resolved"] and body["notification_id"] == "n1"


def test_email_has_plain_and_html_parts_and_the_notification_id():
    msg = email_receiver.message(note(alert(), alert("high", i=1)), "vigil@x.io", ("a@x.io", "b@x.io"))
    parsed = message_from_bytes(bytes(msg), policy=email.policy.default)
    assert parsed["To"] == "a@x.io, b@x.io" and parsed["Message-ID"] == "<n1@vigil>"
    plain = parsed.get_body(("plain",)).get_content()
    html = parsed.get_body(("html",)).get_content()
    assert "psi=0.41" in plain and "Owners: ana@example.com, bo@example.com" in plain
    assert "Runbook: https://runbooks.example.com/fraud" in plain and html.count("<tr>") == 3


# -- answers, secrets ------------------------------------------------------------------------
@pytest.mark.parametrize("status,headers,expected", [
    (200, {}, Outcome()), (202, {}, Outcome()),
    (429, {"Retry-After": "7"}, Outcome(True, "HTTP 429", 7.0)),
    (503, {}, Outcome(True, "HTTP 503", None)),
    (500, {}, Outcome(True, "HTTP 500", None)),
    (400, {}, Outcome(False, "HTTP 400", None)),
    (404, {}, Outcome(False, "HTTP 404", None)),
])
def test_answers_are_classified_like_alertmanager(status, headers, expected):
    assert classify(httpx.Response(status, headers=headers)) == expected


def test_retry_after_as_http_date_and_garbage():
    assert retry_after_seconds("Thu, 01 Jan 2026 00:00:10 GMT", now=1767225600.0) == 10.0
    assert retry_after_seconds("Thu, 01 Jan 2026 00:00:10 GMT", now=1767225700.0) == 0.0
    assert retry_after_seconds("-") is None and retry_after_seconds(None) is None


def test_redact_and_reprs_hide_secrets():
    r = Receiver("pd", "pagerduty", url=SecretStr("https://e/v2/enqueue"), routing_key=SecretStr("TOPSECRETKEY"))
    assert "TOPSECRETKEY" not in repr(r) and "TOPSECRETKEY" not in repr(build(r, httpx.AsyncClient()))
    assert redact("key TOPSECRETKEY bad", "TOPSECRETKEY", None) == "key *** bad"


async def test_connection_errors_are_retryable_and_name_no_secret(caplog):
    from tests.support import free_port

    caplog.set_level(logging.DEBUG)
    url = f"http://127.0.0.1:{free_port()}/services/T0/B0/HOOKSECRET"
    async with httpx.AsyncClient() as client:
        out = await build(Receiver("s", "slack", url=SecretStr(url)), client).send(note(alert()))
    assert out.retryable and not out.ok and "HOOKSECRET" not in out.error
    assert "HOOKSECRET" not in caplog.text


async def test_smtp_refusing_connection_is_retryable_and_hides_the_password():
    from tests.support import free_port

    r = Receiver("m", "email", smtp_url=SecretStr(f"smtp://u:PASSWORD9@127.0.0.1:{free_port()}"), to=("a@x.io",))
    out = await build(r, httpx.AsyncClient()).send(note(alert()))
    assert out.retryable and "PASSWORD9" not in out.error


@pytest.mark.parametrize("module", ["services.alerts.receivers", "services.alerts.receivers.slack",
                                    "services.alerts.receivers.pagerduty", "services.alerts.receivers.webhook",
                                    "services.alerts.receivers.email"])
def test_the_doctests_pass(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
