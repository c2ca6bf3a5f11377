"""Every benchmark's headline figures next to the ceiling or peer measured in the same run.

    python -m bench.summary [--results bench/results] [--out bench]

`make bench` runs it last. It reads every bench/results/*.json present (`--results`, or
VIGIL_BENCH_RESULTS) and writes, into `--out` (default: the results directory's parent):

- results.json: one object, bench name -> that bench's JSON as written, plus `headline`, the
  rows below with their numbers;
- results.md: a Markdown table, one row per headline figure: the benchmark, what is measured,
  Vigil's figure, the ceiling or peer from the same run, their ratio, the command that
  reproduces it, and when it ran (the JSON's date or commit if it records one, else the file's
  modification time).

The table is printed too. A benchmark without its JSON is a "not run" row; a JSON without a
key its extractor reads is a row saying which. One extractor per benchmark in EXTRACTORS:
adding a benchmark is one entry there.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench import RESULTS

NOT_RUN, MALFORMED, OK, PARTIAL = "not run", "malformed", "ok", "partial"
STAMP_KEYS = ("date", "started_at", "finished_at", "commit", "git_commit")  # what a JSON may record of its run
COLUMNS = ("benchmark", "measured", "Vigil", "ceiling or peer (same run)", "ratio", "command", "run")


@dataclass(frozen=True)
class Row:
    """One headline figure: strings as shown, numbers (or None) for results.json."""
    bench: str
    measured: str
    figure: str
    peer: str
    ratio: str
    command: str
    value: float | None = None
    peer_value: float | None = None
    ratio_value: float | None = None
    status: str = OK
    run: str = ""

    def cells(self) -> tuple[str, ...]:
        return (self.bench, self.measured, self.figure, self.peer, self.ratio, self.command, self.run)


def _n(x: float, unit: str = "", fmt: str = ",.0f") -> str:
    return f"{format(x, fmt)}{' ' + unit if unit else ''}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.0f} ms"


def _cmd(bench: str, *args: object) -> str:
    """`python -m bench.<name>` with the arguments the JSON records (None: left out)."""
    parts = ["python", "-m", f"bench.{bench}"]
    for i in range(0, len(args), 2):
        if args[i + 1] is not None:
            parts += [str(args[i]), str(args[i + 1])]
    return shlex.join(parts)


def _share(value: float, ceiling: float, of: str) -> tuple[str, float]:
    r = value / ceiling
    return f"{r:.2f} of {of}", r


# ---- one extractor per benchmark: (its JSON, every JSON present) -> rows -------------------------

def ingest(r: dict, _: Mapping[str, dict]) -> list[Row]:
    validate, produce = r["validation_events_per_s"], r["produce_events_per_s"]
    ceiling = min(validate, produce)
    peer = f"validation + encoding alone {_n(validate)}; producing alone (acks=all) {_n(produce)} events/s"
    rows = []
    for workers, h in sorted(r["http_by_workers"].items(), key=lambda kv: int(kv[0])):
        text, ratio = _share(h["events_per_s"], ceiling, "the lower")
        rows.append(Row("ingest", f"HTTP end to end into {r['broker']}, {workers} ingest worker(s), "
                                  f"{r['batch_events']:,}-event batches x {r['features']} features",
                        _n(h["events_per_s"], "events/s"), peer, text,
                        _cmd("ingest", "--broker", r["broker"], "--workers", ",".join(r["http_by_workers"])),
                        h["events_per_s"], ceiling, ratio))
    return rows


def drift(r: dict, _: Mapping[str, dict]) -> list[Row]:
    cmd = _cmd("drift", "--broker", r["broker"], "--events", r["events"] - 10, "--window-events", r["window_events"])
    pure = r.get("without_broker")
    if pure is None:  # a result from before bench.drift measured its ceiling
        text, ratio = _share(r["events_per_s"], r["target"], "target")
        return [Row("drift", f"one drift worker from the topic on {r['broker']}, {r['features']} features, "
                             "label join on", _n(r["events_per_s"], "events/s"),
                    f"target {_n(r['target'])} events/s (this result has no ceiling)", text, cmd,
                    r["events_per_s"], r["target"], ratio)]
    text, ratio = _share(r["events_per_s"], pure["path_events_per_s"], "the path without a broker")
    return [Row("drift", f"one drift worker from the topic on {r['broker']}, {r['features']} features, label join on",
                f"{_n(r['events_per_s'], 'events/s')} ({1e6 / r['events_per_s']:.2f} µs an event)",
                f"the worker's path without a broker {_n(pure['path_events_per_s'])} events/s; the NumPy floor of "
                f"the same statistics {pure['floor_us_per_event']:.2f} µs an event; target {_n(r['target'])}",
                text, cmd, r["events_per_s"], pure["path_events_per_s"], ratio)]


def labels(r: dict, _: Mapping[str, dict]) -> list[Row]:
    p, w = r["pure"], r["worker"]
    join, path = p["add_labels"]["labels_per_s"], p["handle_path"]["labels_per_s"]
    peer = f"join alone {_n(join)}; the worker's label path without a broker {_n(path)} labels/s"
    if w is None:
        return [Row("labels", f"labels joined with {p['pending']:,} pending", "worker not run (--no-worker)", peer,
                    "—", _cmd("labels", "--pending", p["pending"], "--labels", p["labels"]) + " --no-worker",
                    None, path, None, PARTIAL)]
    lp = w["labels_phase"]
    text, ratio = _share(lp["per_s"], path, "the path without a broker")
    return [Row("labels", f"labels joined by one drift worker on {w['broker']}, {w['predictions']:,} pending",
                _n(lp["per_s"], "labels/s"), peer, text,
                _cmd("labels", "--broker", w["broker"], "--pending", p["pending"], "--labels", p["labels"],
                     "--predictions", w["predictions"], "--window-events", w["window_events"]),
                lp["per_s"], path, ratio)]


def stats(r: dict, _: Mapping[str, dict]) -> list[Row]:
    total, target = r["total_ms"], r["target_ms"]
    text, ratio = _share(total, target, "target")
    return [Row("stats", f"drift statistics of one {r['events']:,}-event window x {r['features']} features "
                         "(update in batches + evaluate)",
                f"{total:,.1f} ms", f"target < {target:,.0f} ms (a goal; the peers: bench.compare)", text,
                _cmd("stats", "--events", r["events"], "--features", r["features"]), total, target, ratio)]


def compare(r: dict, _: Mapping[str, dict]) -> list[Row]:
    tools, rows = r["tools"], []
    vigil = tools["vigil"]["median_s"]
    cmd = _cmd("compare", "--reference", r["reference"], "--events", r["events"], "--features", r["features"],
               "--repeat", r["repeat"])
    for peer in (t for t in tools if t != "vigil"):
        what = (f"one {r['events']:,} x {r['features']} window against a {r['reference']:,}-row reference, "
                f"median of {r['repeat']}: Vigil vs {peer}")
        t = tools[peer]
        if "skipped" in t:
            rows.append(Row("compare", what, f"{vigil:.3f} s", f"{peer} skipped: {t['skipped']}", "—", cmd,
                            vigil, None, None, PARTIAL))
            continue
        ratio = t["median_s"] / vigil
        rows.append(Row("compare", what, f"{vigil:.3f} s", f"{peer} {t.get('version', '')} {t['median_s']:.3f} s",
                        f"{ratio:,.1f}x faster", cmd, vigil, t["median_s"], ratio))
    return rows


def concept(r: dict, _: Mapping[str, dict]) -> list[Row]:
    cmd = _cmd("concept", "--seeds", r["seeds"], "--length", r["length"], "--position", r["position"],
               "--widths", ",".join(map(str, r["widths"])),
               "--streams", ",".join(dict.fromkeys(res["stream"] for res in r["results"])))
    rows = []
    for res in r["results"]:
        v, a = res["summary"]["vigil_online"], res["summary"]["adwin_rises"]

        def shown(s: dict) -> str:
            d = "not detected" if s["median_delay"] is None else _n(s["median_delay"], "events")
            return f"{d} ({s['detected']}/{s['runs']} detected, {s['false_alarms']} false alarms)"
        vd, ad = v["median_delay"], a["median_delay"]
        if vd is None or ad is None:
            text, ratio = "—", None
        elif vd > 0 and ad > 0:
            text, ratio = f"{vd / ad:.2f}x ({vd - ad:+,} events)", vd / ad
        else:
            text, ratio = f"{vd - ad:+,} events", None
        error = (f", error {res['error_before']:.3f} -> {res['error_after']:.3f}"
                 if res.get("error_after") is not None else "")
        rows.append(Row("concept", f"{res['stream']}, width {res['width']:,}{error}: median detection delay after "
                                   f"event {r['position']:,}, Vigil online",
                        shown(v), f"river ADWIN alone (rises): {shown(a)}", text, cmd, vd, ad, ratio))
    return rows


def scaling(r: dict, _: Mapping[str, dict]) -> list[Row]:
    runs = sorted(r["runs"], key=lambda x: x["workers"])
    one = runs[0]
    same = "findings identical" if r["findings_identical"] else "FINDINGS DIFFER"
    cmd = _cmd("scaling", "--workers", ",".join(str(x["workers"]) for x in runs), "--window-events",
               r["window_events"], "--windows", r["windows"])
    rows = []
    for x in runs[1:]:
        text, ratio = _share(x["events_per_s"], one["events_per_s"] * x["workers"] / one["workers"], "linear")
        rows.append(Row("scaling", f"{x['workers']} drift workers sharing {r['partitions']} partitions "
                                   f"({r['cores']} cores; {same})",
                        _n(x["events_per_s"], "events/s"),
                        f"{one['workers']} worker {_n(one['events_per_s'])} events/s", text, cmd,
                        x["events_per_s"], one["events_per_s"], ratio))
    return rows


def oversight(r: dict, _: Mapping[str, dict]) -> list[Row]:
    rows = []
    for key, what in (("reviews", "review events"), ("vendor", "vendor predictions + labels")):
        s = r[key]
        text, ratio = _share(s["events_per_s"], s["pure_events_per_s"], "ceiling")
        rows.append(Row("oversight", f"{what} through one oversight worker on {r['broker']}",
                        _n(s["events_per_s"], "events/s"),
                        f"pure ceiling, no broker {_n(s['pure_events_per_s'])} events/s", text,
                        _cmd("oversight", "--broker", r["broker"], "--reviews", r["reviews"]["events"] - 1,
                             "--calls", r["vendor"]["events"] // 2),
                        s["events_per_s"], s["pure_events_per_s"], ratio))
    return rows


def alerts(r: dict, everything: Mapping[str, dict]) -> list[Row]:
    delivery = everything.get("delivery")
    steps = {} if delivery is None else {float(s["rate"]): s for s in delivery["steps"]}
    cmd = _cmd("alerts", "--broker", r["broker"], "--rates", ",".join(f"{x['rate']:.0f}" for x in r["runs"]),
               "--seconds", f"{r['seconds']:g}")
    rows = []
    for run in r["runs"]:
        rate = float(run["rate"])
        figure = f"p99 {_ms(run['p99_s'])}, last {_ms(run['max_s'])} ({run['notified']:,}/{run['findings']:,} notified)"
        d = steps.get(rate)
        if d is None:
            why = "bench.delivery not run" if delivery is None else f"bench.delivery did not reach {rate:.0f}/s"
            peer, text, ratio, status = f"dispatcher alone: {why}", "—", None, PARTIAL
        else:
            peer = f"dispatcher alone (bench.delivery) p99 {_ms(d['p99_s'])}, last {_ms(d['max_s'])}"
            ratio, status = run["p99_s"] / d["p99_s"], OK
            text = f"{ratio:,.1f}x the dispatcher's p99"
        rows.append(Row("alerts", f"finding published -> notification received at {rate:,.0f} findings/s "
                                  f"({r['broker']}, a new alert per finding)",
                        figure, peer, text, cmd, run["p99_s"], d and d["p99_s"], ratio, status))
    sustained = r["sustained_per_s"]
    ceiling = None if delivery is None else delivery["highest_sustained_per_s"]
    ratio = sustained / ceiling if sustained is not None and ceiling else None
    rows.append(Row("alerts", f"highest rate with p99 < {r['target_p99_s']:g} s (target {r['target_rate']:,})",
                    "none" if sustained is None else _n(sustained, "findings/s"),
                    "dispatcher alone: bench.delivery not run" if ceiling is None
                    else f"dispatcher alone {_n(ceiling)} findings/s",
                    "—" if ratio is None else f"{ratio:.2f} of the dispatcher's", cmd, sustained, ceiling, ratio,
                    OK if ratio is not None else PARTIAL))
    return rows


Extractor = Callable[[dict, Mapping[str, dict]], list[Row]]
# `make bench`'s benchmarks, in its order. bench.delivery is the alerts bench's ceiling, read by `alerts`.
EXTRACTORS: dict[str, Extractor] = {
    "ingest": ingest,
    "drift": drift,
    "labels": labels,
    "stats": stats,
    "compare": compare,
    "concept": concept,
    "scaling": scaling,
    "oversight": oversight,
    "alerts": alerts,
}


# ---- reading, writing ---------------------------------------------------------------------------

def run_stamp(data: object, path: Path) -> str:
    """The run's date/commit if its JSON records them, else the file's modification time (UTC)."""
    if isinstance(data, dict) and (found := [f"{k} {data[k]}" for k in STAMP_KEYS if data.get(k)]):
        return ", ".join(found)
    mtime = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
    return f"{mtime:%Y-%m-%d %H:%M} UTC (file time)"


def load(results: Path) -> tuple[dict[str, object], dict[str, str], dict[str, Path]]:
    """Every *.json in `results`: (name -> parsed JSON, name -> why it could not be read, name -> path)."""
    data, unreadable, paths = {}, {}, {}
    for path in sorted(results.glob("*.json")) if results.is_dir() else []:
        paths[path.stem] = path
        try:
            data[path.stem] = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            unreadable[path.stem] = f"{type(exc).__name__}: {exc}"
    return data, unreadable, paths


def _problem(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"malformed JSON: no key {exc.args[0]!r}"
    return f"malformed JSON: {type(exc).__name__}: {exc}"


def headline(data: Mapping[str, object], unreadable: Mapping[str, str], paths: Mapping[str, Path],
             extractors: Mapping[str, Extractor] = EXTRACTORS) -> list[Row]:
    """The rows of every benchmark in `extractors`, whatever state its JSON is in."""
    rows: list[Row] = []
    for name, extract in extractors.items():
        default = _cmd(name)
        if name in unreadable:
            rows.append(Row(name, "—", f"unreadable JSON: {unreadable[name]}", "—", "—", default,
                            status=MALFORMED, run=run_stamp(None, paths[name])))
            continue
        if name not in data:
            rows.append(Row(name, "—", NOT_RUN, "—", "—", default, status=NOT_RUN, run="—"))
            continue
        stamp = run_stamp(data[name], paths[name])
        try:
            got = extract(data[name], data)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError, ZeroDivisionError) as exc:
            got = [Row(name, "—", _problem(exc), "—", "—", default, status=MALFORMED)]
        rows += [replace(r, run=stamp) for r in got]
    return rows


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = list(map(_md_cell, r.cells()))
        cells[5] = f"`{cells[5]}`"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table(rows: list[Row]) -> Table:
    t = Table(title="make bench: each figure next to its ceiling or peer from the same run")
    for col in COLUMNS:
        t.add_column(col, overflow="fold")
    style = {OK: "green", PARTIAL: "yellow", NOT_RUN: "dim", MALFORMED: "red"}
    for r in rows:
        c = r.cells()
        t.add_row(f"[bold]{c[0]}", c[1], f"[{style[r.status]}]{c[2]}", c[3], f"[bold]{c[4]}", f"[cyan]{c[5]}",
                  f"[dim]{c[6]}")
    return t


def summarise(results: Path, out: Path) -> tuple[dict, list[Row]]:
    """Read `results`/*.json, write `out`/results.json and `out`/results.md; returns both."""
    data, unreadable, paths = load(results)
    rows = headline(data, unreadable, paths)
    combined = {**data, "headline": [asdict(r) for r in rows]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(combined, indent=2) + "\n")
    unlisted = sorted(set(data) - set(EXTRACTORS) - {"delivery"})
    note = (f"\nAlso in results.json, without a headline row: {', '.join(unlisted)}.\n" if unlisted else "")
    (out / "results.md").write_text(f"# Benchmarks, read from {results}\n\n" + markdown(rows) + note)
    return combined, rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=Path(os.environ.get("VIGIL_BENCH_RESULTS", RESULTS)),
                    help="the benchmarks' JSON files (default: VIGIL_BENCH_RESULTS, else bench/results)")
    ap.add_argument("--out", type=Path, default=None,
                    help="where results.json and results.md go (default: the results directory's parent)")
    args = ap.parse_args(argv)
    out = args.out if args.out is not None else args.results.resolve().parent
    _, rows = summarise(args.results, out)
    console = Console(width=max(160, Console().width))
    console.print(table(rows))
    console.print(f"written: {out / 'results.json'}, {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
