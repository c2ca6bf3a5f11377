"""A drift partition's state and how a batch applies to it. Pure: no I/O, no clock, no metrics.

`DriftState` holds the predictions' `Windows` and each model's `LabelJoin`. `predictions` and
`labels` apply one topic's batch of a model's valid events (log order) and return an
`Applied`: the findings that became due (a drift window that closed; a performance window
whose labels are in; an online change), the gauges to set and the counts for the metrics. The
worker (`services.drift.app`) moves records in and these out; tests and benchmarks replay the
same functions, so "the findings of an uninterrupted run" is this module's output on the log.

A model is any object with `spec` (ModelSpec), `cfg` (WindowConfig) and `base` (Baseline | None).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.events import Finding, ModelSpec, event_times, floats
from shared.settings import Settings
from shared.stats.baseline import Baseline
from shared.stats.sample import hash_ids
from shared.stats.window import WindowLayout
from services.drift import performance
from services.drift.evaluate import findings as window_findings, gauges as window_gauges, parity
from services.drift.labels import JoinConfig, Joined, LabelJoin
from services.drift.quality import QualityLayout
from services.drift.windows import ClosedWindow, WindowConfig, Windows, columnar, window_of


@dataclass
class Applied:
    model_id: str
    findings: list[Finding] = field(default_factory=list)
    gauges: list[tuple[str, dict[str, str], float]] = field(default_factory=list)
    gauge_starts: list[int] = field(default_factory=list)  # the start of each gauge's window (the history)
    events: int = 0  # predictions counted
    late: int = 0  # predictions behind a closed window
    joined: Joined = field(default_factory=Joined)
    pending: int = 0  # predictions waiting for labels, after the batch
    skipped: list[tuple[int, str]] = field(default_factory=list)  # windows not evaluated: (start, why)

    def add_gauges(self, start: int, gauges: Sequence[tuple[str, dict[str, str], float]]) -> None:
        """Gauges of the window starting at `start`."""
        self.gauges.extend(gauges)
        self.gauge_starts.extend([start] * len(gauges))


def window_config(spec: ModelSpec, base: Baseline | None, sample_size: int) -> WindowConfig:
    """A model's windowing from its spec and reference (None: none registered yet)."""
    layout = WindowLayout.of(base, sample_size) if base is not None else WindowLayout(sample_size=sample_size)
    fairness = tuple(spec.fairness.attributes) if spec.fairness and spec.task != "regression" else ()
    return WindowConfig(spec.window_seconds, spec.allowed_lateness_seconds, layout, QualityLayout.of(spec.features),
                        fairness, 1 if spec.positive_label is None else spec.positive_label)


def join_config(spec: ModelSpec, settings: Settings) -> JoinConfig:
    return JoinConfig(spec.label_wait_seconds, spec.allowed_lateness_seconds, spec.window_seconds,
                      settings.drift_label_retention_seconds, settings.drift_max_pending)


class DriftState:
    """A partition's state: the predictions' windows, and each model's label join."""

    def __init__(self, windows: Windows | None = None, labels: dict[str, LabelJoin] | None = None):
        self.windows = windows or Windows()
        self.joins = labels or {}

    def join(self, model_id: str) -> LabelJoin:
        return self.joins.setdefault(model_id, LabelJoin())

    def predictions(self, model_id: str, model: Any, events: Sequence[Mapping[str, Any]],
                    settings: Settings, ts: Sequence[float] | None = None) -> Applied:
        """Count valid prediction events of one model (each passed `check_event`) into its windows
        and its join (`ts`: their times, when the caller parsed them)."""
        out = Applied(model_id)
        windows, lj = self.windows, self.join(model_id)
        batch, _ = columnar(events, windows.effective(model_id, model.cfg), checked=True, ts=ts)
        numeric = model.spec.task == "regression"
        batch.codes = floats(batch.raw_prediction) if numeric else lj.classes.codes(batch.raw_prediction)
        added = windows.add(model_id, model.cfg, batch, task=model.spec.task)
        out.events, out.late = len(batch), added.late
        for w in added.closed:
            self._close(w, model, lj, out)
        jcfg = join_config(model.spec, settings)
        if len(batch):
            at = np.flatnonzero(added.on_time)
            ends = dict(zip(added.starts[at].tolist(), added.ends[at].tolist()))
            out.joined += lj.add_predictions(lj.rows(batch.keys[at], added.starts[at], batch.ts[at], batch.codes[at],
                                       batch.confidence[at], [batch.segments[i] for i in at.tolist()],
                                       batch.variant[at]), ends, jcfg)
            out.joined.unmatched += lj.expire(windows.models[model_id].watermark, jcfg)
        self._due(model_id, model, jcfg, out)
        return out

    def labels(self, model_id: str, model: Any, events: Sequence[Mapping[str, Any]], settings: Settings,
               ts: Sequence[float] | None = None) -> Applied:
        """Join valid label events of one model (`ts`: their times, when the caller parsed them)."""
        out = Applied(model_id)
        lj, jcfg = self.join(model_id), join_config(model.spec, settings)
        keys = hash_ids([e["event_id"] for e in events])
        ts = np.array(event_times([e["timestamp"] for e in events]) if ts is None else ts, dtype=float)
        mw = self.windows.models.get(model_id)
        out.joined = lj.add_labels(keys, ts, [e["label"] for e in events], jcfg,
                                   numeric=model.spec.task == "regression",
                                   pred_wm=-math.inf if mw is None else mw.watermark)
        self._due(model_id, model, jcfg, out)
        return out

    def _close(self, w: ClosedWindow, model: Any, lj: LabelJoin, out: Applied) -> None:
        """A closed drift window's findings and gauges; what its performance window will read."""
        try:
            found, rows = window_findings(w, w.base or model.base, model.spec,
                                          "first_window" if w.base is not None else "registered")
        except ValueError as exc:  # the reference changed while the window was open
            out.skipped.append((w.start, str(exc)))
            found, rows = [], []
        out.findings.extend(found)
        lj.extra.setdefault("closed", {})[str(w.start)] = {
            "drifted": sorted({f.feature for f in found if f.kind == "data_drift" and f.feature}),
            "version": w.model_version}
        out.add_gauges(w.start, window_gauges(w.model_id, rows))
        for attribute, g in parity(w, model.spec).items():
            if g["demographic_parity_difference"] is not None:
                out.add_gauges(w.start, [("fairness", {"model_id": w.model_id, "attribute": attribute,
                                                       "metric": "demographic_parity_difference"},
                                          g["demographic_parity_difference"])])

    def _due(self, model_id: str, model: Any, jcfg: JoinConfig, out: Applied) -> None:
        """Performance windows due and online changes."""
        lj, mw = self.join(model_id), self.windows.models.get(model_id)
        if mw is not None:
            for w in lj.due(mw.watermark, jcfg):
                found, gauges = performance.evaluate(model_id, w, model.spec, lj)
                out.findings.extend(found)
                out.add_gauges(w.start, gauges)
            changes = performance.detect(lj, model.spec)
            if changes:
                out.findings.extend(performance.change_findings(
                    model_id, changes, model.spec, lj, lambda t: window_of(t, mw.epochs)))
        out.pending = len(lj)

    def to_dict(self) -> dict[str, Any]:
        return {"windows": self.windows.to_dict(), "labels": {k: v.to_dict() for k, v in self.joins.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> DriftState:
        d = d or {}
        return cls(Windows.from_dict(d.get("windows") or {}),
                   {k: LabelJoin.from_dict(v) for k, v in (d.get("labels") or {}).items()})
