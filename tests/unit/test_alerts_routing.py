"""Routing: the route tree's semantics (Alertmanager's), the defaults by tier, and every kind of mistake."""

from __future__ import annotations

import re
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from services.alerts.routing import Routing, RoutingError, labels_of, parse_duration
from shared.settings import Settings

GOOD = """\
route:
  receiver: default-hook
  group_wait: 10s
  group_interval: 1m
  repeat_interval: 2h
  routes:
    - match: {severity: critical}
      receiver: oncall
      group_wait: 0s
      continue: true
    - match: {team: fraud}
      receiver: fraud-slack
      routes:
        - match_re: {kind: "vendor_.*"}
          receiver: vendor-mail
          repeat_interval: 30m
    - match_re: {model_id: "churn-.*", severity: "high|medium"}
      receiver: churn-slack
receivers:
  - {name: oncall, type: pagerduty, routing_key: "${VIGIL_TEST_PD_KEY}"}
  - {name: fraud-slack, type: slack, url: "https://hooks.slack.com/services/T0/B0/fraud"}
  - {name: churn-slack, type: slack}
  - {name: default-hook, type: webhook, url: "http://hooks.internal/vigil", send_resolved: false}
  - name: vendor-mail
    type: email
    smtp_url: smtp://mail.internal:25
    to: [vendors@example.com]
    from: vigil@example.com
"""


@pytest.fixture
def routing(monkeypatch) -> Routing:
    monkeypatch.setenv("VIGIL_TEST_PD_KEY", "pd-secret-key")
    settings = Settings(slack_webhook_url="https://hooks.slack.com/services/T0/B0/default")
    return Routing.parse(GOOD, source="routing.yaml", settings=settings)


def where(routing: Routing, labels: dict, **alert) -> list[tuple[str, float, float]]:
    return [(r.name, route.group_wait, route.repeat_interval) for r, route in routing.match(alert, labels)]


def test_first_matching_child_wins_and_continue_goes_on(routing):
    assert where(routing, {"team": "fraud"}, severity="critical", model_id="f1", kind="data_drift") == [
        ("oncall", 0.0, 7200.0), ("fraud-slack", 10.0, 7200.0)]


def test_nested_route_inherits_receiverless_timers_and_overrides_its_own(routing):
    assert where(routing, {"team": "fraud"}, severity="high", model_id="f1", kind="vendor_sla_violation") == [
        ("vendor-mail", 10.0, 1800.0)]


def test_parent_answers_when_no_child_matches(routing):
    assert where(routing, {"team": "fraud"}, severity="high", model_id="f1", kind="data_drift") == [
        ("fraud-slack", 10.0, 7200.0)]
    assert where(routing, {}, severity="low", model_id="x", kind="data_drift") == [("default-hook", 10.0, 7200.0)]


def test_match_re_is_anchored(routing):
    assert where(routing, {}, severity="high", model_id="churn-7", kind="k")[0][0] == "churn-slack"
    assert where(routing, {}, severity="high", model_id="xchurn-7", kind="k")[0][0] == "default-hook"
    # a matching child (even one that continues) keeps the parent's own receiver out
    assert where(routing, {}, severity="critical", model_id="churn-7", kind="k") == [("oncall", 0.0, 7200.0)]


def test_alert_fields_win_over_model_labels():
    assert labels_of({"severity": "high", "model_id": "m"}, {"severity": "low", "team": "t"}) == {
        "severity": "high", "model_id": "m", "team": "t"}


def test_receivers_carry_secrets_from_env_settings_or_file(routing):
    r = routing.receivers
    assert r["oncall"].routing_key.get_secret_value() == "pd-secret-key"
    assert r["oncall"].url.get_secret_value() == "https://events.pagerduty.com/v2/enqueue"
    assert r["churn-slack"].url.get_secret_value() == "https://hooks.slack.com/services/T0/B0/default"
    assert r["vendor-mail"].to == ("vendors@example.com",) and r["vendor-mail"].sender == "vigil@example.com"
    assert r["default-hook"].send_resolved is False
    assert "pd-secret-key" not in repr(r) and "default" not in repr(r["churn-slack"]).replace("default-", "")


