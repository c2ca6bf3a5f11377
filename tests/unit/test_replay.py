"""`vigil replay` file reading (JSONL, CSV, Parquet) and pacing; pure, no server."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from services.replay import LINGER_SECONDS, ReplayError, Row, read_file, replay, run

T0 = "2026-01-01T00:00:00Z"


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_jsonl_rows_take_their_kind_from_the_line_or_the_default(tmp_path):
    lines = [
        {"kind": "labels", "event_id": "p1", "model_id": "m", "label": "yes", "timestamp": T0},
        {"event_id": "p1", "model_id": "m", "features": {"x": 1.5, "c": None}, "prediction": "yes",
         "timestamp": 1767225600},
        {"kind": "review", "review_id": "r1", "model_id": "m", "reviewer_id": "a", "ai_prediction": 1,
         "human_decision": 0, "timestamp": T0},
    ]
    path = write(tmp_path, "events.jsonl", "\n".join(json.dumps(x) for x in lines[:2]) + "\n\n" + json.dumps(lines[2]) + "\n")
    rows, problems = read_file(path, "predictions")
    assert problems == []
    assert [(r.where, r.kind) for r in rows] == [("line 1", "labels"), ("line 2", "predictions"), ("line 4", "reviews")]
    assert rows[1].event == {k: v for k, v in lines[1].items()}  # typed values kept as they are
    assert rows[1].ts == 1767225600.0 and rows[0].ts == 1767225600.0


def test_bad_jsonl_lines_are_problems_naming_line_and_reason(tmp_path):
    good = {"event_id": "p1", "model_id": "m", "features": {}, "prediction": 1, "timestamp": T0}
    text = "\n".join([
        json.dumps(good),
        "{not json",
        json.dumps([good]),
        json.dumps({**good, "model_id": "bad id", "colour": "red"}),
        json.dumps({**good, "kind": "clicks"}),
        json.dumps({**good, "timestamp": "2026-01-01T00:00:00"}),
    ])
    rows, problems = read_file(write(tmp_path, "e.jsonl", text), "predictions")
    assert [r.where for r in rows] == ["line 1"]
    where = dict(problems)
    assert list(where) == ["line 2", "line 3", "line 4", "line 5", "line 6"]
    assert where["line 2"].startswith("not JSON")
    assert where["line 3"] == "expected an event object, got list"
    assert "colour: unknown field" in where["line 4"] and "model_id: String should match pattern" in where["line 4"]
    assert where["line 5"] == "kind='clicks': must be one of predictions, labels, reviews"
    assert where["line 6"] == "timestamp: Input should have timezone info"


def test_rows_without_a_kind_need_the_kind_option(tmp_path):
    path = write(tmp_path, "e.jsonl", json.dumps({"event_id": "p", "model_id": "m", "label": 1, "timestamp": T0}))
    rows, problems = read_file(path)
    assert rows == [] and problems == [("line 1", "kind: missing: give the file a `kind` column or pass --kind")]
    rows, problems = read_file(path, "labels")
    assert len(rows) == 1 and problems == []


def test_csv_columns_nest_and_cells_are_typed(tmp_path):
    text = (
        "kind,event_id,model_id,timestamp,prediction,features.age,features.city,features.vip,features.score,"
        "probabilities.yes,probabilities.no,segment.region,latency_ms,error\n"
        "predictions,007,m,2026-01-01T00:00:00+01:00,1,41,Oslo,true,nan,0.7,0.3,north,12.5,false\n"
        'predictions,008,m,1767225600,cat,,,,-2.5e-1,,,"multi\nline",,\n'
        "labels,007,m,2026-01-01T00:00:00Z,,,,,,,,,,\n"
    )
    path = write(tmp_path, "e.csv", text)
    rows, problems = read_file(path)
    # the label row's empty prediction columns are another kind's and ignored, but it has no
    # `label`: a problem named by its line (5: the cell before spans two lines)
    assert [r.where for r in rows] == ["line 2", "line 3"]
    assert problems == [("line 5", "label: Field required")]
    first, second = rows[0].event, rows[1].event
    assert first == {"event_id": "007", "model_id": "m", "timestamp": "2026-01-01T00:00:00+01:00", "prediction": 1,
                     "features": {"age": 41, "city": "Oslo", "vip": True, "score": None},
                     "probabilities": {"yes": 0.7, "no": 0.3}, "segment": {"region": "north"},
                     "latency_ms": 12.5, "error": False}
    assert second == {"event_id": "008", "model_id": "m", "timestamp": 1767225600.0, "prediction": "cat",
                      "features": {"age": None, "city": None, "vip": None, "score": -0.25},
                      "segment": {"region": "multi\nline"}}
    assert rows[0].ts == datetime(2025, 12, 31, 23, tzinfo=timezone.utc).timestamp()


def test_csv_label_rows_and_bad_rows(tmp_path):
    text = (
        "kind,event_id,model_id,label,timestamp,confidence\n"
        "labels,p1,m,1,2026-01-01T00:00:00Z,\n"
        "labels,p2,m,0,2026-01-01T00:00:00Z,0.5,extra\n"
        "labels,p3,m,1\n"
        "labels,p4,m,,2026-01-01T00:00:00Z,\n"
        "labels,p5,m,2.5,not a time,\n"
    )
    rows, problems = read_file(write(tmp_path, "l.csv", text))
    assert [r.event for r in rows] == [{"event_id": "p1", "model_id": "m", "label": 1, "timestamp": T0}]
    where = dict(problems)
    assert where["line 3"] == "1 more cell(s) than the header has columns"
    assert where["line 4"] == "2 cell(s) fewer than the header has columns"
    assert where["line 5"] == "label: Field required"
    assert where["line 6"].startswith("timestamp: Input should be a valid datetime")
    assert len(where) == 4  # an empty `confidence` cell of a label row is no problem


def test_csv_with_duplicated_columns_is_refused_naming_them(tmp_path):
    with pytest.raises(ReplayError, match=r"e.csv: line 1: duplicated column\(s\) model_id"):
        read_file(write(tmp_path, "e.csv", "event_id,model_id,model_id\n1,m,m\n"), "labels")


def test_parquet_flat_and_nested_columns(tmp_path):
    table = pa.table({
        "kind": ["predictions", "predictions", "labels"],
        "event_id": ["a", "b", "a"],
        "model_id": ["m", "m", "m"],
        "timestamp": pa.array([datetime(2026, 1, 1, 0, 0, 5), datetime(2026, 1, 1, 0, 0, 1),
                               datetime(2026, 1, 1, 1)], pa.timestamp("us")),  # no zone: UTC
        "prediction": pa.array([1, 0, None], pa.int64()),
        "label": pa.array([None, None, 1], pa.int64()),
        "features.x": pa.array([1.5, None, None], pa.float64()),
        "features.c": pa.array(["u", "v", None]),
        "probabilities": pa.array([[("1", 0.8), ("0", 0.2)], None, None], pa.map_(pa.string(), pa.float64())),
        "segment.region": pa.array(["north", None, None]),
    })
    path = tmp_path / "e.parquet"
    pq.write_table(table, path)
    rows, problems = read_file(path)
    assert problems == []
    assert [(r.where, r.kind) for r in rows] == [("row 1", "predictions"), ("row 2", "predictions"), ("row 3", "labels")]
    assert rows[0].event == {"event_id": "a", "model_id": "m",
                             "timestamp": datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc),
                             "prediction": 1, "features": {"x": 1.5, "c": "u"},
                             "probabilities": {"1": 0.8, "0": 0.2}, "segment": {"region": "north"}}
    assert rows[1].event["features"] == {"x": None, "c": "v"} and "segment" not in rows[1].event
    assert rows[1].ts - rows[0].ts == -4.0
    assert rows[2].event == {"event_id": "a", "model_id": "m", "label": 1,
                             "timestamp": datetime(2026, 1, 1, 1, tzinfo=timezone.utc)}


def test_parquet_label_rows_with_their_own_columns(tmp_path):
    table = pa.table({"event_id": ["a", "b"], "model_id": ["m", "m"], "label": ["yes", "no"],
                      "timestamp": pa.array([datetime(2026, 1, 1, tzinfo=timezone.utc)] * 2,
                                            pa.timestamp("ms", tz="UTC"))})
    path = tmp_path / "labels.parquet"
    pq.write_table(table, path)
    rows, problems = read_file(path, "labels")
    assert problems == [] and [r.event["label"] for r in rows] == ["yes", "no"]


def test_unusable_files_are_refused_naming_the_file(tmp_path):
    with pytest.raises(ReplayError, match="nope.jsonl: no such file"):
        read_file(tmp_path / "nope.jsonl")
    with pytest.raises(ReplayError, match=r"e.xlsx: unknown format '.xlsx'"):
        read_file(write(tmp_path, "e.xlsx", "x"))
    with pytest.raises(ReplayError, match="e.parquet: not a readable Parquet file"):
        read_file(write(tmp_path, "e.parquet", "not parquet"))


def test_run_exits_2_naming_an_unusable_file_before_sending_anything(tmp_path, capsys):
    missing = tmp_path / "missing.csv"
    args = argparse.Namespace(file=str(missing), kind=None, url="http://127.0.0.1:9", speed=0.0, batch=1_000,
                              api_key=None)
    assert run(args) == 2
    assert capsys.readouterr().err.strip() == f"vigil replay: {missing}: no such file"
    assert run(argparse.Namespace(**{**vars(args), "batch": 0})) == 2


class Recorder:
    """A sender that records (clock time, kind, event ids)."""

    def __init__(self, clock):
        self.clock = clock
        self.sent: list[tuple[float, str, list[str]]] = []

    def send(self, kind, rows):
        self.sent.append((self.clock(), kind, [r.event["event_id"] for r in rows]))


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds


def rows_at(times, kinds=None) -> list[Row]:
    kinds = kinds or ["predictions"] * len(times)
    return [Row(f"line {i + 1}", k, {"event_id": f"e{i}"}, t) for i, (t, k) in enumerate(zip(times, kinds))]


def test_fast_replay_batches_per_kind_in_file_order():
    clock = FakeClock()
    sender = Recorder(clock)
    kinds = ["predictions", "labels"] * 5
    replay(rows_at([5, 4, 3, 2, 1, 0, 9, 8, 7, 6], kinds), sender, batch=2, speed=0, clock=clock, sleep=clock.sleep)
    assert clock.now == 1000.0  # nothing waited
    assert sender.sent == [(1000.0, "predictions", ["e0", "e2"]), (1000.0, "labels", ["e1", "e3"]),
                           (1000.0, "predictions", ["e4", "e6"]), (1000.0, "labels", ["e5", "e7"]),
                           (1000.0, "predictions", ["e8"]), (1000.0, "labels", ["e9"])]


def test_speed_replays_event_time_gaps_divided_by_speed_and_no_row_waits_long():
    clock = FakeClock()
    sender = Recorder(clock)
    # event times in seconds; speed 10 -> wall gaps of a tenth
    times = [0.0, 0.5, 0.6, 0.7, 30.0, 10.0, 10.01, 10.02, 10.03]
    replay(rows_at(times), sender, batch=100, speed=10.0, clock=clock, sleep=clock.sleep)
    sent_at = {eid: t for t, _, ids in sender.sent for eid in ids}
    order = [eid for _, _, ids in sender.sent for eid in ids]
    assert order == ["e0", "e1", "e2", "e3", "e5", "e6", "e7", "e8", "e4"]  # event-time order
    for i, ts in enumerate(times):
        due = 1000.0 + ts / 10.0
        assert sent_at[f"e{i}"] >= due - 1e-9, (i, sent_at[f"e{i}"], due)  # never early
        assert sent_at[f"e{i}"] <= due + LINGER_SECONDS + 1e-9  # never held long
    assert clock.now == pytest.approx(1003.0)
    assert ["e5", "e6", "e7", "e8"] in [ids for _, _, ids in sender.sent]  # a burst goes as one batch
