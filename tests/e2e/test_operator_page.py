"""The operator page in a real browser: Debian's headless Chromium driven over the Chrome
DevTools Protocol, against the real alerts service (real broker, real Redis).

Findings go to `vigil.findings`; the page must show the alert under its severity with its
model and numbers, acknowledge and silence it through the API, and show a new finding without
a reload. A screenshot is kept at tests/artifacts/operator-page.png.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.support import free_port

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = shutil.which("chromium")


# --- a small Chrome DevTools Protocol client ------------------------------------------------


class Browser:
    """Headless Chromium on a free debugging port, in its own process group and profile."""

    def __init__(self) -> None:
        self.port = free_port()
        self.profile = tempfile.mkdtemp(prefix="vigil-chromium-")
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Browser":
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             f"--remote-debugging-port={self.port}", f"--user-data-dir={self.profile}",
             "--no-first-run", "--window-size=1280,1600", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                targets = httpx.get(f"http://127.0.0.1:{self.port}/json/list", timeout=1).json()
                pages = [t for t in targets if t["type"] == "page"]
                if pages:
                    self.ws_url = pages[0]["webSocketDebuggerUrl"]
                    return self
            except (httpx.HTTPError, ValueError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"chromium did not open its debugging port {self.port}")
            time.sleep(0.1)

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """One page target over a CDP websocket: evaluate, wait for, click, type, screenshot.

    Clicks and typing are real input events (Input.dispatchMouseEvent / dispatchKeyEvent),
    so a button that is hidden, covered or disabled does not react, as for a person."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.waiting: dict[int, asyncio.Future] = {}
        self.errors: list[str] = []  # uncaught exceptions and console errors of the page
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, ws_url: str) -> "Page":
        import websockets

        ws = await websockets.connect(ws_url, max_size=64 * 1024 * 1024, ping_interval=None)
        page = cls(ws)
        for domain in ("Page", "Runtime", "Log"):
            await page.send(f"{domain}.enable")
        return page

    async def close(self) -> None:
        self.reader.cancel()
        await self.ws.close()

    async def _read(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            if "id" in msg:
                fut = self.waiting.pop(msg["id"], None)
                if fut and not fut.done():
                    fut.set_result(msg)
            elif msg.get("method") == "Runtime.exceptionThrown":
                d = msg["params"]["exceptionDetails"]
                self.errors.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
            elif msg.get("method") == "Runtime.consoleAPICalled" and msg["params"]["type"] == "error":
                args = msg["params"]["args"]
                self.errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
            elif msg.get("method") == "Log.entryAdded" and msg["params"]["entry"]["level"] == "error":
                self.errors.append(msg["params"]["entry"]["text"])

    async def send(self, method: str, **params) -> dict:
        msg_id = next(self.ids)
        fut = asyncio.get_running_loop().create_future()
        self.waiting[msg_id] = fut
        await self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        msg = await asyncio.wait_for(fut, 30)
        if "error" in msg:
            raise RuntimeError(f"{method}: {msg['error']}")
        return msg["result"]

    async def evaluate(self, expression: str):
        res = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression!r}: {res['exceptionDetails']}")
        return res["result"].get("value")

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'")

    async def wait_for(self, expression: str, timeout: float = 20.0):
        """The first truthy value of `expression`, polled every 100 ms."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                html = await self.evaluate("document.querySelector('main').innerText")
                raise AssertionError(f"timed out waiting for {expression}; page shows:\n{html}")
            await asyncio.sleep(0.1)

    async def click(self, selector: str) -> None:
        box = await self.wait_for(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            " if (!el || el.disabled) return null; el.scrollIntoView({block: 'center'});"
            " const r = el.getBoundingClientRect();"
            " return r.width ? [r.x + r.width / 2, r.y + r.height / 2] : null; })()")
        x, y = box
        await self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            await self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    async def type(self, selector: str, text: str) -> None:
        await self.click(selector)
        await self.send("Input.insertText", text=text)

    async def press(self, key: str, code: str, keycode: int) -> None:
        """A key press on the focused element (Enter / space activate a focused button)."""
        text = {"Enter": "\r", " ": " "}.get(key)
        await self.send("Input.dispatchKeyEvent", type="keyDown", key=key, code=code,
                        windowsVirtualKeyCode=keycode, **({"text": text} if text else {}))
        await self.send("Input.dispatchKeyEvent", type="keyUp", key=key, code=code, windowsVirtualKeyCode=keycode)

    async def screenshot(self, path: Path) -> bytes:
        res = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        data = base64.b64decode(res["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return data


# --- the real alerts service ----------------------------------------------------------------

pytestmark = [pytest.mark.kafka, pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install "
                                                          "chromium); the operator page test needs it")]
PAGE_REDIS_DB = 11  # the alerts' keys are fixed (vigil:alerts:*): a database of their own, emptied first
OPERATOR = "ana.ops"


@pytest.fixture(scope="module")
def page_kafka(tmp_path_factory):
    """A private Apache Kafka: the alerts service reads `vigil.findings` from the beginning, so
    findings other tests published on the session broker would show on the page."""
    from shared import runtime

    try:
        runtime.java_binary()
        classpath = runtime.kafka_classpath()
    except RuntimeError as exc:
        pytest.fail(f"Apache Kafka cannot run here: {exc}", pytrace=False)
    proc = runtime.start_kafka(tmp_path_factory.mktemp("kafka-page"), classpath=classpath)
    runtime.create_topics(proc.address, 8)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def alerts(page_kafka, redis_url, tmp_path_factory):
    """CORE's alerts app under uvicorn on a free port, in a thread: (base URL, settings, app)."""
    import threading
    import uuid

    import redis as redis_sync
    import uvicorn

    from services.alerts.app import create_app
    from shared.settings import Settings

    db_url = f"{redis_url.rsplit('/', 1)[0]}/{PAGE_REDIS_DB}"
    redis_sync.Redis.from_url(db_url).flushdb()
    port = free_port()
    settings = Settings(kafka_bootstrap=page_kafka.address, redis_url=db_url, alerts_port=port,
                        alerts_group=f"vigil-alerts-page-{uuid.uuid4().hex[:8]}", group_wait_seconds=0.2,
                        data_dir=tmp_path_factory.mktemp("vigil"), slack_webhook_url=None,
                        pagerduty_routing_key=None, webhook_url=None, smtp_url=None, routing_file=None,
                        api_keys=None)
    app = create_app(settings, sweep_seconds=1.0)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if server.started and httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the alerts service did not become ready")
        time.sleep(0.1)
    try:
        yield url, settings, app
    finally:
        server.should_exit = True
        thread.join(30)


