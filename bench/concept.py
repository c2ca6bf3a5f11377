"""Concept drift with a known position: Vigil's detection delay and false alarms, next to ADWIN alone.

    python -m bench.concept [--seeds 5] [--length 20000] [--position 10000] [--widths 1,1000]

River's synthetic streams joined by `river.datasets.synth.ConceptDriftStream` (the new
concept's share is the sigmoid 1 / (1 + exp(-4 (t - position) / width)); `DriftStream` mends
its overflow at width 1):

- SEA, variant 0 -> 3: the class threshold on x0 + x1 moves from 8 to 9.5 (error ~3 % -> ~15 %);
- SEA, variant 0 -> 2: threshold 8 -> 7, a small drift (error ~3 % -> ~7 %);
- Agrawal, classification function 0 -> 2, perturbation 0.05 (error ~8 % -> ~53 %);

each abrupt (width 1) and gradual (width 1,000), over `--seeds` seeds. A deployed model
makes the predictions: a `river.tree.HoeffdingTreeClassifier` trained on 5,000 events of the
pre-drift concept (another seed of the same generator), then frozen; its accuracy on 5,000
more of them is the spec's `baseline_metrics`. Prediction events carry the stream's x as
features, one event a second from a window-aligned start; each label comes 10 s after its
prediction. They go through the drift worker's pure state as `vigil evaluate` replays them
(`services.evaluate.replay`): the worker's event checks, batches of 500 predictions, after each
the labels whose time has come (time order), a ModelSpec of binary_classification,
window_seconds 900 (a window is 900 events), label_wait_seconds 300.

Detections counted, as event indices (0-based; the drift's centre is index `position`):

- Vigil online: `concept_drift` findings of the ADWIN detector, at `metrics["detected_at"]`;
- Vigil window rule: `concept_drift` (the contract's mean-of-4-windows rule) and
  `performance_degradation` (against the baseline accuracy) findings, at their window's end
  (the finding itself is due label_wait + lateness later);
- ADWIN alone: `river.drift.ADWIN()` (default delta 0.002, as Vigil's) fed the same 0/1
  errors in the same order; every detection, as river reports it ("any"), and those whose
  recent sub-window has the higher error ("rises").

Delay = first detection at or after the onset - position (negative: before the centre of a
gradual drift); false alarms = detections before the onset, position - width + 1 (where the
new concept's share is < 2 %). Results are printed as a table and written to
bench/results/concept.json.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from river import drift, tree
from river.datasets import synth
from rich.console import Console
from rich.table import Table

from shared.events import ModelSpec
from shared.settings import Settings
from shared.stats.online import ADWIN_DELTA, ErrorDetector
from services import evaluate

console = Console(width=max(120, shutil.get_terminal_size().columns))  # the table is ~110 wide
WINDOW = 900  # seconds, and events: one event a second
T0 = 1_700_000_000 // WINDOW * WINDOW + WINDOW  # window-aligned start
LABEL_DELAY = 10  # seconds from a prediction to its label
BATCH = 500  # predictions per batch, as a consumer poll would hand them over
TRAIN = 5_000  # pre-drift events the model learns from; as many again measure its baseline accuracy
MODEL = "concept-bench"

STREAMS: dict[str, tuple[Callable[[int], Any], Callable[[int], Any]]] = {
    "SEA 0->3": (lambda s: synth.SEA(variant=0, seed=s), lambda s: synth.SEA(variant=3, seed=s)),
    "SEA 0->2": (lambda s: synth.SEA(variant=0, seed=s), lambda s: synth.SEA(variant=2, seed=s)),
    "Agrawal 0->2": (lambda s: synth.Agrawal(classification_function=0, perturbation=0.05, seed=s),
                     lambda s: synth.Agrawal(classification_function=2, perturbation=0.05, seed=s)),
}
DETECTORS = {  # key -> table label
    "vigil_online": "Vigil online",
    "vigil_concept": "window concept",
    "vigil_degradation": "window degrad.",
    "adwin_any": "ADWIN any",
    "adwin_rises": "ADWIN rises",
}


class DriftStream(synth.ConceptDriftStream):
    """River's `ConceptDriftStream`, its sigmoid's exponent clamped: river's `math.exp` overflows
    when |t - position| / width > ~177 (any abrupt drift, width 1, past event 177). The same
    draws, so the same stream, wherever river's does not overflow."""

    def __iter__(self):
        rng = random.Random(self.seed)
        old, new = iter(self.stream), iter(self.drift_stream)
        t = 0
        while True:
            t += 1
            v = min(-4.0 * float(t - self.position) / float(self.width), 700.0)
            try:
                yield next(old) if rng.random() > 1.0 / (1.0 + math.exp(v)) else next(new)
            except StopIteration:
                return


