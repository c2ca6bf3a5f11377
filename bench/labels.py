"""The drift worker's label join: labels/s with 1M predictions pending, its memory and checkpoint; the worker.

    python -m bench.labels [--pending 1000000] [--labels 500000] [--predictions 1000000]
                           [--window-events 30000] [--broker kafka|tansu] [--no-worker] [--no-profile]

Pure ceiling (this process, no broker): a `LabelJoin` is loaded with `--pending` predictions
over 8 windows of one model, in batches of 1,000 as the worker hands them to
`add_predictions`; then labels for a random `--labels` of them, in shuffled order, are joined
in batches of 1,000 with `add_labels` (label_wait 1 h, labels up to 5 min after their
prediction: every label counts, no window becomes due, all stay pending). Reported: labels/s
and ms per batch; the RSS before and after loading (bytes per pending prediction: the RSS
delta, and the NumPy runs' own nbytes); the partition checkpoint the worker writes to Redis
every 2 s (`Checkpoint.to_bytes` of `DriftState.to_dict()`): its size and the time to dump
and to load it. Then the worker's whole label path on the same labels, no broker: records of
1,000 decoded, checked and applied by `DriftWorker.handle` (hash_ids, event_time, the join,
due windows, the online detector), in the groups one fetch hands the worker (4 MiB); once
plain, once under cProfile (its top functions go into the results).

Worker: starts the broker and Redis, registers a model (20 numeric features, as bench.drift),
produces `--predictions` predictions (windows of `--window-events`, one feature shifted in
every other window so findings are published) and starts one `vigil serve drift` process
(checkpoints every 2 s, the default). Predictions/s from its `vigil_labels_pending` gauge
(every prediction stays pending), from its first batch to the last. Then the worker is
stopped (it checkpoints), a label for every prediction is produced (shuffled, keyed by
model_id, records of 1,000 as ingest packs them) and the worker restarted: its restore time
(start to first label counted), then labels/s from `vigil_labels_matched_total` with every
prediction pending, and its RSS. py-spy (when installed) records the worker over the second
half of the labels; labels/s is also given for the first half alone, without the profiler.
A count that stands still short of its total for 30 s ends the phase: the labels that never
joined are reported (`labels_lost`), with the worker's counters, checkpoints and stacks.

Targets (the issue): at least 100,000 labels/s per worker with 1M pending; the worker's
predictions/s with the join on at or above 69,700 (bench.drift before the join).
Results go to bench/results/labels.json.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import gc
import os
import pstats
import re
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import psutil
import redis
from rich.console import Console
from rich.table import Table

from bench import scratch, save_result
from shared import kafka
from shared.checkpoint import Checkpoint
from shared.events import ModelSpec
from shared.runtime import EmbeddedStack, free_port
from shared.settings import Settings
from shared.stats.sample import hash_ids
from services import stream
from services.drift.app import LABELS, TOPIC, DriftWorker, Registry
from services.drift.labels import ROW, Joined, LabelJoin
from services.drift.state import DriftState, join_config
from tests.integration import drift_support as ds

console = Console()
ROOT = Path(__file__).resolve().parent.parent
RECORD = 1_000
MODEL = "bench-labels"
PURE_WINDOWS = 8
LABEL_DELAY = 300.0  # a label comes up to 5 min after its prediction (label_wait: 1 h)
FETCH_BYTES = 4 * 1024 * 1024  # the worker's max_partition_fetch_bytes: what one handle() gets at most
PROFILE_LABELS = 200_000  # labels replayed under cProfile
CHUNK = 100_000  # label events built and produced at a time
TARGET_LABELS = 100_000
TARGET_PREDICTIONS = 69_700
TOP = 20
STALL = 30.0  # seconds a followed count may stand still before the phase is called over


def _rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


def _labels(ids: list[str], lts: np.ndarray, values: list[int]) -> list[dict]:
    """Label events as a client posts them (RFC 3339 times)."""
    return [{"event_id": i, "model_id": MODEL, "label": y, "timestamp": _iso(t)}
            for i, t, y in zip(ids, lts.tolist(), values)]


def _fetches(values: list[bytes]) -> list[list[SimpleNamespace]]:
    """Label records as the consumer hands them to `handle`: up to FETCH_BYTES a fetch."""
    out, group, size = [], [], 0
    for off, v in enumerate(values):
        if group and size + len(v) > FETCH_BYTES:
            out.append(group)
            group, size = [], 0
        group.append(SimpleNamespace(topic=LABELS, key=MODEL.encode(), value=v, offset=off))
        size += len(v)
    return out + [group] if group else out


class Feed:
    """The models feed as a caught-up worker sees it: this one model."""

    def __init__(self, spec: dict, ref: dict, model_id: str = MODEL):
        self.known, self.versions = {model_id: (spec, ref)}, {model_id: 1}

    def model(self, model_id: str):
        return self.known.get(model_id)


async def _handle(worker: DriftWorker, part: stream.Part, fetches) -> list[float]:
    times = []
    for records in fetches:
        t = time.perf_counter()
        await worker.handle(part, records[0].topic, records)
        times.append(time.perf_counter() - t)
    return times


def _top_cprofile(prof: cProfile.Profile) -> list[dict]:
    st = pstats.Stats(prof)
    total = sum(v[2] for v in st.stats.values())
    rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:TOP]
    return [{"function": f"{_short(f)}:{line}({fn})", "calls": nc, "self_s": round(tt, 4), "cumulative_s": round(ct, 4),
             "self_share": round(tt / total, 4)} for (f, line, fn), (_, nc, tt, ct, _) in rows]


def _short(frame: str) -> str:
    """A frame or a file name without the repository's or site-packages' directory."""
    return re.sub(r"[^\s(]*site-packages/", "", frame).replace(str(ROOT) + os.sep, "")


def _nbytes(obj, depth: int = 0) -> int:
    """The NumPy arrays' bytes an object holds (in attributes, lists of them, and one level of objects)."""
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(x, depth) for x in obj if isinstance(x, np.ndarray))
    if depth < 2 and hasattr(obj, "__dict__"):
        return sum(_nbytes(v, depth + 1) for v in vars(obj).values())
    return 0