def register(settings, model: str, owners: list[str], risk_tier: str = "medium") -> None:
    """What ingest's `PUT /v1/models/{id}` leaves in Redis, which the alerts read."""
    import redis as redis_sync

    spec = {"task": "binary_classification", "risk_tier": risk_tier, "owners": owners,
            "labels": {"team": "risk", "runbook_url": f"https://runbooks.example/{model}"}}
    redis_sync.Redis.from_url(settings.redis_url).set(f"vigil:registry:model:{model}", json.dumps(spec))


def finding(model: str, kind: str, feature: str | None, severity: str, metrics: dict, **evidence) -> dict:
    import uuid
    from datetime import datetime, timedelta, timezone

    end = datetime.now(timezone.utc).replace(microsecond=0)
    return {"finding_id": uuid.uuid4().hex, "kind": kind, "model_id": model, "model_version": "v7",
            "feature": feature, "window_start": (end - timedelta(minutes=15)).isoformat(),
            "window_end": end.isoformat(), "n": 5000, "metrics": metrics, "severity": severity,
            "evidence": evidence, "recommended_actions": []}


async def publish(bootstrap: str, *findings: dict) -> None:
    from aiokafka import AIOKafkaProducer

    from shared import kafka

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for f in findings:
            await producer.send_and_wait(kafka.TOPICS["findings"], kafka.dumps(f), key=f["model_id"].encode())
    finally:
        await producer.stop()


