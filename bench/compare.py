"""The same drift job with Vigil, Evidently and NannyML: one 100,000 x 20 window against a reference.

    python -m bench.compare [--reference 100000] [--events 100000] [--features 20] [--repeat 3]

Data (seeded NumPy, generated identically in every process): a reference of `--reference` rows and
a current window of `--events` rows, `--features` standard normal numeric features rounded to 4
decimals, feature f00 of the window shifted by 1 sd.

- Vigil: the statistics as bench/stats.py times them — `WindowState.update` in batches of 1,000
  events (hash_ids included) + `evaluate` with the null distributions cached. The one-off work per
  reference (profiling it, calibrating the nulls) is timed separately and shown on its own row.
- Evidently: `Report([DataDriftPreset()]).run(current, reference)` (Evidently 0.7.x).
- NannyML: `UnivariateDriftCalculator` (kolmogorov_smirnov, jensen_shannon; chunk_size = events),
  fit on the reference + calculate on the window.

Evidently and NannyML are not Vigil dependencies: each runs in a subprocess with the python of a
separate venv (.venv-bench, or .venv-bench-evidently / .venv-bench-nannyml; Evidently 0.7 needs
pandas < 3), skipped with the command to create it when missing. Each figure is the median of
`--repeat` runs. Results are printed as a table and written to bench/results/compare.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.stats import BATCH, timed, update_in_batches
from shared import policy
from shared.stats.baseline import Baseline
from shared.stats.reference import profile
from shared.stats.window import WindowLayout, WindowState, evaluate

console = Console()
ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 30.0
SHIFTED = "f00"

# Shared by every process: the same seeded data, as (features x rows) arrays.
DATA = """
import numpy as np
def make_data(n_ref, n, f):
    rng = np.random.default_rng(0)
    names = [f"f{j:02d}" for j in range(f)]
    ref = rng.normal(size=(f, n_ref)).round(4)
    x = rng.normal(size=(f, n)).round(4)
    x[0] += 1.0
    return names, ref, x
"""
exec(DATA)  # defines make_data here exactly as in the peers' subprocesses

# What every peer's subprocess does first: the same data, as pandas frames, and a list of run times.
PEER = DATA + textwrap.dedent("""
    import json, statistics, sys, time, warnings
    import pandas as pd
    warnings.filterwarnings("ignore")
    n_ref, n, f, repeat = map(int, sys.argv[1:5])
    names, ref, x = make_data(n_ref, n, f)
    reference, current = pd.DataFrame(ref.T, columns=names), pd.DataFrame(x.T, columns=names)
    runs = []
