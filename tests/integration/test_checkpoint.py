"""shared.checkpoint against a real Redis: atomic multi-partition saves, round trips, fencing."""

from __future__ import annotations

import asyncio
import uuid

from shared.checkpoint import Checkpoint, CheckpointStore
from shared.redis import connect


def run(redis_url, fn):
    async def go():
        client = connect(redis_url)
        try:
            return await fn(CheckpointStore(client))
        finally:
            await client.aclose()
    return asyncio.run(go())


def test_a_saved_checkpoint_loads_back_with_its_offset_state_and_outbox(redis_url):
    g = f"g-{uuid.uuid4().hex[:6]}"

    async def fn(store):
        await store.save(g, "t", {0: Checkpoint({"t": 42}, {"m": [1, 2]}, [{"finding_id": "x"}]), 3: Checkpoint({"t": 7})})
        return await store.load(g, "t", [0, 1, 3])
    got = run(redis_url, fn)
    assert got[1] is None and got[3].offsets == {"t": 7}
    assert (got[0].offsets, got[0].state, got[0].pending) == ({"t": 42}, {"m": [1, 2]}, [{"finding_id": "x"}])


def test_a_fenced_off_worker_cannot_overwrite_a_newer_owners_checkpoint(redis_url):
    g = f"g-{uuid.uuid4().hex[:6]}"

    async def fn(store):
        assert await store.save(g, "t", {0: Checkpoint({"t": 10}), 1: Checkpoint({"t": 10})}, generation=1) == []
        await store.claim(g, "t", [1], generation=2)  # another worker took partition 1
        stale = await store.save(g, "t", {0: Checkpoint({"t": 20}), 1: Checkpoint({"t": 20})}, generation=1)
        return stale, await store.load(g, "t", [0, 1])
    stale, got = run(redis_url, fn)
    assert stale == [1] and got[0].offsets == got[1].offsets == {"t": 10}  # all or nothing