async def api_wait(client: httpx.AsyncClient, path: str, check, timeout: float = 30.0, **params):
    """GET `path` until `check(body)` is truthy; returns that value."""
    deadline = time.monotonic() + timeout
    while True:
        res = await client.get(path, params=params)
        value = check(res.json()) if res.status_code == 200 else None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting on {path} {params}: {res.status_code} {res.text[:2000]}")
        await asyncio.sleep(0.2)


def by_feature(alerts: list[dict], n: int) -> dict | None:
    out = {a["feature"]: a for a in alerts}
    return out if len(out) >= n else None


def card(alert_id: str, expr: str = "") -> str:
    """A JS expression: whether the card of `alert_id` is shown (or `expr` evaluated on it, `el`)."""
    el = f"document.getElementById({json.dumps('alert-' + alert_id)})"
    return f"(() => {{ const el = {el}; return el ? {expr or 'true'} : null; }})()"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


async def test_page_and_its_files_are_served_with_a_strict_policy(alerts):
    url, _, _ = alerts
    async with httpx.AsyncClient(base_url=url) as client:
        index = await client.get("/")
        assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in index.headers["content-security-policy"]
        assert "<title>Vigil alerts</title>" in index.text
        for name, ctype in (("page.js", "text/javascript"), ("page.css", "text/css")):
            res = await client.get(f"/static/{name}")
            assert res.status_code == 200 and res.headers["content-type"].startswith(ctype)
        assert "http://" not in (await client.get("/static/page.js")).text  # no CDN, nothing remote
        for bad in ("/static/nope.js", "/static/..%2Fapp.py", "/static/%2e%2e%2fapi.py", "/static/"):
            assert (await client.get(bad)).status_code == 404, bad


