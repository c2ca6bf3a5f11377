"""`vigil demo`: a simulated fleet of model servers posting to the ingest API, and the alerts it raises.

The fleet replays about nine days of event time in `duration` wall-clock seconds (the
history ends now), so drift windows, the oversight's hourly evaluations over seven days and
the vendor's daily SLA periods all close while you watch:

- `credit-risk` (high risk): its feature `f03` shifts by one standard deviation halfway
  through -> data drift; from then on its accuracy (labels a minute after each prediction)
  falls from 0.92 to 0.72 -> a performance trend before the degradation alerts, then a
  critical degradation past 0.15 -> rollback;
- `fraud-score`: every prediction below 0.75 confidence is reviewed by a team of eight;
  three of them stop overriding the AI early on (rubber-stamping) -> reviewer findings; on two
  busy days (twice the traffic) the others override a third as often -> workload pressure; at
  70 % of the run its accuracy drops at once from 0.92 to 0.78 while its inputs stay as they
  were (labels a minute later) -> concept drift, caught online by ADWIN before its window closes;
- `doc-classifier` calls the vendor `acme-ocr` (SLA: p95 latency 250 ms, accuracy 0.85),
  whose latency rises by half halfway through -> vendor SLA violation; labels arrive later.
- `credit-risk`'s segment `region`: its `south` group gets 15 points fewer positive predictions
  -> fairness violation (demographic parity).
- `demand-forecast`, the control: a stable regression model (labels off by N(0, 1), its
  baseline RMSE). Nothing happens to it; an alert on it is a false alarm.
- A careless client now and then: a batch with an invalid event (422, nothing of it published),
  a retried batch (duplicates), labels for predictions that never came (unmatched), a labelling
  backlog posted after its windows were judged (late), and a third-party producer writing a
  record that is not JSON straight into `vigil.predictions` (dead-lettered). Vigil's health
  dashboard shows each.
- Notifications go to local Slack and PagerDuty receivers (`services.receivers`, checking the
  payload formats) unless VIGIL_SLACK_WEBHOOK_URL / VIGIL_PAGERDUTY_ROUTING_KEY are set.

The screen shows the traffic and, below it, the alerts as they fire (from the alerts API). The
summary lists every incident: detected or not, with which severity, and how fast, in event time
(from the onset to the change the alert reports) and in wall time (from sending the onset's
traffic to the alert appearing), and the false alarms on the control, which should be zero.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Group
from rich.live import Live
from rich.table import Table

FEATURES = 20
DAYS = 9.0  # event time the demo covers
WINDOW = 12 * 3600  # the demo models' drift window (event time): ~1,000 events each, so noise stays small
REVIEWERS = [f"reviewer-{i}" for i in range(1, 9)]
STAMPERS = set(REVIEWERS[:3])  # stop overriding after STAMP_FROM of the run
STAMP_FROM = 0.2
OVERRIDE = 0.12  # a careful reviewer's override rate
ACCURACY, ACCURACY_END = 0.92, 0.72  # credit-risk's accuracy before the midpoint and at the end
VENDOR_ACCURACY = 0.9
VENDOR_SLA = {"accuracy": 0.85, "latency_p95_ms": 250.0, "uptime": 0.99, "period_days": 1, "min_samples": 100}
SEGMENT_BIAS = 0.43  # logit shift of region=south: its positive rate falls from 0.50 to ~0.35
CONCEPT_AT, CONCEPT_ACCURACY = 0.7, 0.78  # fraud-score's accuracy drops from ACCURACY at once, inputs unchanged
BUSY_DAYS = (3, 6)  # fraud-score's high-volume days (0-based, event time): twice the traffic ...
BUSY_OVERRIDE = OVERRIDE / 3  # ... and its careful reviewers override less (workload pressure)
RESIDUAL_SD = 1.0  # demand-forecast (the control): a stable regression, labels off by N(0, 1)
# ... its thresholds, as tuned with `vigil evaluate` (README): an RMSE from ~1,000 labels wobbles
# by ~2.5 %, so the default 3 % degradation tier raised 0.6 false alarms a week; with these, none
# in 12 runs of 9 days, and a 25 % rise of the error is still caught within one 12 h window
CONTROL_TUNING = {"min_acceptable": {"rmse": 1.15},
                  "thresholds": {"degradation": {"medium": 0.10, "high": 0.15, "critical": 0.25},
                                 "concept_drift": {"medium": 0.10}}}
CARELESS_EVERY = 10  # ticks between the careless client's requests
COLOURS = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "dim"}


@dataclass
class SimModel:
    model_id: str
    drift_feature: str | None = None  # mean shifts by one standard deviation after the midpoint
    vendor: str | None = None
    reviewed: bool = False  # reviewed below 0.75 confidence; busier on BUSY_DAYS
    declines: bool = False  # labelled; accuracy falls from ACCURACY to ACCURACY_END after the midpoint
    concept: bool = False  # labelled; accuracy drops from ACCURACY to CONCEPT_ACCURACY at CONCEPT_AT
    biased: bool = False  # segment region: south gets fewer positive predictions (fairness)
    control: bool = False  # a stable regression model, labelled: nothing happens to it
    sent: dict[str, int] = field(default_factory=lambda: {"predictions": 0, "reviews": 0, "labels": 0})
    errors: int = 0

    def spec(self) -> dict:
        if self.control:
            baseline = {"rmse": RESIDUAL_SD, "mae": round(RESIDUAL_SD * math.sqrt(2 / math.pi), 4)}
        elif self.declines or self.concept:
            baseline = {"accuracy": ACCURACY}
        else:
            baseline = {"accuracy": VENDOR_ACCURACY} if self.vendor else {}
        return {"task": "regression" if self.control else "binary_classification",
                **({} if self.control else {"positive_label": 1}),
                "risk_tier": "high" if self.drift_feature else "medium",
                "owners": [f"{self.model_id}-team@example.com"], "labels": {"team": self.model_id.split("-")[0]},
                "window_seconds": WINDOW, "allowed_lateness_seconds": 300, "label_wait_seconds": 3600,
                "features": {f"f{j:02d}": {"type": "numeric"} for j in range(FEATURES)},
                **({"baseline_metrics": baseline} if baseline else {}), **(CONTROL_TUNING if self.control else {}),
                **({"fairness": {"attributes": ["region"], "min_group_size": 100}} if self.biased else {})}

    def _predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Predictions and confidences (None for the regression control) of inputs `x`."""
        if self.control:
            return np.round(10 + 2 * x[:, 0] + x[:, 1], 4), None
        score = 1 / (1 + np.exp(-(x[:, 0] + 0.5 * x[:, 1])))
        return (score > 0.5).astype(int), np.round(np.maximum(score, 1 - score), 4)

    def reference(self, rng: np.random.Generator, n: int = 5_000) -> dict[str, list]:
        """A reference sample from the undrifted traffic: what a team uploads from its validation set."""
        x = rng.normal(0.0, 1.0, size=(n, FEATURES))
        pred, conf = self._predict(x)
        cols = {f"f{j:02d}": np.round(x[:, j], 4).tolist() for j in range(FEATURES)}
        cols["prediction"] = pred.tolist()
        if conf is not None:
            cols["confidence"] = conf.tolist()
        return cols

    def accuracy(self, progress: float) -> float | None:
        """The share of right predictions at this point of the run (None: not labelled)."""
        if self.vendor:
            return VENDOR_ACCURACY
        if self.declines:
            return ACCURACY - (ACCURACY - ACCURACY_END) * max(0.0, progress - 0.5) / 0.5
        if self.concept:
            return CONCEPT_ACCURACY if progress >= CONCEPT_AT else ACCURACY
        return None

    def volume(self, day: int) -> int:
        """Traffic multiplier on event-time day `day` of the run."""
        return 2 if self.reviewed and day in BUSY_DAYS else 1

    def traffic(self, rng: np.random.Generator, n: int, start: datetime, seconds: float, progress: float,
                day: int = 0) -> dict[str, list[dict]]:
        """One tick of this model's events: predictions, and the reviews and labels they lead to."""
        n *= self.volume(day)
        override = BUSY_OVERRIDE if self.volume(day) > 1 else OVERRIDE
        x = rng.normal(0.0, 1.0, size=(n, FEATURES))
        if progress > 0.5 and self.drift_feature is not None:
            x[:, int(self.drift_feature[1:])] += 1.0
        south = rng.random(n) < 0.5
        if self.biased:
            x[:, 0] -= SEGMENT_BIAS * south  # the model scores region south lower
        preds, confs = self._predict(x)
        if self.biased:
            x[:, 0] += SEGMENT_BIAS * south  # ... from inputs that do not differ
        residual = rng.normal(0.0, RESIDUAL_SD, size=n)
        acc = self.accuracy(progress)
        ts = [start + timedelta(seconds=float(s)) for s in np.sort(rng.uniform(0, seconds, size=n))]
        out: dict[str, list[dict]] = {"predictions": [], "reviews": [], "labels": []}
        for i in range(n):
            pred = preds[i].item()
            e = {"event_id": uuid.uuid4().hex, "model_id": self.model_id, "model_version": "v1",
                 "timestamp": ts[i].isoformat(), "features": {f"f{j:02d}": round(float(x[i, j]), 4) for j in range(FEATURES)},
                 "prediction": pred}
            conf = None if confs is None else float(confs[i])
            if conf is not None:
                e["confidence"] = conf
            if self.biased:
                e["segment"] = {"region": "south" if south[i] else "north"}
            if self.vendor:
                e["vendor"] = self.vendor
                e["latency_ms"] = round(float(rng.gamma(4.0, 30.0 * (1.5 if progress > 0.5 else 1.0))), 2)
                e["error"] = bool(rng.random() < 0.002)
            truth = None
            if self.control:
                truth = round(pred + float(residual[i]), 4)
            elif acc is not None:
                truth = pred if rng.random() < acc else 1 - pred
            if truth is not None:
                out["labels"].append({"event_id": e["event_id"], "model_id": self.model_id, "label": truth,
                                      "timestamp": (ts[i] + timedelta(seconds=60)).isoformat()})
            if self.reviewed and conf is not None and conf < 0.75:
                reviewer = REVIEWERS[int(rng.integers(len(REVIEWERS)))]
                stamping = reviewer in STAMPERS and progress > STAMP_FROM
                final = pred if stamping or rng.random() >= override else 1 - pred
                out["reviews"].append({"review_id": uuid.uuid4().hex, "model_id": self.model_id, "case_id": e["event_id"],
                                       "reviewer_id": reviewer, "ai_prediction": pred, "ai_confidence": conf,
                                       "human_decision": final, "timestamp": (ts[i] + timedelta(seconds=30)).isoformat(),
                                       "review_seconds": round(float(rng.gamma(2.0, 20.0)), 1)})
            out["predictions"].append(e)
        return out