def test_defaults_by_tier_only_with_configured_receivers():
    none = Routing.load(Settings())
    assert none.receivers == {} and none.match({"severity": "critical"}, {}) == []
    s = Settings(pagerduty_routing_key="k", slack_webhook_url="https://hooks.slack.com/x",
                 webhook_url="http://h/hook", smtp_url="smtp://mail:25?to=a@x.io&from=v@x.io",
                 group_wait_seconds=5)
    routing = Routing.load(s)
    names = lambda sev: [r.name for r, _ in routing.match({"severity": sev}, {})]  # noqa: E731
    assert names("critical") == ["pagerduty", "webhook", "email"]
    assert names("high") == names("medium") == ["slack", "webhook", "email"]
    assert names("low") == []
    assert {route.group_wait for _, route in routing.match({"severity": "high"}, {})} == {5.0}
    assert routing.receivers["email"].to == ("a@x.io",)


def test_default_email_without_recipients_is_refused():
    with pytest.raises(RoutingError, match=r"^<settings>:0: smtp_url: VIGIL_SMTP_URL needs \?to="):
        Routing.load(Settings(smtp_url="smtp://u:secret@mail:25"))


def test_load_reads_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIL_TEST_PD_KEY", "k")
    path = tmp_path / "routing.yaml"
    path.write_text(GOOD)
    routing = Routing.load(Settings(routing_file=path, slack_webhook_url="https://h/x"))
    assert routing.source == str(path) and len(routing.receivers) == 5


def test_missing_file_names_it(tmp_path):
    with pytest.raises(RoutingError, match=re.escape(f"{tmp_path / 'nope.yaml'}:0: routing_file: cannot read")):
        Routing.load(Settings(routing_file=tmp_path / "nope.yaml"))


MISTAKES = [
    ("route: [unclosed", 1, "<document>", "not valid YAML"),
    ("route:\n  receiver: a\n   bad: indent\n", 3, "<document>", "not valid YAML"),
    ("- a list", 1, "<document>", "must be a mapping"),
    ("route: {}\nextra: 1\n", 2, "extra", "unknown key"),
    ("route: {}\nroute: {}\n", 2, "route", "duplicate key"),
    ("route:\n  recevier: x\n", 2, "route.recevier", "unknown key"),
    ("route:\n  receiver: ghost\n", 2, "route.receiver", "'ghost' is not a receiver"),
    ("route:\n  group_wait: 5 minutes\n", 2, "route.group_wait", "is not a duration"),
    ("route:\n  group_interval: 0s\n", 2, "route.group_interval", "must be > 0"),
    ("route:\n  repeat_interval: -3\n", 2, "route.repeat_interval", "finite number of seconds >= 0"),
    ("route:\n  match: {severity: critical}\n", 2, "route.match", "root route matches every alert"),
    ("route:\n  routes:\n    - match: {severity: urgent}\n", 3, "route.routes[0].match.severity",
     "'urgent' must be one of low, medium, high, critical"),
    ("route:\n  routes:\n    - match_re: {model_id: '(unclosed'}\n", 3, "route.routes[0].match_re.model_id",
     "is not a regular expression"),
    ("route:\n  routes:\n    - match: [severity]\n", 3, "route.routes[0].match", "mapping of label -> value"),
    ("route:\n  routes:\n    - continue: maybe\n", 3, "route.routes[0].continue", "true or false"),
    ("route:\n  routes: {a: 1}\n", 2, "route.routes", "must be a list of routes"),
    ("receivers: {a: 1}\n", 1, "receivers", "must be a list"),
    ("receivers:\n  - {type: slack, url: 'https://h/x'}\n", 2, "receivers[0].name", "required"),
    ("receivers:\n  - {name: a, type: teams}\n", 2, "receivers[0].type", "'teams' must be one of"),
    ("receivers:\n  - {name: a, type: webhook, url: 'http://h/x'}\n  - {name: a, type: webhook, url: 'http://h/y'}\n",
     3, "receivers[1].name", "duplicate receiver name 'a'"),
    ("receivers:\n  - {name: a, type: slack}\n", 2, "receivers[0].url", "required (or set VIGIL_SLACK_WEBHOOK_URL)"),
    ("receivers:\n  - {name: a, type: slack, url: 'ftp://h/x'}\n", 2, "receivers[0].url", "http or https URL"),
    ("receivers:\n  - {name: a, type: slack, url: '${VIGIL_UNSET_FOR_TEST}'}\n", 2, "receivers[0].url",
     "${VIGIL_UNSET_FOR_TEST}: environment variable is not set"),
    ("receivers:\n  - {name: a, type: slack, url: '${HOME}'}\n", 2, "receivers[0].url", "only VIGIL_*"),
    ("receivers:\n  - {name: a, type: pagerduty}\n", 2, "receivers[0].routing_key", "required"),
    ("receivers:\n  - {name: a, type: pagerduty, routing_key: k, to: [x@y]}\n", 2, "receivers[0].to",
     "unknown key for a pagerduty receiver"),
    ("receivers:\n  - {name: a, type: email, smtp_url: 'smtp://m:25'}\n", 2, "receivers[0].to", "e-mail addresses"),
    ("receivers:\n  - {name: a, type: email, smtp_url: 'smtp://m:25', to: [a@b], from: nobody}\n", 2,
     "receivers[0].from", "'nobody' is not an e-mail address"),
    ("receivers:\n  - {name: a, type: webhook, url: 'http://h/x', send_resolved: 1}\n", 2,
     "receivers[0].send_resolved", "true or false"),
]


