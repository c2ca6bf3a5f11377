"""What each `vigil` command does. The parser lives in services/cli.py."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import httpx
from rich.console import Console

from shared.settings import Settings, get_settings

console = Console(stderr=False)
BUILT = ("ingest", "drift", "oversight", "alerts")  # what `vigil up` runs, in start order


def _settings(args) -> Settings:
    settings = get_settings()
    broker = getattr(args, "broker", None)
    return settings.model_copy(update={"embedded_broker": broker}) if broker else settings


def _logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def cmd_serve(args) -> int:
    settings = get_settings()
    _logging(settings)
    import importlib
    importlib.import_module(f"services.{args.service}.app").serve(settings)
    return 0


def wait_ready(url: str, timeout: float = 60.0, children: list[subprocess.Popen] = ()) -> None:
    """Poll `url`/readyz until it answers 200; fail early when one of `children` exits."""
    deadline = time.monotonic() + timeout
    while True:
        for child in children:
            if child.poll() is not None:
                raise RuntimeError(f"service exited early with code {child.returncode}: {child.args}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not ready after {timeout:.0f}s")
        time.sleep(0.2)


class Stack:
    """`vigil up`: the embedded broker and Redis (unless configured) and every built service
    as a child process `vigil serve NAME`, all stopped together."""

    def __init__(self, settings: Settings):
        from shared.runtime import EmbeddedStack
        self.settings = settings
        self.embedded = EmbeddedStack(settings)
        self.children: list[subprocess.Popen] = []

    def __enter__(self) -> "Stack":
        from shared.runtime import spawn
        self.embedded.__enter__()
        env = {**os.environ, "VIGIL_KAFKA_BOOTSTRAP": self.embedded.kafka_bootstrap,
               "VIGIL_REDIS_URL": self.embedded.redis_url}
        try:
            for name in BUILT:
                self.children.append(spawn([sys.executable, "-m", "services.cli", "serve", name],
                                           stdout=None, env=env))
            self.wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    @property
    def urls(self) -> dict[str, str]:
        return {n: u for n, u in self.settings.service_urls().items() if n in BUILT}

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for url in self.urls.values():
            wait_ready(url, max(1.0, deadline - time.monotonic()), self.children)

    def __exit__(self, *exc) -> None:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        self.embedded.__exit__(*exc)


def print_ready(stack: Stack) -> None:
    from rich.table import Table
    table = Table(title="Vigil", show_header=True)
    table.add_column("what")
    table.add_column("address")
    for name, url in stack.urls.items():
        table.add_row(name, url)
    table.add_row("kafka bootstrap", stack.embedded.kafka_bootstrap)
    table.add_row("redis", stack.embedded.redis_url)
    console.print(table)
    console.print("Vigil is up. Ctrl-C stops everything.", highlight=False)
    sys.stdout.flush()


def _wait_for_signal() -> None:
    stop = {"now": False}

    def handler(signum, frame):
        stop["now"] = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    while not stop["now"]:
        time.sleep(0.2)


def cmd_up(args) -> int:
    settings = _settings(args)
    _logging(settings)
    with Stack(settings) as stack:
        print_ready(stack)
        _wait_for_signal()
    console.print("Vigil stopped.")
    return 0


def cmd_demo(args) -> int:
    from services.demo import run_demo
    from services.receivers import PagerDutyReceiver, SlackReceiver
    settings = _settings(args)
    logging.basicConfig(level="WARNING")
    with SlackReceiver() as slack, PagerDutyReceiver() as pagerduty:
        receivers = {}  # the local stand-ins, where the user configured no channel of their own
        if not settings.slack_webhook_url:
            os.environ["VIGIL_SLACK_WEBHOOK_URL"], receivers["slack"] = slack.url, slack
        if not settings.pagerduty_routing_key:
            os.environ.update(VIGIL_PAGERDUTY_URL=pagerduty.url, VIGIL_PAGERDUTY_ROUTING_KEY="vigil-demo")
            receivers["pagerduty"] = pagerduty
        # nine days of event time pass in a minute or two: notifications group over seconds, not minutes
        os.environ.setdefault("VIGIL_GROUP_WAIT_SECONDS", "2")
        os.environ.setdefault("VIGIL_GROUP_INTERVAL_SECONDS", "10")
        with Stack(settings) as stack:
            print_ready(stack)
            return run_demo(stack.urls["ingest"], duration=args.duration, speed=args.speed, rate=args.rate,
                            api_key=(settings.api_key_list() or [None])[0], alerts_url=stack.urls.get("alerts"),
                            summary_path=settings.data_dir / "demo-summary.json",
                            bootstrap=stack.embedded.kafka_bootstrap, receivers=receivers)


def cmd_alerts(args) -> int:
    from services.alerts_cli import run
    return run(args)


def cmd_report(args) -> int:
    from services.alerts_cli import run_report
    return run_report(args)


def cmd_evaluate(args) -> int:
    from services.evaluate import cmd_evaluate as run
    return run(args)


def cmd_replay(args) -> int:
    from services.replay import run
    return run(args)
