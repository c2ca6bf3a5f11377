"""shared.checkpoint against a real Redis: atomic multi-partition saves, round trips, fencing."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.exceptions import RedisError

from shared.checkpoint import Checkpoint, CheckpointStore
from shared.redis import connect
from shared.runtime import free_port
from shared.settings import Settings
from services.stream import Part, StreamWorker


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


class _Worker(StreamWorker):
    topics = ("t",)

    def dump_state(self, state):
        return state  # the live dict: a write that serialised late would carry later changes


def _worker(store: CheckpointStore, group: str) -> _Worker:
    w = _Worker(Settings(), group, 1.0)
    w.store, w.parts = store, {0: Part({"n": 1}, {"t": 5}, dirty=True), 1: Part({"n": 10}, {"t": 50}, dirty=True)}
    return w


def test_a_background_checkpoint_write_holds_its_save_and_lands_before_the_next(redis_url):
    g = f"g-{uuid.uuid4().hex[:6]}"

    async def fn(store):
        w = _worker(store, g)
        await w._save([0, 1], background=True)  # returns before the write lands
        assert not w.parts[0].dirty and w.saved == {}
        w.parts[0].state["n"], w.parts[0].offsets["t"], w.parts[0].dirty = 2, 9, True  # the next batch
        await w._landed()
        first = await store.load(g, "t", [0, 1])
        await w._save([0])  # a foreground save: landed when it returns
        return w, first, await store.load(g, "t", [0, 1])
    w, first, second = run(redis_url, fn)
    assert (first[0].state, first[0].offsets, first[1].offsets) == ({"n": 1}, {"t": 5}, {"t": 50})
    assert (second[0].state, second[0].offsets, second[1].offsets) == ({"n": 2}, {"t": 9}, {"t": 50})
    assert w.saved == {0: {"t": 9}, 1: {"t": 50}} and not w.parts[0].dirty


def test_a_failed_background_write_leaves_its_partitions_dirty_and_is_raised_by_the_next_save(redis_url):
    async def fn(_):
        dead = connect(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
        try:
            w = _worker(CheckpointStore(dead), "g")
            await w._save([0, 1], background=True)
            with pytest.raises(RedisError):
                await w._save([0])
            return w
        finally:
            await dead.aclose()
    w = run(redis_url, fn)
    assert w.parts[0].dirty and w.parts[1].dirty and w.saved == {}


def test_a_fenced_off_save_drops_the_stale_partitions_and_saves_the_rest_again(redis_url):
    g = f"g-{uuid.uuid4().hex[:6]}"

    async def fn(store):
        w = _worker(store, g)
        w.generation = 1
        await store.claim(g, "t", [1], generation=2)  # another worker took partition 1
        await w._save([0, 1])  # nothing written (all or nothing), then partition 0 again
        return w, await store.load(g, "t", [0, 1])
    w, got = run(redis_url, fn)
    assert list(w.parts) == [0] and got[0].offsets == {"t": 5} and got[1] is None