@pytest.mark.parametrize("text,line,key,reason", MISTAKES, ids=[m[2] + ":" + m[3][:20] for m in MISTAKES])
def test_each_mistake_is_refused_with_line_key_and_reason(text, line, key, reason):
    with pytest.raises(RoutingError) as err:
        Routing.parse(text, source="r.yaml")
    assert str(err.value).startswith(f"r.yaml:{line}: {key}: "), str(err.value)
    assert reason in str(err.value)


def test_errors_do_not_echo_secret_urls():
    with pytest.raises(RoutingError) as err:
        Routing.parse("receivers:\n  - {name: a, type: slack, url: 'ftp://h/T0/s3cr3t'}\n")
    assert "s3cr3t" not in str(err.value)


def test_a_line_deep_in_the_file_is_reported_where_it_is():
    text = textwrap.dedent("""\
        route:
          receiver: a
          routes:
            - match: {severity: high}
            - match: {severity: medium}
              routes:
                - receiver: b
        receivers:
          - {name: a, type: webhook, url: "http://h/x"}
    """)
    with pytest.raises(RoutingError, match=r"^<routing>:7: route\.routes\[1\]\.routes\[0\]\.receiver: 'b'"):
        Routing.parse(text)


@given(h=st.integers(0, 99), m=st.integers(0, 59), s=st.integers(0, 59))
def test_durations_add_up(h, m, s):
    text = (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{s}s" if s or not (h or m) else "")
    assert parse_duration(text) == h * 3600 + m * 60 + s


def test_secret_fields_are_secretstr(routing):
    assert isinstance(routing.receivers["fraud-slack"].url, SecretStr)


@pytest.mark.parametrize("module", ["services.alerts.routing", "services.alerts.dispatch"])
def test_the_doctests_pass(module):
    """routing's examples, and the dispatcher's pure decisions (needs_notify, backoff)."""
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_the_readme_routing_example_loads_and_routes_as_it_says(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    from shared.settings import Settings
    text = (Path(__file__).parents[2] / "README.md").read_text()
    example = re.search(r"Example routing file:\n\n```yaml\n(.*?)```", text, re.S).group(1)
    (tmp_path / "routing.yaml").write_text(example)
    monkeypatch.setenv("VIGIL_SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T/B/X")
    monkeypatch.setenv("VIGIL_PAGERDUTY_ROUTING_KEY", "k" * 32)
    routing = Routing.load(Settings(routing_file=tmp_path / "routing.yaml"))
    names = lambda sev, labels: [r.name for r, _ in routing.match({"severity": sev, "model_id": "m", "kind": "k"}, labels)]
    assert names("critical", {"team": "fraud"}) == ["oncall-pagerduty", "fraud-webhook"]
    assert names("medium", {"team": "fraud"}) == ["fraud-webhook"] and names("medium", {}) == ["team-slack"]
