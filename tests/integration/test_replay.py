"""`vigil replay` end to end: a file -> the real ingest API -> the broker's topics."""

from __future__ import annotations

import argparse
import json
import threading
import time
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from services.replay import run
from shared.kafka import TOPICS
from tests.support import events_of, model_id, read_records, running_ingest


@pytest.fixture(scope="module")
def ingest(broker, redis_url):
    with running_ingest(broker.address, redis_url) as url:
        yield url


def args(file, url, **kw) -> argparse.Namespace:
    return argparse.Namespace(**{"file": str(file), "kind": None, "url": url, "speed": 0.0, "batch": 1_000,
                                 "api_key": None, **kw})


def mixed_csv(path, m: str, n: int) -> list[str]:
    header = "kind,event_id,model_id,timestamp,prediction,label,features.age,features.city,probabilities.1,segment.region"
    lines = [header]
    for i in range(n):
        ts = f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z"
        lines.append(f"predictions,{m}-{i},{m},{ts},{i % 2},,{20 + i % 50},{'ab'[i % 2]},0.{i % 10},north")
        if i % 4 == 0:
            lines.append(f"labels,{m}-{i},{m},{ts},,{i % 2},,,,")
    path.write_text("\n".join(lines) + "\n")
    return [f"{m}-{i}" for i in range(n)]


def test_a_mixed_csv_reaches_its_topics_and_a_second_run_counts_duplicates(ingest, broker, tmp_path, capsys):
    m = model_id("replay")
    ids = mixed_csv(tmp_path / "history.csv", m, 2_500)
    assert run(args(tmp_path / "history.csv", ingest, batch=700)) == 0
    out = capsys.readouterr().out
    assert "predictions" in out and "2,500" in out and "625" in out

    records = read_records(broker.address, TOPICS["predictions"], keys={m}, expect=2_500)
    got = events_of(records)
    assert sorted(e["event_id"] for e in got) == sorted(ids)
    assert all(len(evs) <= 700 for _, evs in records)
    first = next(e for e in got if e["event_id"] == ids[1])
    assert first["features"] == {"age": 21, "city": "b"} and first["probabilities"] == {"1": 0.1}
    assert first["segment"] == {"region": "north"} and first["prediction"] == 1
    labels = events_of(read_records(broker.address, TOPICS["labels"], keys={m}, expect=625))
    assert sorted(e["event_id"] for e in labels) == sorted(ids[::4])

    assert run(args(tmp_path / "history.csv", ingest)) == 0  # again: nothing new
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if "predictions" in line)
    assert [c.strip() for c in row.strip("│ ").split("│")] == ["predictions", "2,500", "0", "2,500", "0", "0"]


def test_parquet_replay_with_a_kind_option(ingest, broker, tmp_path):
    m = model_id("pq")
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    table = pa.table({"event_id": [f"{m}-{i}" for i in range(300)], "model_id": [m] * 300,
                      "timestamp": [t0 + timedelta(seconds=i) for i in range(300)],
                      "prediction": [i % 3 for i in range(300)],
                      "features.x": [float(i) if i % 10 else None for i in range(300)]})
    pq.write_table(table, tmp_path / "p.parquet")
    assert run(args(tmp_path / "p.parquet", ingest, kind="predictions")) == 0
    got = {e["event_id"]: e for e in events_of(read_records(broker.address, TOPICS["predictions"], keys={m}, expect=300))}
    assert len(got) == 300
    assert got[f"{m}-10"]["features"] == {"x": None} and got[f"{m}-11"]["features"] == {"x": 11.0}
    assert datetime.fromisoformat(got[f"{m}-11"]["timestamp"]) == t0 + timedelta(seconds=11)


def test_bad_rows_are_reported_by_line_and_the_rest_is_sent(ingest, broker, tmp_path, capsys):
    m = model_id("bad")
    good = [{"event_id": f"{m}-{i}", "model_id": m, "features": {"x": i}, "prediction": 1,
             "timestamp": "2026-01-01T00:00:00Z"} for i in range(3)]
    lines = [json.dumps(good[0]), '{"event_id": oops', json.dumps(good[1]),
             json.dumps({**good[2], "confidence": 7}), json.dumps(good[2] | {"event_id": f"{m}-2b"})]
    (tmp_path / "e.jsonl").write_text("\n".join(lines))
    assert run(args(tmp_path / "e.jsonl", ingest, kind="predictions")) == 1
    out = capsys.readouterr().out
    assert "2 row(s) rejected" in out
    assert "line 2: not JSON" in out and "line 4: confidence: Input should be less than or equal to 1" in out
    got = events_of(read_records(broker.address, TOPICS["predictions"], keys={m}, expect=3))
    assert sorted(e["event_id"] for e in got) == sorted([f"{m}-0", f"{m}-1", f"{m}-2b"])


def test_speed_waits_out_event_time_gaps(ingest, broker, tmp_path):
    m = model_id("speed")
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    events = [{"event_id": f"{m}-{i}", "model_id": m, "features": {}, "prediction": 0,
               "timestamp": (t0 + timedelta(seconds=s)).isoformat()} for i, s in enumerate([6, 0, 3])]
    (tmp_path / "e.jsonl").write_text("\n".join(json.dumps(e) for e in events))
    started = time.monotonic()
    assert run(args(tmp_path / "e.jsonl", ingest, kind="predictions", speed=2.0)) == 0
    took = time.monotonic() - started
    assert 3.0 <= took < 15.0  # 6 s of event time at 2x
    records = read_records(broker.address, TOPICS["predictions"], keys={m}, expect=3)
    assert [e["event_id"] for e in events_of(records)] == [f"{m}-1", f"{m}-2", f"{m}-0"]  # event-time order
    assert len(records) == 3  # 1.5 s apart: one request each


def test_503_while_the_broker_is_paused_is_retried_until_it_is_back(broker, redis_url, tmp_path):
    m = model_id("retry")
    events = [{"event_id": f"{m}-{i}", "model_id": m, "features": {}, "prediction": 0,
               "timestamp": "2026-01-01T00:00:00Z"} for i in range(50)]
    (tmp_path / "e.jsonl").write_text("\n".join(json.dumps(e) for e in events))
    with running_ingest(broker.address, redis_url, publish_timeout_seconds=1.0) as url:
        broker.pause()
        result: list[int] = []
        thread = threading.Thread(target=lambda: result.append(run(args(tmp_path / "e.jsonl", url, kind="predictions"))))
        try:
            thread.start()
            time.sleep(4)
            assert thread.is_alive()  # still retrying
        finally:
            broker.resume()
        thread.join(120)
    assert result == [0]
    got = events_of(read_records(broker.address, TOPICS["predictions"], keys={m}, expect=50))
    # at least once: a publish the 503 gave up on may still land beside the retried one
    assert {e["event_id"] for e in got} == {e["event_id"] for e in events}
