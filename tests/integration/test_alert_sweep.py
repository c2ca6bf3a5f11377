"""The alert store's sweep (`AlertStore.resettle_all`) on a real Redis: a model it found quiet is
not looked at again until something that could change its verdict happens, and then it is."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from services.alerts.lifecycle import Matcher, Silence
from services.alerts.store import AlertStore
from shared.redis import connect
from tests.integration.alerts_support import finding, model_id, private_db


class CountingStore(AlertStore):
    """The store, recording the models the sweep evaluates (its read-only pass, and again the
    transaction of a model that changes)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.evaluated: list[str] = []

    def _resettle_step(self, model_id, now, resolve_stale):
        self.evaluated.append(model_id)
        return super()._resettle_step(model_id, now, resolve_stale)


def test_the_sweep_skips_a_quiet_model_until_its_alerts_a_silence_or_the_clock_move(redis_url):
    async def scenario():
        redis = connect(private_db(redis_url))
        store = CountingStore(redis, resolve_after=2)
        m, other = model_id(), model_id()
        t0 = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
        # 15-minute windows: stale 30 minutes after the last finding arrived
        await store.process_many([finding(m, 1, "high", window_end=t0), finding(other, 1, "high", window_end=t0)], t0)
        status = lambda alerts, model: [a["status"] for a in alerts if a["model_id"] == model]  # noqa: E731

        assert await store.resettle_all(t0 + timedelta(seconds=5)) == 0
        assert sorted(store.evaluated) == sorted([m, other])

        store.evaluated.clear()  # nothing moved: neither is looked at
        assert await store.resettle_all(t0 + timedelta(minutes=1)) == 0
        assert store.evaluated == []

        store.evaluated.clear()  # a new finding of m raises its version: m alone
        await store.process_many([finding(m, 2, "high", feature="y", window_end=t0 + timedelta(minutes=2))],
                                 t0 + timedelta(minutes=2))
        await store.resettle_all(t0 + timedelta(minutes=3))
        assert store.evaluated == [m]

        store.evaluated.clear()  # a silence of m that begins later: both looked at, nothing silenced yet
        starts = t0 + timedelta(minutes=10)
        await store.add_silence(Silence("s1", (Matcher("model_id", m),), starts, starts + timedelta(hours=1),
                                        "ana", "later"))
        await store.resettle_all(t0 + timedelta(minutes=4))
        assert sorted(store.evaluated) == sorted([m, other])
        assert status(await store.open_alerts(), m) == ["firing", "firing"]

        store.evaluated.clear()  # the silence began: the sweep sees it without anything else moving
        assert await store.resettle_all(starts + timedelta(seconds=1)) == 1
        assert status(await store.open_alerts(), m) == ["silenced", "silenced"]
        assert status(await store.open_alerts(), other) == ["firing"]

        store.evaluated.clear()  # m changed (silenced), other was seen quiet past the silence's start
        assert await store.resettle_all(t0 + timedelta(minutes=29)) == 0
        assert store.evaluated == [m]

        store.evaluated.clear()  # 30 minutes after their first findings arrived, those alerts are stale
        assert await store.resettle_all(t0 + timedelta(minutes=30)) == 2
        assert set(store.evaluated) == {m, other}
        assert status(await store.open_alerts(), other) == []
        assert status(await store.open_alerts(), m) == ["silenced"]  # its second finding came at minute 2
        await redis.aclose()

    asyncio.run(scenario())
