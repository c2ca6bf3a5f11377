"""The local Slack, PagerDuty, webhook and SMTP receivers (`services.receivers`, which
`vigil demo` uses too) as pytest fixtures: a fresh one per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from services.receivers import (HttpReceiver, PagerDutyReceiver, Request, SlackReceiver, SmtpReceiver,  # noqa: F401
                                WebhookReceiver, pagerduty_problems, slack_problems, webhook_problems)


def _fixture(cls: Callable[[], Any]):
    def fixture() -> Iterator[Any]:
        with cls() as server:
            yield server

    fixture.__doc__ = f"A fresh {cls.__name__} for one test."
    return pytest.fixture(fixture)


slack_receiver = _fixture(SlackReceiver)
pagerduty_receiver = _fixture(PagerDutyReceiver)
webhook_receiver = _fixture(WebhookReceiver)
smtp_receiver = _fixture(SmtpReceiver)