def features(x: dict) -> dict[str, float]:
    return {str(k): round(float(v), 6) for k, v in x.items()}


def deployed(name: str, seed: int) -> tuple[tree.HoeffdingTreeClassifier, float]:
    """A model trained on the pre-drift concept (another seed), frozen; its accuracy on it."""
    pre = STREAMS[name][0](10_000 + seed)
    model = tree.HoeffdingTreeClassifier()
    data = list(pre.take(2 * TRAIN))
    for x, y in data[:TRAIN]:
        model.learn_one(features(x), y)
    right = sum(model.predict_one(features(x)) == y for x, y in data[TRAIN:])
    return model, right / TRAIN


def replay(name: str, seed: int, model, length: int, position: int, width: int) -> tuple[list, list, np.ndarray]:
    """The drifting stream through the frozen model: prediction events, label events, 0/1 errors."""
    pre, post = STREAMS[name]
    # river counts from 1: its position p is the 0-based index p - 1
    stream = DriftStream(pre(seed), post(seed), position=position + 1, width=width, seed=seed)
    preds, labels, errors = [], [], np.zeros(length)
    for i, (x, y) in enumerate(stream.take(length)):
        f = features(x)
        p = int(model.predict_one(f))
        errors[i] = p != int(y)
        preds.append({"event_id": f"{seed}-{i}", "model_id": MODEL, "timestamp": T0 + i, "features": f,
                      "prediction": p})
        labels.append({"event_id": f"{seed}-{i}", "model_id": MODEL, "timestamp": T0 + i + LABEL_DELAY,
                       "label": int(y)})
    return preds, labels, errors


def vigil(preds: list[dict], labels: list[dict], baseline: float,
          settings: Settings) -> dict[str, list[tuple[int, int]]]:
    """The events through the drift worker's state (`services.evaluate.replay`): per detector,
    (detection index, index of the last prediction applied when the finding came out)."""
    spec = ModelSpec(task="binary_classification", window_seconds=WINDOW, label_wait_seconds=300,
                     baseline_metrics={"accuracy": round(baseline, 4)})
    traffic = evaluate.Traffic(preds, labels, spec, None, float(T0), float(preds[-1]["timestamp"]), batch=BATCH)
    keys = {"concept_drift (online)": "vigil_online", "concept_drift (window)": "vigil_concept",
            "performance_degradation": "vigil_degradation"}
    out: dict[str, list[tuple[int, int]]] = {k: [] for k in keys.values()}
    for d in evaluate.replay(traffic, settings):
        if d.detector in keys and d.reported <= traffic.end:  # not those the closing event brings
            out[keys[d.detector]].append((int(d.at - T0), int(d.reported - T0)))
    return {k: sorted(v) for k, v in out.items()}


def adwin_alone(errors: np.ndarray) -> dict[str, list[int]]:
    """River's ADWIN (defaults) on the error stream: every detection, and the rises among them
    (the kept recent sub-window's error above the dropped old one's)."""
    ad, found, rises = drift.ADWIN(), [], []
    for i, v in enumerate(errors.tolist()):
        width, total = ad.width, ad.total
        ad.update(v)
        if ad.drift_detected:
            found.append(i)
            kept, dropped = ad.width, width + 1 - ad.width
            if kept > 0 and dropped > 0 and ad.total / kept > (total + v - ad.total) / dropped:
                rises.append(i)
    return {"adwin_any": found, "adwin_rises": rises}


def detector_ungated(errors: np.ndarray) -> list[int]:
    """Vigil's `ErrorDetector` on the same errors, without the finding's severity floor."""
    return [c.index for c in ErrorDetector("adwin").update(errors, np.arange(len(errors)))]


def run_one(name: str, seed: int, width: int, length: int, position: int, model, baseline: float,
            settings: Settings) -> dict[str, Any]:
    preds, labels, errors = replay(name, seed, model, length, position, width)
    found = {**vigil(preds, labels, baseline, settings),
             **{k: [(i, i) for i in v] for k, v in adwin_alone(errors).items()},
             "detector_ungated": [(i, i) for i in detector_ungated(errors)]}
    onset = position - width + 1
    row: dict[str, Any] = {"seed": seed, "baseline_accuracy": round(baseline, 4),
                           "error_before": round(float(errors[:onset].mean()), 4),
                           "error_after": round(float(errors[position + width:].mean()), 4)
                           if position + width < length else None}
    for key, hits in found.items():
        after = [(i, at) for i, at in hits if i >= onset]
        row[key] = {"delay": after[0][0] - position if after else None,
                    "reported": after[0][1] - position if after else None,
                    "false_alarms": sum(i < onset for i, _ in hits), "detections": [i for i, _ in hits]}
    return row