@dataclass
class Careless:
    """A careless client: what it sent, and what Vigil made of it."""
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("rejected", "duplicates", "unmatched", "late", "dead_lettered"), 0))
    held: list[dict] = field(default_factory=list)  # labels held back, posted after their windows were judged
    last: list[dict] = field(default_factory=list)  # a batch it already sent (to retry)
    backlog_sent: bool = False

    def hold(self, kind: str, events: list[dict]) -> list[dict]:
        """The first labels of the run are held back (a labelling backlog); the rest go now."""
        if kind == "labels" and not self.held and not self.backlog_sent and events:
            self.held, events = events[:20], events[20:]
        if kind == "predictions" and events:
            self.last = events[:5]
        return events

    def act(self, client: httpx.Client, progress: float, bootstrap: str | None) -> None:
        bad = [{**self.last[0], "event_id": uuid.uuid4().hex}, {"event_id": uuid.uuid4().hex, "model_id": 7}]
        if client.post("/v1/predictions", json=bad).status_code == 422:  # nothing of the batch is published
            self.counts["rejected"] += 1
        r = client.post("/v1/predictions", json=self.last)  # a retry of a batch already accepted
        if r.status_code == 202:
            self.counts["duplicates"] += r.json()["duplicates"]
        model = self.last[0]["model_id"]
        stray = [{"event_id": uuid.uuid4().hex, "model_id": model, "label": 1, "timestamp": self.last[0]["timestamp"]}
                 for _ in range(3)]
        if client.post("/v1/labels", json=stray).status_code == 202:
            self.counts["unmatched"] += len(stray)
        if progress > 0.6 and not self.backlog_sent:
            if client.post("/v1/labels", json=self.held).status_code == 202:
                self.counts["late"] += len(self.held)
            self.backlog_sent = True
        if progress > 0.5 and not self.counts["dead_lettered"] and bootstrap:
            import asyncio

            from shared import kafka
            asyncio.run(_produce_raw(bootstrap, kafka.TOPICS["predictions"], model.encode(), b'{"event_id": "oops'))
            self.counts["dead_lettered"] += 1