async def test_operator_page_shows_acknowledges_silences_and_updates_live(alerts):
    url, settings, _ = alerts
    bootstrap = settings.kafka_bootstrap
    fraud, churn = "fraud-scorer", "churn-model"
    register(settings, fraud, ["ana@example.com", "risk-oncall"])
    register(settings, churn, ["bo@example.com"])
    with Browser() as browser:
        page = await Page.open(browser.ws_url)
        try:
            await page.goto(url + "/")
            await page.wait_for("document.body.dataset.connection === 'live'")
            # Nothing yet: the page says so.
            assert await page.evaluate("!document.getElementById('empty').hidden")
            assert "No active alerts" in await page.evaluate("document.getElementById('alerts').innerText")

            # A critical drift finding, a high one and a medium one (held back by the critical).
            await publish(bootstrap,
                          finding(fraud, "data_drift", "amount", "critical",
                                  {"psi": 0.41, "ks_statistic": 0.2213, "ks_p_value": 1e-12},
                                  reference_p50=42.5, window_p50=97.25),
                          finding(fraud, "data_drift", "merchant_age", "high", {"psi": 0.23}),
                          finding(fraud, "data_drift", "country", "medium", {"psi": 0.12}))
            async with httpx.AsyncClient(base_url=url) as client:
                got = await api_wait(client, "/v1/alerts", lambda b: by_feature(b, 3), model_id=fraud)
                crit, high, medium = got["amount"], got["merchant_age"], got["country"]
                assert (crit["severity"], high["severity"], medium["status"]) == ("critical", "high", "silenced")

                # Shown under its severity, with model, numbers and evidence.
                await page.wait_for(card(crit["alert_id"], "el.closest('section').dataset.severity === 'critical'"))
                text = await page.evaluate(card(crit["alert_id"], "el.innerText"))
                for expected in (fraud, "data_drift", "amount", "0.41", "0.221", "1.00e-12", "5,000",
                                 "ana@example.com", "firing"):
                    assert expected.lower() in text.lower(), (expected, text)
                assert await page.evaluate(card(high["alert_id"], "el.closest('section').dataset.severity")) == "high"
                medium_text = await page.wait_for(card(medium["alert_id"],
                                                       "el.dataset.status === 'silenced' && el.innerText"))
                assert "Inhibited by" in medium_text and "amount" in medium_text
                assert await page.evaluate("[...document.querySelectorAll('#severities > section:not([hidden])')]"
                                           ".map(s => s.dataset.severity).join()") == "critical,high,medium"
                assert not await page.evaluate(card(crit["alert_id"], "el.querySelector('details').open"))
                await page.click(f"#alert-{crit['alert_id']} details summary")
                evidence = await page.wait_for(card(crit["alert_id"], "el.querySelector('details').open && "
                                                                      "el.querySelector('details pre').innerText"))
                assert '"reference_p50": 42.5' in evidence and '"window_p50": 97.25' in evidence
                history = await page.wait_for(card(crit["alert_id"], "el.querySelector('table.findings')?.innerText"))
                assert "Recent findings (1)" in history and "psi 0.41" in history
                # The critical alert switched the model to human review: a banner says who and why.
                banner = await page.wait_for(f"document.querySelector('#mode-list li[data-model=\"{fraud}\"]')"
                                             "?.innerText")
                mode = (await client.get(f"/v1/models/{fraud}/mode")).json()
                assert mode["mode"] == "human_review" and mode["reason"] in banner and f"set by {mode['by']}" in banner

                # Acknowledge with the mouse: the API records who.
                await page.type("#operator-name", OPERATOR)
                await page.click(f"#alert-{crit['alert_id']} button.ack")
                acked = await api_wait(client, f"/v1/alerts/{crit['alert_id']}",
                                       lambda a: a if a["status"] == "acknowledged" else None)
                assert acked["acknowledged"]["by"] == OPERATOR
                ack_text = await page.wait_for(card(crit["alert_id"],
                                                    "el.dataset.status === 'acknowledged' && el.innerText"))
                assert f"by {OPERATOR}" in ack_text
                assert await page.evaluate(card(crit["alert_id"], "el.querySelector('button.ack').disabled"))
                # the card was redrawn; the keyboard focus stays in it, on the next thing to do
                assert await page.evaluate("document.activeElement.dataset.role + ' ' + "
                                           "document.activeElement.closest('li.alert')?.id") == \
                    f"silence alert-{crit['alert_id']}"

                # Silence with the keyboard: choose 4 h, Tab to the button, Enter.
                await page.evaluate(card(high["alert_id"], "(el.querySelector('select').value = '14400', "
                                                            "el.querySelector('select').focus(), true)"))
                await page.press("Tab", "Tab", 9)
                assert await page.evaluate("document.activeElement.dataset.role") == "silence"
                await page.press("Enter", "Enter", 13)
                silences = await api_wait(client, "/v1/silences", lambda b: [
                    s for s in b if {"name": "fingerprint", "value": high["fingerprint"], "isRegex": False,
                                     "isEqual": True} in s["matchers"]] or None)
                assert len(silences) == 1 and silences[0]["createdBy"] == OPERATOR
                from services.alerts.lifecycle import parse_time
                span = parse_time(silences[0]["endsAt"]) - parse_time(silences[0]["startsAt"])
                assert abs(span.total_seconds() - 4 * 3600) < 60
                await api_wait(client, f"/v1/alerts/{high['alert_id']}", lambda a: a["status"] == "silenced")
                await page.wait_for(card(high["alert_id"], "el.dataset.status === 'silenced' && "
                                                           "el.closest('section').dataset.severity === 'high'"))
                assert high["fingerprint"] in await page.evaluate("document.getElementById('silences').innerText")
                assert f"{OPERATOR} until" in await page.evaluate(
                    card(high["alert_id"], "el.querySelector('[data-fact=silenced-by]').innerText"))
                errors_before_network_loss = list(page.errors)
                unnamed = await page.evaluate(
                    "[...document.querySelectorAll('button, select, input, summary')]"
                    ".filter(el => !(el.getAttribute('aria-label') || (el.labels && el.labels.length)"
                    " || el.textContent.trim())).map(el => el.outerHTML)")
                assert unnamed == []  # every control has an accessible name

                # Live: a repeat and a new alert of another model show up without a reload.
                await page.evaluate("window.__still_the_same_page = 42")
                await publish(bootstrap,
                              finding(fraud, "data_drift", "amount", "critical", {"psi": 0.44}),
                              finding(churn, "prediction_drift", None, "high", {"js_distance": 0.27}))
                new = await api_wait(client, "/v1/alerts", lambda b: b[0] if b else None, model_id=churn)
                await page.wait_for(card(new["alert_id"], "el.closest('section').dataset.severity === 'high'"))
                await page.wait_for(card(crit["alert_id"],
                                         "el.querySelector('[data-fact=occurrences]').innerText === '2'"))
                assert "0.44" in await page.evaluate(card(crit["alert_id"], "el.innerText"))
                assert await page.evaluate("window.__still_the_same_page") == 42
                assert churn in await page.evaluate("document.getElementById('announcer').innerText")
                history = await page.wait_for(card(crit["alert_id"], "el.querySelector('table.findings')"
                                                   "?.innerText.includes('Recent findings (2)') && el.innerText"))
                assert "psi 0.44" in history and "psi 0.41" in history

                # the evidence the operator opened stays open across updates
                await page.wait_for(card(crit["alert_id"], "el.querySelector('details').open"))
                shot = await page.screenshot(ARTIFACTS / "operator-page.png")
                width, height = png_size(shot)
                assert width >= 1000 and height >= 1000 and len(shot) > 30_000
                assert errors_before_network_loss == [], errors_before_network_loss

                # An operator returns the model to automated mode, saying why: recorded, banner gone.
                banner = f'#mode-list li[data-model="{fraud}"]'
                await page.type(f"{banner} input.why", "drift explained: new merchant onboarding")
                await asyncio.sleep(2 * 2.2)  # two polls: what the operator typed and the focus stay
                kept = await page.evaluate(f"document.activeElement === document.querySelector('{banner} input.why')"
                                           " && document.activeElement.value")
                assert kept == "drift explained: new merchant onboarding"
                await page.click(f"{banner} button.clear-mode")
                mode = await api_wait(client, f"/v1/models/{fraud}/mode",
                                      lambda b: b if b["mode"] == "automated" else None)
                assert (mode["by"], mode["reason"]) == (OPERATOR, "drift explained: new merchant onboarding")
                await page.wait_for(f"!document.querySelector('{banner}')")

                # Expiring the silence from the page un-silences the alert.
                await page.click(f'#silence-rows tr[data-silence-id="{silences[0]["id"]}"] button.expire')
                await api_wait(client, f"/v1/alerts/{high['alert_id']}", lambda a: a["status"] == "firing")
                await page.wait_for(card(high["alert_id"], "el.dataset.status === 'firing'"))
                await page.wait_for("document.getElementById('silence-table').hidden")

                # The network goes away: the page says so, and recovers by itself.
                await page.send("Network.enable")
                await page.send("Network.emulateNetworkConditions", offline=True, latency=0,
                                downloadThroughput=-1, uploadThroughput=-1)
                lost = await page.wait_for("document.body.dataset.connection === 'lost' && "
                                           "document.getElementById('connection').innerText", timeout=15)
                assert "Connection lost" in lost
                await page.send("Network.emulateNetworkConditions", offline=False, latency=0,
                                downloadThroughput=-1, uploadThroughput=-1)
                await page.wait_for("document.body.dataset.connection === 'live'", timeout=15)
        finally:
            await page.close()