def _quantiles(times: list[float]) -> dict:
    a = np.array(times) * 1000
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "max": float(a.max())}


def pure(args, rng: np.random.Generator, profile: bool) -> tuple[dict, bytes]:
    """The join alone, then the worker's label path, in this process; (results, a 1M-pending checkpoint)."""
    n, per = args.pending, -(-args.pending // PURE_WINDOWS)
    settings = Settings(kafka_bootstrap=None, redis_url=None)
    spec_json, ref_json = ds.spec(), ds.reference(rng)
    jcfg = join_config(ModelSpec.model_validate(spec_json), settings)
    jcfg = dataclasses.replace(jcfg, max_pending=max(jcfg.max_pending, 2 * n))
    with console.status(f"pure: building {n:,} predictions and {args.labels:,} labels"):
        idx = np.arange(n)
        ids = [f"{MODEL}-{w}-{i}" for w, i in zip((idx // per).tolist(), (idx % per).tolist())]
        keys = hash_ids(ids)
        starts = ds.T0 + (idx // per) * ds.WINDOW
        ts = np.sort(starts + rng.uniform(0, ds.WINDOW - 1e-3, n))  # windows are disjoint: each stays in its own
        pred, conf, variants = rng.integers(0, 2, n).astype(float), rng.uniform(0.5, 1.0, n), np.zeros(n, np.int8)
        sel = rng.permutation(n)[:args.labels]  # a random subset, shuffled
        lkeys, lts = keys[sel], ts[sel] + rng.uniform(1.0, LABEL_DELAY, len(sel))
        lvalues = rng.integers(0, 2, len(sel)).tolist()
        values = [v for _, v in kafka.pack_records(_labels([ids[i] for i in sel.tolist()], lts, lvalues), RECORD)]
        fetches = _fetches(values)
        clock = ds.window_events(MODEL, PURE_WINDOWS - 1, RECORD, rng)  # one prediction record through handle():
        for e in clock:  # the model's drift windows exist, so due windows and the detector run
            e["event_id"] += "-clock"
        clock_record = [SimpleNamespace(topic=TOPIC, key=MODEL.encode(), value=kafka.dumps(clock), offset=0)]
        del ids, clock

    lj = LabelJoin()
    rss0 = _rss()
    with console.status(f"pure: {n:,} predictions into the join"):
        t0 = time.perf_counter()
        for i in range(0, n, RECORD):
            s = slice(i, i + RECORD)
            rows = lj.rows(keys[s], starts[s], ts[s], pred[s], conf[s], [None] * len(keys[s]), variants[s])
            lj.add_predictions(rows, {int(a): int(a) + ds.WINDOW for a in np.unique(starts[s]).tolist()}, jcfg)
        load_s = time.perf_counter() - t0
    rss1 = _rss()
    assert len(lj) == n, len(lj)
    nbytes = _nbytes(lj)
    console.log(f"pure: {n:,} pending in {load_s:.1f} s; RSS {rss0 / 2**20:,.0f} -> {rss1 / 2**20:,.0f} MiB")

    def dump(state: DriftState) -> bytes:
        return Checkpoint({TOPIC: n, LABELS: 0}, state.to_dict()).to_bytes()

    def load(blob: bytes) -> DriftState:
        return DriftState.from_dict(Checkpoint.from_bytes(blob).state)

    with console.status("pure: checkpoint dump and load"):
        state = DriftState(labels={MODEL: lj})
        dumps, loads = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            blob = dump(state)
            dumps.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            copy = load(blob)
            loads.append(time.perf_counter() - t0)
        assert len(copy.joins[MODEL]) == n
        copies = [load(blob), load(blob) if profile else None]
        del copy

    with console.status(f"pure: {len(sel):,} labels through add_labels, batches of {RECORD:,}"):
        times, joined = [], Joined()
        for i in range(0, len(sel), RECORD):
            s = slice(i, i + RECORD)
            t0 = time.perf_counter()
            joined += lj.add_labels(lkeys[s], lts[s], lvalues[s], jcfg)
            times.append(time.perf_counter() - t0)
    assert joined.matched == len(sel), joined
    join_rate = len(sel) / sum(times)
    console.log(f"pure: add_labels {join_rate:,.0f} labels/s ({joined})")

    worker = DriftWorker(settings)
    worker.registry = Registry(None, worker.window_sample, Feed(spec_json, ref_json))
    part = stream.Part(copies[0])
    with console.status(f"pure: {len(sel):,} labels through DriftWorker.handle"):
        asyncio.run(_handle(worker, part, [clock_record]))
        path_times = asyncio.run(_handle(worker, part, fetches))
    path_rate = len(sel) / sum(path_times)
    console.log(f"pure: the worker's label path {path_rate:,.0f} labels/s")
    after = dump(part.state)
    t0 = time.perf_counter()
    load(after)
    after_load = time.perf_counter() - t0

    top = None
    if profile:
        part = stream.Part(copies[1])
        asyncio.run(_handle(worker, part, [clock_record]))
        sub, done = [], 0
        for f in fetches:
            if done >= PROFILE_LABELS:
                break
            sub.append(f)
            done += len(f) * RECORD
        with console.status(f"pure: the worker's label path under cProfile ({done:,} labels)"):
            prof = cProfile.Profile()
            prof.enable()
            asyncio.run(_handle(worker, part, sub))
            prof.disable()
        top = {"labels": done, "by_self_time": _top_cprofile(prof)}
    result = {
        "pending": n, "windows": PURE_WINDOWS, "labels": len(sel), "batch": RECORD, "row_bytes": ROW.itemsize,
        "predictions_into_join_per_s": n / load_s, "predictions_into_join_s": load_s,
        "add_labels": {"labels_per_s": join_rate, "batch_ms": _quantiles(times), "joined": dataclasses.asdict(joined)},
        "handle_path": {"labels_per_s": path_rate, "fetches": len(fetches), "fetch_ms": _quantiles(path_times)},
        "rss_mb_before": rss0 / 2**20, "rss_mb_after": rss1 / 2**20,
        "bytes_per_pending_rss": (rss1 - rss0) / n, "bytes_per_pending_nbytes": nbytes / n,
        "checkpoint": {"bytes": len(blob), "dump_s": float(np.median(dumps)), "load_s": float(np.median(loads)),
                       "after_labels_bytes": len(after), "after_labels_load_s": after_load},
        "cprofile_handle_path": top}
    return result, blob


# --- the worker on a broker ------------------------------------------------------------------------


def _metric(url: str, name: str) -> float | None:
    try:
        body = urllib.request.urlopen(url, timeout=10).read().decode()
    except OSError:
        return None
    for line in body.splitlines():
        if line.startswith(name + "{") and f'model_id="{MODEL}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _follow(proc: subprocess.Popen, url: str, name: str, total: int, status, what: str, half=None,
            stalled=None) -> dict:
    """Poll the worker's metric `name` until it reaches `total` (or stops moving for STALL
    seconds: then `stalled()` says why, into the result): the span from its first move to its
    last. `half()` is called once it passes total / 2, and the first half's rate is reported."""
    ps, t_spawn = psutil.Process(proc.pid), time.monotonic()
    first = mid = None
    last = (t_spawn, 0.0, 0.0)  # (time, value, worker CPU) when the metric last moved
    rss, why = [], None
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited ({proc.returncode}) while {what}")
        v, t = _metric(url, name) or 0.0, time.monotonic()
        cpu = sum(ps.cpu_times()[:2])
        rss.append(ps.memory_info().rss)
        if v != last[1]:
            last = (t, v, cpu)
            first = first or last
            status.update(f"{what}: {v:,.0f} / {total:,}")
            if half is not None and mid is None and v >= total / 2:
                mid = last
                half()
            if v >= total:
                break
        elif first is not None and t - last[0] > STALL:
            console.log(f"[red]{what}: stalled at {v:,.0f} of {total:,} for {STALL:.0f} s[/red]")
            why = stalled() if stalled is not None else None
            break
        if t - t_spawn > 900:
            raise RuntimeError(f"timed out {what}: {v:,.0f} of {total:,}")
        time.sleep(0.05)
    why = None if v >= total else why
    t, v, cpu = last
    span = max(t - first[0], 1e-9)
    out = {"counted": int(v), "first_counted": int(first[1]), "seconds": t - first[0], "per_s": (v - first[1]) / span,
           "worker_cpu_cores": (cpu - first[2]) / span, "start_to_first_s": first[0] - t_spawn,
           "rss_mb_max": max(rss) / 2**20, "rss_mb_end": rss[-1] / 2**20, "stalled": why}
    if mid is not None and mid[0] > first[0]:
        out["first_half"] = {"per_s": (mid[1] - first[1]) / (mid[0] - first[0]),
                             "worker_cpu_cores": (mid[2] - first[2]) / (mid[0] - first[0])}
    return out


def _diagnose(url: str, redis_url: str, group: str, pid: int) -> dict:
    """Why a followed count stands still: the worker's counters, what its checkpoints hold, its stacks."""
    try:
        body = urllib.request.urlopen(url, timeout=10).read().decode()
    except OSError as exc:
        body = f"# metrics unavailable: {exc}"
    metrics = [line for line in body.splitlines() if line.startswith(("vigil_deadletter_total", "vigil_labels_"))]
    r = redis.Redis.from_url(redis_url)
    checkpoints = {}
    for k in r.scan_iter(f"vigil:checkpoint:{group}:*"):
        if k.endswith(b":owner") or not (cp := Checkpoint.from_bytes(r.get(k))).offsets:
            continue
        joins = {}
        try:
            for m, lj in DriftState.from_dict(cp.state).joins.items():
                rows = lj.pending.rows() if hasattr(lj, "pending") else np.concatenate([lj.main, lj.recent])
                joins[m] = {"pending": len(lj), "labelled": int(np.isfinite(rows["label"]).sum()),
                            "buffer": len(lj.buffer), "queue": len(lj.queue), "open_windows": len(lj.open)}
        except Exception as exc:  # noqa: BLE001 - a diagnosis never fails the run
            joins = {"error": repr(exc)}
        checkpoints[k.decode().rsplit(":", 1)[1]] = {"offsets": cp.offsets, "joins": joins}
    r.close()
    stacks = None
    if _Spy.BIN.exists():
        stacks = subprocess.run([str(_Spy.BIN), "dump", "--nonblocking", "--pid", str(pid)], capture_output=True,
                                text=True, timeout=60).stdout[:6000]
    out = {"metrics": metrics, "checkpoints": checkpoints, "stacks": stacks}
    console.log({k: out[k] for k in ("metrics", "checkpoints")})
    return out


async def _produce_labels(bootstrap: str, chunks, status) -> int:
    producer = await kafka.start_producer(bootstrap, "off")
    records = sent = 0
    try:
        for events in chunks:
            futures = [await producer.send(LABELS, value, key=key) for key, value in kafka.pack_records(events, RECORD)]
            await asyncio.gather(*futures)
            records, sent = records + len(futures), sent + len(events)
            status.update(f"producing labels: {sent:,}")
    finally:
        await producer.stop()
    return records


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()  # SIGTERM: the worker saves its checkpoint and exits
        try:
            proc.wait(180)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _Spy:
    """py-spy recording one process from `start()` to `stop()` (SIGINT: it writes its samples then)."""

    BIN = Path(sys.executable).with_name("py-spy")

    def __init__(self, out: Path, enabled: bool):
        self.out, self.enabled, self.proc = out, enabled and self.BIN.exists(), None

    def start(self, pid: int) -> None:
        if self.enabled and self.proc is None:
            self.proc = subprocess.Popen([str(self.BIN), "record", "--pid", str(pid), "--format", "raw",
                                          "--rate", "100", "--nonblocking", "--nolineno", "--output", str(self.out)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> dict | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return _top_spy(self.out)


def _top_spy(path: Path) -> dict | None:
    """py-spy's raw (collapsed) stacks -> the top functions by own and by inclusive samples."""
    if not path.exists() or not path.stat().st_size:
        return None
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n, frames = int(count), [_short(f) for f in stack.split(";")]
        total += n
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for f in set(frames):
            incl[f] = incl.get(f, 0) + n

    def top(d: dict[str, int]) -> list[dict]:
        return [{"function": f, "samples": c, "share": round(c / total, 4)}
                for f, c in sorted(d.items(), key=lambda kv: -kv[1])[:TOP]]
    return {"samples": total, "by_self": top(own), "by_inclusive": top(incl)}


def through_worker(args, workdir: Path, rng: np.random.Generator, blob: bytes | None, profile: bool) -> dict:
    stack = EmbeddedStack(Settings(kafka_bootstrap=None, redis_url=None, embedded_broker=args.broker,
                                   data_dir=workdir))
    worker = None
    spies = {k: _Spy(workdir / f"py-spy-{k}.txt", profile) for k in ("predictions", "labels")}
    p, we = args.predictions, args.window_events
    try:
        with console.status(f"starting {args.broker} and redis"):
            stack.start()
        bootstrap, redis_url = stack.kafka_bootstrap, stack.redis_url
        ds.register(redis_url, MODEL, rng)
        windows = -(-p // we)
        ts = []
        with console.status("producing predictions") as status:
            t0 = time.monotonic()
            for w in range(windows + 1):  # the last window (10 events) closes the one before it
                n = min(we, p - w * we) if w < windows else 10
                events = ds.window_events(MODEL, w, n, rng, shift={"f05": 1.0} if w % 2 else None)
                if w < windows:
                    ts.append(np.array([e["timestamp"] for e in events]))
                ds.produce(bootstrap, events, batch=RECORD)
                status.update(f"producing predictions: {min(p, (w + 1) * we):,} / {p:,}")
            produce_predictions_s = time.monotonic() - t0
        ts = np.concatenate(ts)
        console.log(f"worker: {p + 10:,} predictions produced in {produce_predictions_s:.0f} s")

        group, port = ds.group(), free_port()
        url = f"http://127.0.0.1:{port}/metrics"
        worker = ds.start_worker(bootstrap, redis_url, group, port, open(workdir / "worker-predictions.log", "wb"),
                                 Settings().drift_checkpoint_seconds)
        with console.status("one worker: predictions") as status:
            preds = _follow(worker, url, "vigil_labels_pending", p + 10, status, "predictions counted (pending)",
                            lambda: spies["predictions"].start(worker.pid))
        preds["py_spy_second_half"] = spies["predictions"].stop()
        console.log(f"worker: {preds['per_s']:,.0f} predictions/s with the join on")
        t0 = time.monotonic()
        with console.status("stopping the worker (final checkpoint)"):
            _stop(worker)
        stop_s = time.monotonic() - t0

        def chunks():
            perm = rng.permutation(p)
            for i in range(0, p, CHUNK):
                at = perm[i:i + CHUNK]
                ids = [f"{MODEL}-{w}-{j}" for w, j in zip((at // we).tolist(), (at % we).tolist())]
                lts = ts[at] + rng.uniform(1.0, LABEL_DELAY, len(at))
                yield _labels(ids, lts, rng.integers(0, 2, len(at)).tolist())
        with console.status("producing labels") as status:
            t0 = time.monotonic()
            label_records = asyncio.run(_produce_labels(bootstrap, chunks(), status))
            produce_labels_s = time.monotonic() - t0
        console.log(f"worker: {p:,} labels produced in {produce_labels_s:.0f} s")

        worker = ds.start_worker(bootstrap, redis_url, group, port, open(workdir / "worker-labels.log", "wb"),
                                 Settings().drift_checkpoint_seconds)
        with console.status("one worker, restarted: labels") as status:
            labels = _follow(worker, url, "vigil_labels_matched_total", p, status, "labels joined",
                             lambda: spies["labels"].start(worker.pid),
                             lambda: _diagnose(url, redis_url, group, worker.pid))
        labels["py_spy_second_half"] = spies["labels"].stop()
        pending = _metric(url, "vigil_labels_pending")
        labels["counters"] = {k: _metric(url, k) for k in ("vigil_labels_matched_total", "vigil_labels_late_total",
                                                            "vigil_labels_unmatched_total", "vigil_labels_pending")}
        console.log(f"worker: {labels['per_s']:,.0f} labels/s, {pending:,.0f} pending at the end")
        r = redis.Redis.from_url(redis_url)
        saved = max((r.strlen(k) for k in r.scan_iter(f"vigil:checkpoint:{group}:*") if not k.endswith(b":owner")),
                    default=0)
        redis_io = None
        if blob is not None:  # the pure part's 1M-pending checkpoint, one SET and one GET
            t0 = time.monotonic()
            r.set("vigil:bench:labels", blob)
            t1 = time.monotonic()
            r.get("vigil:bench:labels")
            redis_io = {"bytes": len(blob), "set_s": t1 - t0, "get_s": time.monotonic() - t1}
            r.delete("vigil:bench:labels")
        r.close()
        return {"broker": args.broker, "predictions": p, "window_events": we, "features": len(ds.FEATURES),
                "produce_predictions_s": produce_predictions_s, "produce_labels_s": produce_labels_s,
                "label_records": label_records, "predictions_phase": preds, "stop_s": stop_s, "labels_phase": labels,
                "pending_at_end": pending, "labels_lost": p - labels["counted"], "checkpoint_bytes_in_redis": saved,
                "redis_checkpoint_io": redis_io}
    finally:
        for spy in spies.values():
            if spy.proc is not None and spy.proc.poll() is None:
                spy.proc.kill()
                spy.proc.wait()
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        stack.stop()


def _table(pure_: dict, wk: dict | None) -> Table:
    table = Table(title=f"label join: {pure_['pending']:,} pending predictions, one worker")
    for col in ("measure", "value", "target"):
        table.add_column(col, justify="left" if col == "measure" else "right")
    a, cp = pure_["add_labels"], pure_["checkpoint"]
    table.add_row(f"pure: add_labels, batches of {RECORD:,} (labels/s)", f"{a['labels_per_s']:,.0f}",
                  f">= {TARGET_LABELS:,}")
    table.add_row("pure: ms per 1,000-label batch (p50 / p99)",
                  f"{a['batch_ms']['p50']:.1f} / {a['batch_ms']['p99']:.1f}", "")
    table.add_row("pure: the worker's label path, DriftWorker.handle (labels/s)",
                  f"{pure_['handle_path']['labels_per_s']:,.0f}", "")
    table.add_row(f"pure: predictions into the join, batches of {RECORD:,} (/s)",
                  f"{pure_['predictions_into_join_per_s']:,.0f}", "")
    table.add_row("pure: RSS before / after loading (MiB)",
                  f"{pure_['rss_mb_before']:,.0f} / {pure_['rss_mb_after']:,.0f}", "")
    table.add_row("pure: bytes per pending prediction (RSS delta / arrays' nbytes)",
                  f"{pure_['bytes_per_pending_rss']:.1f} / {pure_['bytes_per_pending_nbytes']:.1f}", "")
    table.add_row(f"checkpoint of the partition, {pure_['pending']:,} pending (MiB)", f"{cp['bytes'] / 2**20:,.1f}", "")
    table.add_row("checkpoint dump / load (s)", f"{cp['dump_s']:.2f} / {cp['load_s']:.2f}", "")
    table.add_row("checkpoint after the labels (MiB)", f"{cp['after_labels_bytes'] / 2**20:,.1f}", "")
    if wk is not None:
        pp, lp = wk["predictions_phase"], wk["labels_phase"]
        ph = pp.get("first_half", {})
        table.add_row(f"worker ({wk['broker']}): predictions/s, join on, first half without profiler (cores)",
                      f"{ph.get('per_s', 0):,.0f} ({ph.get('worker_cpu_cores', 0):.2f})", f">= {TARGET_PREDICTIONS:,}")
        table.add_row("worker: predictions/s, all", f"{pp['per_s']:,.0f}", "")
        table.add_row("worker: restart to first label counted (s)", f"{lp['start_to_first_s']:.1f}", "")
        half = lp.get("first_half", {})
        table.add_row("worker: labels/s, first half without profiler (CPU cores)",
                      f"{half.get('per_s', 0):,.0f} ({half.get('worker_cpu_cores', 0):.2f})", f">= {TARGET_LABELS:,}")
        table.add_row(f"worker: labels/s, all ({lp['counted']:,} matched)", f"{lp['per_s']:,.0f}", "")
        if wk["labels_lost"]:
            table.add_row("[red]worker: labels never joined (lost; see labels_phase.stalled)[/red]",
                          f"[red]{wk['labels_lost']:,}[/red]", "0")
        table.add_row("worker: RSS after predictions / end of labels (MiB)",
                      f"{pp['rss_mb_end']:,.0f} / {lp['rss_mb_end']:,.0f}", "")
        table.add_row("worker: checkpoint in Redis at the end (MiB)", f"{wk['checkpoint_bytes_in_redis'] / 2**20:,.1f}",
                      "")
        if wk["redis_checkpoint_io"]:
            io = wk["redis_checkpoint_io"]
            table.add_row("Redis SET / GET of that checkpoint (s)", f"{io['set_s']:.2f} / {io['get_s']:.2f}",
                          "")
    return table


def _profile_table(title: str, rows: list[dict], value: str, share: str) -> Table:
    table = Table(title=title)
    table.add_column("function")
    table.add_column(value, justify="right")
    table.add_column("share", justify="right")
    for r in rows[:10]:
        table.add_row(r["function"], f"{r[value]:,}" if isinstance(r[value], int) else f"{r[value]:.3f}",
                      f"{100 * r[share]:.1f}%")
    return table


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker", choices=("kafka", "tansu"), default="kafka")
    ap.add_argument("--pending", type=int, default=1_000_000, help="pure: predictions pending in the join")
    ap.add_argument("--labels", type=int, default=500_000, help="pure: labels joined (a random subset of them)")
    ap.add_argument("--predictions", type=int, default=1_000_000, help="worker: predictions, then one label each")
    ap.add_argument("--window-events", type=int, default=30_000)
    ap.add_argument("--no-worker", action="store_true", help="the pure part only")
    ap.add_argument("--no-profile", action="store_true", help="no cProfile, no py-spy")
    args = ap.parse_args(argv)
    args.labels = min(args.labels, args.pending)
    rng = np.random.default_rng(0)
    t0 = time.monotonic()
    pure_, blob = pure(args, rng, not args.no_profile)
    wk = None
    if not args.no_worker:
        wk = through_worker(args, scratch("vigil-bench-labels-"), rng, blob, not args.no_profile)
    del blob
    console.print(_table(pure_, wk))
    if pure_["cprofile_handle_path"]:
        console.print(_profile_table(f"cProfile: the worker's label path, no broker "
                                     f"({pure_['cprofile_handle_path']['labels']:,} labels), by own time",
                                     pure_["cprofile_handle_path"]["by_self_time"], "self_s", "self_share"))
    for phase in ("predictions", "labels"):
        spy = wk and wk[f"{phase}_phase"].get("py_spy_second_half")
        if spy:
            console.print(_profile_table(f"py-spy: the worker over the second half of the {phase}, by own samples",
                                         spy["by_self"], "samples", "share"))
    result = {"pure": pure_, "worker": wk, "target_labels_per_s": TARGET_LABELS,
              "target_predictions_per_s": TARGET_PREDICTIONS, "cores": os.cpu_count(),
              "seconds": time.monotonic() - t0}
    save_result("labels", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