""")

PEERS = {
    "evidently": PEER + textwrap.dedent("""
        import evidently
        from evidently import Report
        from evidently.presets import DataDriftPreset
        for _ in range(repeat):
            started = time.perf_counter()
            snapshot = Report([DataDriftPreset()]).run(current, reference)
            result = snapshot.dict()
            runs.append(time.perf_counter() - started)
        flagged, methods = [], set()
        for m in result["metrics"]:
            cfg = m.get("config", {})
            if not cfg.get("type", "").endswith("ValueDrift"):
                continue
            methods.add(f"{cfg['method']} (threshold {cfg['threshold']})")
            p_value = "p_value" in cfg["method"].lower()  # p-values drift below, distances at or above
            if (m["value"] < cfg["threshold"]) if p_value else (m["value"] >= cfg["threshold"]):
                flagged.append(cfg["column"])
        print(json.dumps({"version": evidently.__version__, "runs": runs, "flagged": sorted(flagged),
                          "methods": sorted(methods),
                          "detail": "Report([DataDriftPreset()]).run(current, reference) + snapshot.dict()"}))
    """),
    "nannyml": PEER + textwrap.dedent("""
        import nannyml
        for _ in range(repeat):
            started = time.perf_counter()
            calc = nannyml.UnivariateDriftCalculator(column_names=names, chunk_size=n,
                                                     continuous_methods=["kolmogorov_smirnov", "jensen_shannon"])
            calc.fit(reference)
            df = calc.calculate(current).filter(period="analysis").to_df()
            runs.append(time.perf_counter() - started)
        flagged = sorted({c[0] for c in df.columns if c[-1] == "alert" and bool(df[c].any())})
        # Default thresholds are mean +- 3 sd of the reference chunks' values: with one reference
        # chunk (chunk_size >= reference rows) the sd is 0 and the threshold collapses to that value.
        upper = {f"{c[0]}/{c[1]}": float(df[c].iloc[0]) for c in df.columns if c[-1] == "upper_threshold"}
        print(json.dumps({"version": nannyml.__version__, "runs": runs, "flagged": flagged,
                          "reference_chunks": -(-n_ref // n), "upper_thresholds": upper,
                          "detail": "UnivariateDriftCalculator(ks, jensen_shannon).fit(ref) + calculate(current)"}))
    """),
}


def peer_python(tool: str) -> Path | None:
    for venv in (f".venv-bench-{tool}", ".venv-bench"):
        python = ROOT / venv / "bin" / "python"
        if python.exists() and subprocess.run([python, "-c", f"import {tool}"], capture_output=True).returncode == 0:
            return python
    return None


def run_peer(tool: str, n_ref: int, n: int, f: int, repeat: int, timeout: float) -> dict:
    python = peer_python(tool)
    if python is None:
        cmd = "python3 -m venv .venv-bench && .venv-bench/bin/pip install -q evidently nannyml 'pandas<3'"
        return {"skipped": f"no venv with {tool} (.venv-bench or .venv-bench-{tool}); create it from {ROOT}: {cmd}"}
    with console.status(f"{tool}: {repeat} runs in {python.parent.parent.name}"):
        try:
            proc = subprocess.run([python, "-c", PEERS[tool], str(n_ref), str(n), str(f), str(repeat)],
                                  capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        except subprocess.TimeoutExpired:
            return {"skipped": f"{tool} took longer than {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"skipped": f"{tool} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["median_s"] = float(np.median(out["runs"]))
    out["venv"] = python.parent.parent.name
    return out


def run_vigil(n_ref: int, n: int, f: int, repeat: int) -> tuple[dict, dict]:
    names, ref, x = make_data(n_ref, n, f)  # noqa: F821 - defined by exec(DATA)
    ids = [f"evt-{i:012d}" for i in range(n)]
    started = time.perf_counter()
    base = Baseline.from_profile(profile({name: ref[j].tolist() for j, name in enumerate(names)}))
    layout = WindowLayout.of(base)
    profiled = time.perf_counter() - started

    def in_batches() -> WindowState:
        return update_in_batches(layout, ids, names, x)

    window = in_batches()
    started = time.perf_counter()
    evaluate(window, base)  # calibrates the null distributions once per reference and window size
    cold = time.perf_counter() - started

    def job() -> list[dict]:
        return evaluate(in_batches(), base)

    med, low, results = timed(job, repeat)
    flagged = sorted(r["feature"] for r in results if policy.severity(r["metrics"]) != policy.LOW)
    vigil = {"median_s": med, "min_s": low, "flagged": flagged,
             "detail": f"WindowState.update in batches of {BATCH:,} + evaluate (nulls cached), as bench/stats.py"}
    once = {"median_s": profiled + cold, "profile_s": profiled, "calibration_s": cold,
            "detail": "per reference, not per window: profile + first evaluate's calibration"}
    return vigil, once


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per peer")
    args = parser.parse_args()
    n_ref, n, f = args.reference, args.events, args.features
    with console.status("vigil"):
        vigil, once = run_vigil(n_ref, n, f, args.repeat)
    tools = {"vigil": vigil}
    for tool in PEERS:
        tools[tool] = run_peer(tool, n_ref, n, f, args.repeat, args.timeout)

    expected = [SHIFTED]
    table = Table(title=f"The same drift job: reference {n_ref:,} x {f}, window {n:,} x {f}, {SHIFTED} shifted by 1 sd "
                        f"(median of {args.repeat})")
    table.add_column("tool")
    table.add_column("median s", justify="right")
    table.add_column("x Vigil", justify="right")
    table.add_column("flagged")
    table.add_column(f"only {SHIFTED}?")
    for tool, r in tools.items():
        if "skipped" in r:
            table.add_row(tool, "-", "-", f"[yellow]skipped: {r['skipped']}", "-")
            continue
        r["ratio"] = r["median_s"] / vigil["median_s"]
        r["only_shifted"] = r["flagged"] == expected
        label = tool if tool == "vigil" else f"{tool} {r['version']}"
        shown = f"all {f}" if len(r["flagged"]) == f > 1 else ", ".join(r["flagged"]) or "none"
        table.add_row(label, f"{r['median_s']:.3f}", f"{r['ratio']:.1f}", shown,
                      "[green]yes" if r["only_shifted"] else "[red]no")
    table.add_row("[dim]vigil, once per reference (profile + calibration)", f"[dim]{once['median_s']:.3f}", "", "", "")
    console.print(table)
    ev = tools["evidently"]
    if "ratio" in ev:
        met = ev["ratio"] >= TARGET_RATIO
        console.print(f"Vigil is {ev['ratio']:.0f}x faster than Evidently: target >= {TARGET_RATIO:.0f}x "
                      f"{'[green]met' if met else '[red]MISSED'}")
    nm = tools["nannyml"]
    if nm.get("reference_chunks") == 1 and not nm.get("only_shifted"):
        console.print("[dim]NannyML: one reference chunk (chunk_size >= reference rows), so its default thresholds "
                      "(reference mean +- 3 sd over chunks) collapse to the reference value and every feature alerts")
    for tool, r in tools.items():
        if "skipped" in r:
            console.print(f"[yellow]{tool} skipped[/]: {r['skipped']}")
    out = ROOT / "bench" / "results" / "compare.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"reference": n_ref, "events": n, "features": f, "repeat": args.repeat,
                               "shifted": SHIFTED, "python": sys.version.split()[0], "tools": tools,
                               "vigil_once_per_reference": once, "target_ratio_vs_evidently": TARGET_RATIO},
                              indent=2))


if __name__ == "__main__":
    main()
