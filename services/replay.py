"""`vigil replay FILE`: send a JSONL, CSV or Parquet file of events to the ingest API.

Reading is pure (`read_file`): each row becomes an event of one kind (its `kind` column, or
`--kind`), with `features.<name>`, `probabilities.<class>` and `segment.<name>` columns
nested into those maps, and is validated with the contract's models; a bad row becomes a
problem naming the file, line or row, field and reason, and is not sent. Sending (`run`)
posts the good rows in batches per kind, retries 503 (honouring Retry-After), and ends with
a summary table. With `--speed S` > 0 the rows are sorted by timestamp and the gaps between
event times, divided by S, are waited out on the wall clock (a backfill that plays like live
traffic); 0 sends as fast as the API takes them.

CSV cells are text: an empty cell is absent (a null feature value), numeric text in
`features.*` and in the label fields becomes a number, `true`/`false` a bool, and `nan` in a
feature is null. Parquet timestamps without a time zone are read as UTC.

>>> rows, problems = parse_rows([("line 1", {"kind": "labels", "event_id": "e", "model_id": "m",
...                                          "label": "1", "timestamp": 0})], None)
>>> rows[0].kind, rows[0].event["label"], problems
('labels', '1', [])
"""

from __future__ import annotations

import csv
import math
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from shared.events import EVENT_KINDS

KIND_NAMES = {"predictions": "predictions", "prediction": "predictions",
              "labels": "labels", "label": "labels", "reviews": "reviews", "review": "reviews"}
NESTED = {"features": "feature", "probabilities": "probability", "segment": "segment"}
NUMBER_FIELDS = {"confidence", "latency_ms", "ai_confidence", "review_seconds"}
BOOL_FIELDS = {"error"}
LABEL_FIELDS = {"prediction", "label", "ai_prediction", "human_initial_decision", "human_decision"}
TRUE, FALSE = {"true", "yes"}, {"false", "no"}
_INT = re.compile(r"[+-]?\d+")
LINGER_SECONDS = 0.2  # with --speed: an event waits at most this long for its batch
RETRY_SECONDS = 120.0  # a batch the API keeps refusing with 503 is given up after this
MAX_PROBLEMS_SHOWN = 5


class ReplayError(Exception):
    """The file as a whole cannot be replayed (missing, unknown format, unreadable)."""


@dataclass
class Row:
    where: str  # "line 7" (JSONL, CSV) or "row 7" (Parquet): for error messages
    kind: str
    event: dict[str, Any]
    ts: float  # event time, epoch seconds


# --- reading -------------------------------------------------------------------------------


def read_file(path: str | Path, kind: str | None = None) -> tuple[list[Row], list[tuple[str, str]]]:
    """Rows of a JSONL, CSV or Parquet file (by extension) and its problems [(where, reason)].

    Raises ReplayError when the file cannot be read at all.
    """
    path = Path(path)
    suffixes = [x.lower() for x in path.suffixes]
    if not path.is_file():
        raise ReplayError(f"{path}: no such file")
    suffix = suffixes[-1] if suffixes else ""
    if suffix in (".jsonl", ".ndjson", ".json"):
        raw, typed = _jsonl_rows(path), True
    elif suffix in (".csv", ".tsv"):
        raw, typed = _csv_rows(path, "\t" if suffix == ".tsv" else ","), False
    elif suffix in (".parquet", ".pq"):
        raw, typed = _parquet_rows(path), True
    else:
        raise ReplayError(f"{path}: unknown format {path.suffix or '(no extension)'!r}: "
                          "use .jsonl (or .ndjson), .csv or .parquet")
    return parse_rows(raw, kind, coerce=not typed)