async def _produce_raw(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    """A third-party producer's record, straight into the topic (not through ingest)."""
    from aiokafka import AIOKafkaProducer
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def fleet() -> list[SimModel]:
    return [SimModel("credit-risk", drift_feature="f03", declines=True, biased=True),
            SimModel("fraud-score", reviewed=True, concept=True),
            SimModel("doc-classifier", vendor="acme-ocr"),
            SimModel("demand-forecast", control=True)]


@dataclass(frozen=True)
class Incident:
    """What the fleet does to one model, from `onset` (a fraction of the run), and the alert
    kinds that detect it (about a feature, vendor or segment attribute when given)."""
    name: str
    model_id: str
    kinds: tuple[str, ...]
    onset: float
    about: str | None = None


def incidents(days: float = DAYS) -> list[Incident]:
    busy = BUSY_DAYS[0] * 86400 / (days * 86400)
    return [Incident("f03 shifts by 1 sd", "credit-risk", ("data_drift",), 0.5, "f03"),
            Incident("accuracy falls: trend", "credit-risk", ("performance_trend",), 0.5),
            Incident("accuracy falls: degradation", "credit-risk", ("performance_degradation",), 0.5),
            Incident("region south approved less", "credit-risk", ("fairness_violation",), 0.0, "region"),
            Incident("3 of 8 reviewers rubber-stamp", "fraud-score", ("reviewer_rubber_stamping",), STAMP_FROM),
            Incident("fewer overrides on busy days", "fraud-score", ("workload_pressure",), busy),
            Incident("abrupt concept change", "fraud-score", ("concept_drift",), CONCEPT_AT),
            Incident("vendor p95 latency x1.5", "doc-classifier", ("vendor_sla_violation",), 0.5, "acme-ocr")]


CONTROLS = ("demand-forecast",)  # nothing happens to them: any alert is a false alarm


def _about(alert: dict) -> str | None:
    return alert.get("feature") or alert.get("vendor")


def _detected_at(alert: dict) -> datetime:
    """When the alert's change happened in event time: an online detector's `detected_at`, else
    the end of the first window it was found in."""
    from shared.events import event_time
    latest = alert.get("latest") or {}
    at = (latest.get("metrics") or {}).get("detected_at") if alert.get("kind") == "concept_drift" else None
    return datetime.fromtimestamp(event_time(at if at is not None else alert["first_seen"]), timezone.utc)


def incident_rows(alerts: list[dict], seen: dict[str, float], event_start: datetime, span: float,
                  duration: float) -> list[dict]:
    """Each incident: detected or not, and how fast — in event time (hours from the onset to the
    change the alert reports) and wall time (seconds from sending the onset's traffic to the demo
    seeing the alert). `seen`: alert id -> wall seconds into the run it was first polled."""
    rows = []
    for inc in incidents():
        onset = event_start + timedelta(seconds=inc.onset * span)
        hits = [a for a in alerts if a.get("model_id") == inc.model_id and a.get("kind") in inc.kinds
                and (inc.about is None or _about(a) == inc.about)]
        first = min(hits, key=_detected_at) if hits else None
        row = {"incident": inc.name, "model_id": inc.model_id, "kind": "/".join(inc.kinds),
               "onset": onset.isoformat(), "detected": first is not None, "severity": None,
               "delay_event_hours": None, "delay_wall_seconds": None}
        if first is not None:
            row["severity"] = first.get("severity")
            row["delay_event_hours"] = round((_detected_at(first) - onset).total_seconds() / 3600, 1)
            if first.get("alert_id") in seen:
                row["delay_wall_seconds"] = round(seen[first["alert_id"]] - inc.onset * duration, 1)
        rows.append(row)
    return rows


def false_alarms(alerts: list[dict]) -> dict[str, list[dict]]:
    """Alerts on the control models (there should be none), by model."""
    return {m: [{"kind": a.get("kind"), "about": _about(a), "severity": a.get("severity")}
                for a in alerts if a.get("model_id") == m] for m in CONTROLS}


def incidents_table(rows: list[dict], controls: dict[str, list[dict]]) -> Table:
    t = Table(title="summary: incidents and how fast Vigil caught them")
    for col in ("model", "incident", "alert", "detected", "delay (event time)", "delay (wall)"):
        t.add_column(col, justify="right" if col.startswith("delay") else "left")
    for r in rows:
        sev = r["severity"] or ""
        t.add_row(r["model_id"], r["incident"], r["kind"],
                  f"[{COLOURS.get(sev, '')}]yes, {sev}[/]" if r["detected"] else "[bold red]no[/]",
                  "-" if r["delay_event_hours"] is None else f"{r['delay_event_hours']:+.1f} h",
                  "-" if r["delay_wall_seconds"] is None else f"{r['delay_wall_seconds']:+.1f} s")
    for m, found in controls.items():
        verdict = "[green]0 false alarms[/]" if not found else \
            f"[bold red]{len(found)} false alarm{'s' * (len(found) > 1)}: " \
            f"{', '.join(sorted({str(a['kind']) for a in found}))}[/]"
        t.add_row(m, "control: nothing happens", "any", verdict, "", "", end_section=False)
    return t


def _traffic_table(models: list[SimModel], elapsed: float, event_time: datetime) -> Table:
    t = Table(title=f"vigil demo — {elapsed:5.1f}s wall, event time {event_time:%Y-%m-%d %H:%M} UTC")
    for col in ("model", "predictions", "reviews", "labels", "failed", "what happens"):
        t.add_column(col, justify="left" if col in ("model", "what happens") else "right")
    notes = {"credit-risk": "f03 drifts at half time, then accuracy falls; region south gets fewer approvals",
             "fraud-score": "3 of 8 reviewers rubber-stamp; busy days; concept change at 70 %",
             "doc-classifier": "vendor acme-ocr slows at half time", "demand-forecast": "control: stable"}
    for m in models:
        t.add_row(m.model_id, f"{m.sent['predictions']:,}", f"{m.sent['reviews']:,}", f"{m.sent['labels']:,}",
                  f"[red]{m.errors}[/red]" if m.errors else "0", notes.get(m.model_id, ""))
    return t


def alerts_table(alerts: list[dict], title: str = "alerts") -> Table:
    """Alerts as a table, most severe first (also used by the summary)."""
    order = {"critical": 0, "high": 1, "medium": 2, "low": 3}
    t = Table(title=f"{title} ({len(alerts)})")
    for col in ("severity", "model", "kind", "about", "seen", "status"):
        t.add_column(col, justify="right" if col == "seen" else "left")
    for a in sorted(alerts, key=lambda a: (order.get(a.get("severity"), 9), a.get("model_id", ""), a.get("kind", ""))):
        latest = a.get("latest") or {}
        about = latest.get("feature") or latest.get("vendor") or ", ".join((latest.get("evidence") or {}).get("reviewers", [])[:4])
        sev = a.get("severity", "?")
        t.add_row(f"[{COLOURS.get(sev, '')}]{sev}[/]", a.get("model_id", ""), a.get("kind", ""), about or "",
                  str(a.get("occurrences", "")), a.get("status", ""))
    return t


def _alerts(client: httpx.Client | None) -> list[dict] | None:
    if client is None:
        return None
    try:
        r = client.get("/v1/alerts")
        return r.json() if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def _print_side_tables(careless: dict[str, int], notified: dict[str, dict[str, int]]) -> None:
    from rich.console import Console
    t = Table(title="the careless client")
    t.add_column("what it did")
    t.add_column("events", justify="right")
    t.add_column("what Vigil did")
    what = {"rejected": ("a batch with an invalid event", "422, nothing of it published"),
            "duplicates": ("retried a batch already accepted", "counted once (202 duplicates)"),
            "unmatched": ("labels for predictions never made", "vigil_labels_unmatched_total"),
            "late": ("labels posted after their window was judged", "vigil_labels_late_total"),
            "dead_lettered": ("a record not JSON, straight to the topic", "vigil.deadletter")}
    for k, n in careless.items():
        t.add_row(what[k][0], f"{n:,}", what[k][1])
    Console().print(t)
    if notified:
        n = Table(title="local notification receivers")
        for col in ("receiver", "accepted", "malformed"):
            n.add_column(col, justify="left" if col == "receiver" else "right")
        for name, c in notified.items():
            n.add_row(name, str(c["accepted"]), f"[red]{c['malformed']}[/red]" if c["malformed"] else "0")
        Console().print(n)


def run_demo(ingest_url: str, duration: float = 60.0, speed: float | None = None, rate: float = 2_000.0,
             api_key: str | None = None, seed: int = 7, alerts_url: str | None = None, settle: float = 10.0,
             summary_path: Path | None = None, bootstrap: str | None = None,
             receivers: dict[str, Any] | None = None) -> int:
    """Send the fleet's traffic for `duration` seconds, then wait `settle` seconds for the last
    alerts; print the summary (and write it as JSON to `summary_path`). `speed` defaults to
    covering DAYS of event time. `bootstrap`: the broker, for the careless third-party producer;
    `receivers`: the local notification receivers (name -> `services.receivers.HttpReceiver`)."""
    speed = speed or DAYS * 86400 / duration
    rng = np.random.default_rng(seed)
    models = fleet()
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    client = httpx.Client(base_url=ingest_url, headers=headers, timeout=30)
    alerts_client = httpx.Client(base_url=alerts_url, headers=headers, timeout=5) if alerts_url else None
    for m in models:
        client.put(f"/v1/models/{m.model_id}", json=m.spec()).raise_for_status()
        client.put(f"/v1/models/{m.model_id}/reference", json=m.reference(rng)).raise_for_status()
    client.put("/v1/vendors/acme-ocr/sla", json=VENDOR_SLA).raise_for_status()
    # the history starts at a window boundary, so no window is judged on a part of its traffic
    first = (time.time() - duration * speed) // WINDOW * WINDOW
    event_start = datetime.fromtimestamp(first, timezone.utc)
    started = time.monotonic()
    tick = 0.5
    per_tick = max(1, int(rate * tick / len(models)))
    alerts: list[dict] = []
    seen: dict[str, float] = {}  # alert id -> wall seconds into the run it was first polled
    careless, ticks = Careless(), 0
    with Live(_traffic_table(models, 0.0, event_start), refresh_per_second=4) as live:
        while (elapsed := time.monotonic() - started) < duration + settle:
            event_now = event_start + timedelta(seconds=min(elapsed, duration) * speed)
            if elapsed < duration:
                ticks += 1
                day = int((event_now - event_start).total_seconds() // 86400)
                for m in models:
                    for kind, events in m.traffic(rng, per_tick, event_now, tick * speed, elapsed / duration,
                                                  day).items():
                        events = careless.hold(kind, events) if m.vendor else events
                        if not events:
                            continue
                        try:
                            r = client.post(f"/v1/{kind}", json=events)
                            if r.status_code == 202:
                                m.sent[kind] += r.json()["accepted"]
                            else:
                                m.errors += len(events)
                        except httpx.HTTPError:
                            m.errors += len(events)
                if ticks % CARELESS_EVERY == 0 and careless.last:
                    careless.act(client, elapsed / duration, bootstrap)
            alerts = _alerts(alerts_client) or alerts
            for a in alerts:
                seen.setdefault(a.get("alert_id", ""), time.monotonic() - started)
            view = [_traffic_table(models, elapsed, event_now)]
            if alerts_client is not None:
                view.append(alerts_table([a for a in alerts if a.get("status") != "resolved"], "alerts firing"))
            live.update(Group(*view))
            time.sleep(max(0.0, tick - (time.monotonic() - started - elapsed)))
    client.close()
    rows, controls = incident_rows(alerts, seen, event_start, duration * speed, duration), false_alarms(alerts)
    if alerts_client is not None:
        alerts_client.close()
        from rich.console import Console
        Console().print(alerts_table(alerts, "summary: alerts raised"))
        Console().print(incidents_table(rows, controls))
        print("false alarms on the control models: " + ", ".join(f"{m} {len(a)}" for m, a in controls.items()))
    notified = {name: {"accepted": len(r.accepted), "malformed": len(r.errors)}
                for name, r in (receivers or {}).items()}
    _print_side_tables(careless.counts, notified)
    total = sum(m.sent["predictions"] for m in models)
    failed = sum(m.errors for m in models)
    if summary_path is not None:
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps({"sent": {m.model_id: m.sent for m in models}, "failed": failed,
                                            "careless_client": careless.counts, "incidents": rows,
                                            "false_alarms": controls,
                                            "notifications": notified, "alerts": alerts}, indent=1))
        print(f"summary written to {summary_path}")
    print(f"\ndemo done: {total:,} predictions accepted, {failed:,} failed, {len(alerts)} alerts, in {duration:.0f}s")
    return 0 if failed == 0 else 1