def summary(rows: list[dict], key: str, onset: int) -> dict[str, Any]:
    delays = [r[key]["delay"] for r in rows if r[key]["delay"] is not None]
    reported = [r[key]["reported"] for r in rows if r[key]["reported"] is not None]
    fa = sum(r[key]["false_alarms"] for r in rows)
    return {"mean_delay": round(statistics.fmean(delays), 1) if delays else None,
            "median_delay": statistics.median(delays) if delays else None,
            "median_reported": statistics.median(reported) if reported else None,
            "detected": len(delays), "runs": len(rows), "false_alarms": fa,
            "false_alarms_per_10k": round(fa / (onset * len(rows)) * 1e4, 3) if onset > 0 else None}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--length", type=int, default=20_000)
    parser.add_argument("--position", type=int, default=10_000)
    parser.add_argument("--widths", default="1,1000", help="drift widths, comma-separated")
    parser.add_argument("--streams", default=",".join(STREAMS), help=f"of {', '.join(STREAMS)}")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "concept.json")
    args = parser.parse_args(argv)
    widths = [int(w) for w in args.widths.split(",")]
    names = [s.strip() for s in args.streams.split(",")]
    if unknown := set(names) - set(STREAMS):
        parser.error(f"--streams: unknown {sorted(unknown)}; valid: {', '.join(STREAMS)}")
    if not 0 < args.position < args.length or any(w < 1 or args.position - w + 1 <= 0 for w in widths):
        parser.error("need 0 < position < length and 1 <= width <= position")
    settings = Settings()
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    with console.status("replaying") as status:
        for name in names:
            models = [deployed(name, seed) for seed in range(args.seeds)]
            for width in widths:
                status.update(f"{name}, width {width}")
                rows = [run_one(name, seed, width, args.length, args.position, *models[seed], settings)
                        for seed in range(args.seeds)]
                onset = args.position - width + 1
                results.append({"stream": name, "width": width, "onset": onset,
                                "error_before": round(statistics.fmean(r["error_before"] for r in rows), 4),
                                "error_after": round(statistics.fmean(r["error_after"] for r in rows), 4)
                                if all(r["error_after"] is not None for r in rows) else None,
                                "summary": {k: summary(rows, k, onset) for k in [*DETECTORS, "detector_ungated"]},
                                "runs": rows})
    elapsed = time.perf_counter() - started

    table = Table(title=f"Concept drift at event {args.position:,} of {args.length:,}: "
                        f"detection delay (events) and false alarms, {args.seeds} seeds")
    for col, justify in (("stream", "left"), ("width", "right"), ("error", "right"), ("detector", "left"),
                         ("detected", "right"), ("delay", "right"), ("median", "right"),
                         ("reported", "right"), ("FA", "right"), ("FA/10k", "right")):
        table.add_column(col, justify=justify, no_wrap=True)
    for res in results:
        err = f"{res['error_before']:.3f}->{res['error_after']:.3f}" if res["error_after"] is not None else ""
        for i, (key, label) in enumerate(DETECTORS.items()):
            s = res["summary"][key]
            num = lambda v, f=",.0f": "-" if v is None else format(v, f)  # noqa: E731
            table.add_row(*([res["stream"], f"{res['width']:,}", err] if i == 0 else ["", "", ""]),
                          label, f"{s['detected']}/{s['runs']}", num(s["mean_delay"], ",.1f"), num(s["median_delay"]),
                          num(s["median_reported"]) if key.startswith("vigil") else "",
                          str(s["false_alarms"]), num(s["false_alarms_per_10k"], ".2f"),
                          end_section=i == len(DETECTORS) - 1)
    console.print(table)
    console.print("delay (mean, median): first detection at or after the onset (position - width + 1) minus "
                  "position, in events; the window rule's (concept_drift, performance_degradation) at its window's "
                  "end. reported (median): the last prediction applied when Vigil's finding came out, minus "
                  "position. FA: false alarms, detections before the onset. ADWIN any / rises: river's ADWIN "
                  f"alone (delta {ADWIN_DELTA}), every change / rises of the error only. {elapsed:.0f} s")
    report = {"length": args.length, "position": args.position, "seeds": args.seeds, "widths": widths,
              "window_seconds": WINDOW, "label_delay_seconds": LABEL_DELAY, "batch": BATCH, "train_events": TRAIN,
              "adwin_delta": ADWIN_DELTA, "elapsed_s": round(elapsed, 1), "detectors": DETECTORS,
              "results": results}
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