def parse_rows(raw: Iterable[tuple[str, Any]], kind: str | None,
               coerce: bool = False) -> tuple[list[Row], list[tuple[str, str]]]:
    """Raw rows [(where, mapping)] -> validated Rows and problems [(where, reason)].

    `coerce`: the values are text (CSV) and are typed as the module docstring says.
    """
    default = _kind_name(kind) if kind else None
    rows: list[Row] = []
    problems: list[tuple[str, str]] = []
    for where, obj in raw:
        try:
            row = _row(where, obj, default, coerce)
        except ValueError as exc:
            problems.append((where, str(exc)))
            continue
        rows.append(row)
    return rows, problems


def _row(where: str, obj: Any, default_kind: str | None, coerce: bool) -> Row:
    if isinstance(obj, Exception):
        raise ValueError(str(obj))
    if not isinstance(obj, Mapping):
        raise ValueError(f"expected an event object, got {type(obj).__name__}")
    raw_kind = obj.get("kind")
    if raw_kind in (None, ""):
        if default_kind is None:
            raise ValueError("kind: missing: give the file a `kind` column or pass --kind")
        kind = default_kind
    else:
        kind = _kind_name(raw_kind)
    event = nest({k: v for k, v in obj.items() if k != "kind"}, coerce)
    fields = EVENT_KINDS[kind].model_fields
    for name in [k for k, v in event.items() if k not in fields and _empty(v)]:
        del event[name]  # a mixed-kind file: another kind's columns, empty in this row
    try:
        model = EVENT_KINDS[kind].model_validate(event)
    except ValidationError as exc:
        raise ValueError(_reasons(exc)) from None
    return Row(where, kind, event, model.timestamp.timestamp())


def _empty(value: Any) -> bool:
    return value is None or isinstance(value, dict) and all(v is None for v in value.values())


def _kind_name(value: Any) -> str:
    name = KIND_NAMES.get(str(value).strip().lower())
    if name is None:
        raise ValueError(f"kind={value!r}: must be one of predictions, labels, reviews")
    return name


def _reasons(exc: ValidationError) -> str:
    from services.ingest.validation import collapse_errors  # the API's wording, one per field

    errors = collapse_errors(exc.errors(include_url=False), offset_index=False)
    return "; ".join(f"{e['field']}: {e['reason']}" for e in errors)


def nest(raw: Mapping[Any, Any], coerce: bool = False) -> dict[str, Any]:
    """Flat columns -> an event: `features.x` into `features`, `probabilities.c` into
    `probabilities`, `segment.s` into `segment`; a missing value (None, or an empty CSV
    cell) is left out, except in features, where it is a null value.

    >>> nest({"model_id": "m", "features.age": "41", "features.city": "", "probabilities.1": "0.7",
    ...       "segment.region": "", "latency_ms": "12.5", "prediction": "1"}, coerce=True)
    {'model_id': 'm', 'features': {'age': 41, 'city': None}, 'probabilities': {'1': 0.7}, 'latency_ms': 12.5, 'prediction': 1}
    """
    event: dict[str, Any] = {}
    for column, value in raw.items():
        if column is None:  # csv.DictReader puts cells beyond the header here
            raise ValueError(f"{len(value)} more cell(s) than the header has columns")
        column = str(column)
        prefix, dot, name = column.partition(".")
        if dot and prefix in NESTED and name:
            target = event.setdefault(prefix, {})
            if not isinstance(target, dict):
                raise ValueError(f"{column}: `{prefix}` is both a column and a prefix")
            value = _nested_value(prefix, value, coerce)
            if value is not _ABSENT:
                target[name] = value
            continue
        if prefix in NESTED and not dot:
            value = _map(column, value)
            if value is None:
                continue
            if isinstance(event.get(column), dict):
                event[column] = {**value, **event[column]}
                continue
        if value is None or (coerce and value == ""):
            continue
        event[column] = _typed(column, value) if coerce else _plain(value)
    for prefix in ("probabilities", "segment"):  # every cell empty: the map is absent
        if event.get(prefix) == {}:
            del event[prefix]
    return event


_ABSENT = object()