async def test_vigil_alerts_lists_and_follows_the_real_service(alerts, capsys):
    import sys

    from services import alerts_cli
    from tests.unit.test_alerts_cli import parse

    url, settings, _ = alerts
    model = "cli-model"
    register(settings, model, ["cli@example.com"])
    await publish(settings.kafka_bootstrap, finding(model, "data_drift", "x1", "medium", {"psi": 0.15}))
    async with httpx.AsyncClient(base_url=url) as client:
        first = await api_wait(client, "/v1/alerts", lambda b: b[0] if b else None, model_id=model)

    capsys.readouterr()
    assert await asyncio.to_thread(alerts_cli.run, parse("--url", url, "--model", model, "--json")) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(a["alert_id"], a["severity"], a["status"]) for a in listed] == [(first["alert_id"], "medium", "firing")]
    assert await asyncio.to_thread(alerts_cli.run, parse("--url", url, "--model", model)) == 0
    table = capsys.readouterr().out
    assert model in table and "medium" in table and "x1" in table

    script = ("import argparse, sys\nfrom services import alerts_cli\np = argparse.ArgumentParser()\n"
              "alerts_cli.add_parser(p.add_subparsers(dest='command'))\nsys.exit(alerts_cli.run(p.parse_args()))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    proc = subprocess.Popen([sys.executable, "-c", script, "alerts", "--follow", "--json", "--interval", "0.3",
                             "--url", url, "--model", model], env=env, cwd=Path(__file__).resolve().parents[2],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[dict] = []

    async def until(pred, timeout=30.0):
        deadline = time.monotonic() + timeout
        while not any(pred(x) for x in lines):
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline),
                                          max(0.1, deadline - time.monotonic()))
            assert line, f"vigil alerts --follow ended: {proc.stderr.read()}"
            lines.append(json.loads(line))

    try:
        await until(lambda x: x["change"] == "new" and x["alert"]["alert_id"] == first["alert_id"])
        await publish(settings.kafka_bootstrap,
                      finding(model, "data_drift", "x1", "high", {"psi": 0.25}),
                      finding(model, "data_drift", "x2", "medium", {"psi": 0.11}))
        await until(lambda x: x["change"] == "severity" and x["before"] == "medium" and x["after"] == "high")
        await until(lambda x: x["change"] == "new" and x["alert"]["feature"] == "x2")
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0 and "Traceback" not in err, err
    changes = [(x["change"], x["alert"].get("feature")) for x in lines + [json.loads(s) for s in out.splitlines()]]
    assert changes.count(("severity", "x1")) == 1 and changes.count(("new", "x2")) == 1, changes