def _nested_value(prefix: str, value: Any, coerce: bool) -> Any:
    if value is None or (isinstance(value, str) and coerce and value == ""):
        return None if prefix == "features" else _ABSENT
    if isinstance(value, float) and math.isnan(value):
        return None if prefix == "features" else _ABSENT
    if not coerce:
        return _plain(value)
    if prefix == "features":
        return None if value.strip().lower() == "nan" else _scalar(value)
    if prefix == "probabilities":
        return _number(value)
    return value


def _map(column: str, value: Any) -> dict | None:
    """A whole `features` / `probabilities` / `segment` value: a mapping, JSON text, a Parquet
    map (list of pairs), or missing."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        import orjson

        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise ValueError(f"{column}: not a JSON object: {value[:80]!r}") from None
    if isinstance(value, list) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
        value = dict(value)
    if not isinstance(value, dict):
        raise ValueError(f"{column}: expected a map of name -> value, got {type(value).__name__}")
    return {str(k): _plain(v) for k, v in value.items()}


def _plain(value: Any) -> Any:
    """A typed (JSON, Parquet) value as the API takes it: naive datetimes are UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _typed(column: str, text: str) -> Any:
    """A CSV cell of a top-level field, typed by the field it fills."""
    if column in LABEL_FIELDS:
        return _scalar(text)
    if column in NUMBER_FIELDS:
        return _number(text)
    if column in BOOL_FIELDS:
        low = text.strip().lower()
        return True if low in TRUE | {"1"} else False if low in FALSE | {"0"} else text
    if column == "timestamp":
        return _number(text) if _is_number(text) else text
    return text


def _scalar(text: str) -> Any:
    """CSV text -> int, float, bool or the text itself."""
    s = text.strip()
    if _INT.fullmatch(s):
        return int(s)
    if _is_number(s):
        return float(s)
    low = s.lower()
    if low in TRUE:
        return True
    if low in FALSE:
        return False
    return text


def _number(text: str) -> Any:
    return float(text) if _is_number(text) else text  # the model then names the field


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _jsonl_rows(path: Path) -> Iterator[tuple[str, Any]]:
    """One event object per line; a .json file may instead hold one array of events."""
    import orjson

    with path.open("rb") as f:
        head = f.read(4096).lstrip()
        f.seek(0)
        if path.suffix.lower() == ".json" and head[:1] == b"[":
            try:
                items = orjson.loads(f.read())
            except orjson.JSONDecodeError as exc:
                raise ReplayError(f"{path}: not JSON: {exc}") from None
            for n, obj in enumerate(items, 1):
                yield f"item {n}", obj
            return
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield f"line {n}", orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield f"line {n}", ValueError(f"not JSON: {exc}")


def _csv_rows(path: Path, delimiter: str) -> Iterator[tuple[str, Any]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        try:
            header = reader.fieldnames
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ReplayError(f"{path}: line 1: cannot read the header: {exc}") from None
        if not header:
            raise ReplayError(f"{path}: empty: a CSV file needs a header row naming the event fields")
        duplicated = sorted({h for h in header if header.count(h) > 1})
        if duplicated:
            raise ReplayError(f"{path}: line 1: duplicated column(s) {', '.join(duplicated)}")
        start = reader.line_num + 1
        while True:
            try:
                obj = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                raise ReplayError(f"{path}: line {start}: {exc}") from None
            if any(v is None for k, v in obj.items() if k is not None):
                yield f"line {start}", ValueError(
                    f"{sum(v is None for v in obj.values())} cell(s) fewer than the header has columns")
            else:
                yield f"line {start}", obj
            start = reader.line_num + 1


def _parquet_rows(path: Path) -> Iterator[tuple[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise ReplayError(f"{path}: not a readable Parquet file: {exc}") from None
    n = 0
    try:
        for batch in pf.iter_batches(batch_size=10_000):
            for obj in batch.to_pylist():
                n += 1
                yield f"row {n}", obj
    except (pa.ArrowException, OSError) as exc:
        raise ReplayError(f"{path}: after row {n}: cannot read on: {exc}") from None


# --- sending -------------------------------------------------------------------------------


@dataclass
class Tally:
    """What became of the rows of one kind that were sent."""

    rows: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0

    @property
    def unsent(self) -> int:
        return self.rows - self.accepted - self.duplicates - self.rejected


@dataclass
class Report:
    tallies: dict[str, Tally] = field(default_factory=lambda: {k: Tally() for k in EVENT_KINDS})
    invalid: int = 0  # rows the file itself got wrong (never sent)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (where, reason), file order
    error: str | None = None  # why sending stopped short

    @property
    def ok(self) -> bool:
        return not self.invalid and self.error is None and not any(
            t.rejected or t.unsent for t in self.tallies.values())


class Sender:
    """Posts one kind's batch to the ingest API until it is answered: 202 tallied, 422's
    records rejected (the rest posted again), 503 retried for up to `retry_seconds`."""

    def __init__(self, client, url: str, report: Report, headers: Mapping[str, str] | None = None,
                 retry_seconds: float = RETRY_SECONDS, on_done=lambda n: None, on_status=lambda s: None):
        self.client = client
        self.url = url
        self.headers = dict(headers or {})
        self.report = report
        self.retry_seconds = retry_seconds
        self.on_done = on_done
        self.on_status = on_status
        self.stopped = False  # a 401/403/404: every further batch would fail the same way

    def send(self, kind: str, rows: list[Row]) -> None:
        from shared.emitter import backoff, post_batch

        tally = self.report.tallies[kind]
        give_up = time.monotonic() + self.retry_seconds
        attempt = 0
        while rows and not self.stopped:
            out = post_batch(self.client, self.url, kind, [r.event for r in rows], self.headers)
            tally.accepted += out.sent - out.duplicates
            tally.duplicates += out.duplicates
            tally.rejected += len(out.rejected)
            self.report.problems += [(rows[i].where, reason) for i, reason in out.rejected]
            self.on_done(out.sent + len(out.rejected))
            if out.failed:
                self.report.error = out.error
                self.stopped = out.status in (401, 403, 404)
            rows = [rows[i] for i in out.retry]
            if not rows or out.retry_after == 0.0:
                continue
            delay = backoff(attempt, out.retry_after)
            if time.monotonic() + delay > give_up:
                self.report.error = f"gave up after {self.retry_seconds:.0f}s of retries: {out.error}"
                return
            self.on_status(f"{out.error}; retry in {delay:.1f}s")
            attempt += 1
            time.sleep(delay)
            self.on_status("")


def replay(rows: list[Row], sender, batch: int, speed: float = 0.0,
           clock=time.monotonic, sleep=time.sleep) -> None:
    """Send `rows` through `sender.send(kind, rows)` in batches of up to `batch` rows per kind.

    With `speed` > 0 the rows go in event-time order, row i no earlier than
    start + (t_i - t_0) / speed on `clock`, and no row waits more than LINGER_SECONDS for
    its batch to fill.
    """
    pending: dict[str, list[Row]] = {}
    oldest: float | None = None  # when the oldest pending row was queued

    def flush() -> None:
        nonlocal oldest
        for kind, group in list(pending.items()):
            sender.send(kind, group)
        pending.clear()
        oldest = None

    if speed > 0:
        rows = sorted(rows, key=lambda r: r.ts)
    start, t0 = clock(), (rows[0].ts if rows else 0.0)
    for row in rows:
        if speed > 0:
            due = start + (row.ts - t0) / speed
            while (wait := due - clock()) > 0:
                if oldest is not None:
                    lingered = clock() - oldest
                    if wait > LINGER_SECONDS or lingered >= LINGER_SECONDS:
                        flush()
                        continue
                    wait = min(wait, LINGER_SECONDS - lingered)
                sleep(min(wait, 0.5))
        if oldest is None:
            oldest = clock()
        group = pending.setdefault(row.kind, [])
        group.append(row)
        if len(group) >= batch:
            sender.send(row.kind, pending.pop(row.kind))
            if not pending:
                oldest = None
        elif speed > 0 and clock() - oldest >= LINGER_SECONDS:
            flush()
    flush()


class RateColumn(ProgressColumn):
    """Events per second, for the progress bar."""

    def render(self, task) -> Text:
        rate = task.speed
        if rate is None and task.elapsed:
            rate = task.completed / task.elapsed  # finished, or too few samples yet: the mean
        return Text(f"{rate or 0:,.0f}/s", style="cyan")


def run(args) -> int:
    """`vigil replay FILE [--kind K] [--url U] [--speed S] [--batch N] [--api-key KEY]`:
    0 when every row was accepted (or a duplicate), 1 when any was rejected or unsent,
    2 when the file or the arguments are unusable."""
    import httpx

    from shared.settings import get_settings

    console, err = Console(), Console(stderr=True)
    if args.batch < 1 or args.speed < 0:
        err.print(f"vigil replay: --batch={args.batch} must be >= 1 and --speed={args.speed} >= 0",
                  style="red", highlight=False, soft_wrap=True, markup=False)
        return 2
    try:
        with err.status(f"reading {args.file}"):
            rows, problems = read_file(args.file, args.kind)
    except (ReplayError, ValueError) as exc:
        err.print(f"vigil replay: {exc}", style="red", highlight=False, soft_wrap=True, markup=False)
        return 2
    report = Report(invalid=len(problems), problems=list(problems))
    for row in rows:
        report.tallies[row.kind].rows += 1
    settings = get_settings()
    url = (args.url or settings.service_urls()["ingest"]).rstrip("/")
    api_key = args.api_key or next(iter(settings.api_key_list()), None)
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("events"), RateColumn(), TimeElapsedColumn(),
                        TextColumn("[yellow]{task.fields[status]}"), console=err)
    try:
        with progress, httpx.Client(timeout=60.0) as client:
            task = progress.add_task(f"replay {Path(args.file).name}", total=len(rows), status="")
            sender = Sender(client, url, report, headers,
                            retry_seconds=getattr(args, "retry_seconds", RETRY_SECONDS),
                            on_done=lambda n: progress.advance(task, n),
                            on_status=lambda s: progress.update(task, status=s))
            replay(rows, sender, args.batch, args.speed)
    except KeyboardInterrupt:
        report.error = "interrupted"
        print_summary(console, report, args.file)
        return 130
    print_summary(console, report, args.file)
    return 0 if report.ok else 1


def print_summary(console: Console, report: Report, file: str | Path, shown: int = MAX_PROBLEMS_SHOWN) -> None:
    """The closing table (per kind: rows, accepted, duplicates, rejected, unsent), then the
    first few reasons, one unwrapped line each (so they can be grepped)."""
    table = Table(title=f"vigil replay {Path(file).name}")
    for col in ("kind", "rows", "accepted", "duplicates", "rejected", "unsent"):
        table.add_column(col, justify="left" if col == "kind" else "right")
    for kind, t in report.tallies.items():
        if t.rows:
            table.add_row(kind, *(f"{v:,}" for v in (t.rows, t.accepted, t.duplicates, t.rejected, t.unsent)))
    if report.invalid:
        table.add_row("invalid in file", f"{report.invalid:,}", "0", "0", f"{report.invalid:,}", "0")
    console.print(table)
    if report.problems:
        console.print(f"{len(report.problems):,} row(s) rejected; the first {min(shown, len(report.problems))}:",
                      style="red", highlight=False)
        for where, reason in report.problems[:shown]:
            console.print(f"  {file}: {where}: {reason}", soft_wrap=True, highlight=False, markup=False)
    if report.error:
        console.print(f"stopped short: {report.error}", style="red", soft_wrap=True, highlight=False, markup=False)