async def test_with_api_keys_the_page_asks_for_one_and_then_acknowledges(alerts):
    url, settings, app = alerts
    model = "keyed-model"
    register(settings, model, ["kim@example.com"])
    await publish(settings.kafka_bootstrap, finding(model, "data_drift", "k1", "high", {"psi": 0.22}))
    async with httpx.AsyncClient(base_url=url) as client:
        alert = await api_wait(client, "/v1/alerts", lambda b: b[0] if b else None, model_id=model)
        keys = app.state.api_keys
        app.state.api_keys = [b"s3cret-key"]  # as if VIGIL_API_KEYS=s3cret-key
        try:
            with Browser() as browser:
                page = await Page.open(browser.ws_url)
                try:
                    await page.goto(url + "/")
                    await page.wait_for(card(alert["alert_id"]))
                    await page.type("#operator-name", "kim")
                    await page.click(f"#alert-{alert['alert_id']} button.ack")
                    message = await page.wait_for("!document.getElementById('api-key-box').hidden && "
                                                  "document.getElementById('message').innerText")
                    assert "401" in message and "API key" in message
                    assert await page.evaluate("document.activeElement.id") == "api-key"
                    await page.send("Input.insertText", text="s3cret-key")
                    await page.press("Tab", "Tab", 9)  # leaving the field keeps the key for this tab
                    await page.click(f"#alert-{alert['alert_id']} button.ack")
                    acked = await api_wait(client, f"/v1/alerts/{alert['alert_id']}",
                                           lambda a: a if a["status"] == "acknowledged" else None)
                    assert acked["acknowledged"]["by"] == "kim"
                    assert await page.evaluate("localStorage.getItem('vigil.api_key')") is None  # never kept on disk
                finally:
                    await page.close()
        finally:
            app.state.api_keys = keys
