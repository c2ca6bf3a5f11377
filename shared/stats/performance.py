"""Window performance: classification and regression metrics, and degradation against a baseline.

Metrics are computed once per closed window from that window's labelled predictions, as arrays
(no per-event Python loop). Classification uses one confusion matrix (`np.bincount`) over the
union of the classes present in predictions and labels; macro averages and zero division follow
scikit-learn's defaults (``labels=None``, ``zero_division=0``). `degradation` turns a window
metric and its baseline into "how much worse", the number `shared.policy.TIERS["degradation"]`
grades. No I/O, no clock.

>>> m = classification_metrics(np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1]), positive=1)
>>> m["accuracy"], m["precision"], m["recall"]
(0.75, 0.6666666666666666, 1.0)
>>> round(degradation("accuracy", 0.92, m["accuracy"]), 6)
0.17
"""

from __future__ import annotations

import numpy as np

TASKS = {"binary_classification": "accuracy", "multiclass_classification": "accuracy", "regression": "rmse"}
HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True, "precision": True, "recall": True, "f1": True,
    "precision_macro": True, "recall_macro": True, "f1_macro": True,
    "mae": False, "rmse": False,
}


def _pair(pred: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, label = np.asarray(pred), np.asarray(label)
    for name, a in (("pred", pred), ("label", label)):
        if a.ndim != 1:
            raise ValueError(f"{name}.shape={a.shape}: must be 1-D")
        if a.size == 0:
            raise ValueError(f"{name}: empty; must hold n >= 1 values")
    if pred.shape != label.shape:
        raise ValueError(f"pred has {pred.size} values, label {label.size}: must have the same length")
    return pred, label


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, 0.0 where den == 0 (scikit-learn's ``zero_division=0``)."""
    return np.divide(num, den, out=np.zeros(num.shape, dtype=float), where=den != 0)


def classification_metrics(pred: np.ndarray, label: np.ndarray, positive: int | None = None) -> dict[str, float]:
    """Accuracy and macro precision, recall, F1; with `positive`, those of the positive class.

    With the confusion matrix ``C[i, j]`` = events labelled class i and predicted class j over
    the K classes present in `pred` or `label`: ``tp = diag(C)``, precision ``tp / C.sum(0)``,
    recall ``tp / C.sum(1)``, F1 ``2 tp / (C.sum(0) + C.sum(1))``, each 0.0 where its
    denominator is 0; the ``*_macro`` values are their unweighted means over the K classes.
    ``accuracy = trace(C) / n``.

    Parameters
    ----------
    pred, label : np.ndarray of int, shape (n,)
        Predicted and true class codes, n >= 1.
    positive : int, optional
        The positive class code (binary tasks): adds ``precision``, ``recall``, ``f1`` of that
        class (one-vs-rest; all 0.0 when the class appears in neither array).

    Returns
    -------
    dict
        ``accuracy``, ``precision_macro``, ``recall_macro``, ``f1_macro`` and, with `positive`,
        ``precision``, ``recall``, ``f1``, as floats.

    Examples
    --------
    >>> m = classification_metrics(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2]))
    >>> m["accuracy"], m["precision_macro"], m["recall_macro"]
    (0.75, 0.8333333333333334, 0.8333333333333334)
    >>> classification_metrics(np.array([0, 0]), np.array([0, 0]), positive=1)["f1"]
    0.0
    """
    pred, label = _pair(pred, label)
    for name, a in (("pred", pred), ("label", label)):
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name}.dtype={a.dtype}: must be integer class codes")
    classes, codes = np.unique(np.concatenate([label, pred]), return_inverse=True)
    k, n = classes.size, pred.size
    confusion = np.bincount(codes[:n] * k + codes[n:], minlength=k * k).reshape(k, k)
    tp, predicted, actual = np.diag(confusion), confusion.sum(axis=0), confusion.sum(axis=1)
    precision, recall = _divide(tp, predicted), _divide(tp, actual)
    f1 = _divide(2 * tp, predicted + actual)
    out = {"accuracy": float(tp.sum() / n), "precision_macro": float(precision.mean()),
           "recall_macro": float(recall.mean()), "f1_macro": float(f1.mean())}
    if positive is not None:
        at = np.flatnonzero(classes == positive)
        if at.size:
            i = at[0]
            out.update(precision=float(precision[i]), recall=float(recall[i]), f1=float(f1[i]))
        else:
            out.update(precision=0.0, recall=0.0, f1=0.0)
    return out


def regression_metrics(pred: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """Mean absolute error ``mean(|pred - label|)`` and root mean squared error ``sqrt(mean((pred - label)**2))``.

    Parameters
    ----------
    pred, label : np.ndarray of float, shape (n,)
        Predicted and true values, n >= 1, all finite.

    Examples
    --------
    >>> regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 6.0]))
    {'mae': 1.0, 'rmse': 1.7320508075688772}
    """
    pred, label = _pair(pred, label)
    error = pred.astype(float) - label.astype(float)
    bad = np.flatnonzero(~np.isfinite(error))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"pred[{i}]={pred[i]}, label[{i}]={label[i]}: both must be finite")
    return {"mae": float(np.abs(error).mean()), "rmse": float(np.sqrt(np.mean(error**2)))}


def degradation(metric: str, baseline: float, value: float) -> float:
    """How much worse the window's `value` is than `baseline`: positive = worse.

    Higher-is-better metrics (accuracy, precision, recall, F1): ``baseline - value``, as
    DESIGN.md defines performance degradation. Lower-is-better errors (mae, rmse): relative,
    ``(value - baseline) / baseline`` when ``baseline > 0``, else ``value - baseline``.
    *Vigil's choice*: errors carry the target's unit, so the relative change lets the same
    degradation tiers (0.03 / 0.05 / 0.10) apply to regression models in any unit.

    Examples
    --------
    >>> round(degradation("accuracy", 0.90, 0.84), 6)
    0.06
    >>> degradation("rmse", 2.0, 2.2) > 0.0999, degradation("rmse", 2.0, 1.5)
    (True, -0.25)
    >>> degradation("auc", 0.9, 0.8)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: metric='auc': unknown; valid: accuracy, precision, recall, f1, ..., mae, rmse
    """
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"metric={metric!r}: unknown; valid: {', '.join(HIGHER_IS_BETTER)}")
    if HIGHER_IS_BETTER[metric]:
        return float(baseline - value)
    if baseline > 0:
        return float((value - baseline) / baseline)
    return float(value - baseline)


def primary_metric(task: str) -> str:
    """The metric a task's degradation and trend are judged on.

    >>> primary_metric("multiclass_classification"), primary_metric("regression")
    ('accuracy', 'rmse')
    """
    if task not in TASKS:
        raise ValueError(f"task={task!r}: unknown; valid: {', '.join(TASKS)}")
    return TASKS[task]


LOSSES = {"mae": "absolute error", "rmse": "squared error"}  # each error metric's per-event loss


def loss_moments(pred: np.ndarray, label: np.ndarray) -> dict[str, list[float]]:
    """Per error metric, ``[n, mean, variance]`` of its per-event loss: ``|e|`` for mae, ``e**2``
    for rmse (``rmse = sqrt(mean)``), ``e = pred - label``; the variance with ``ddof=1`` (0 at n=1).
    What `worse_p_value` tests; mergeable with `pool_moments`.

    >>> loss_moments(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 6.0]))
    {'mae': [3.0, 1.0, 3.0], 'rmse': [3.0, 3.0, 27.0]}
    """
    pred, label = _pair(pred, label)
    e = pred.astype(float) - label.astype(float)
    ddof = 1 if e.size > 1 else 0
    a, s = np.abs(e), e**2
    return {"mae": [float(e.size), float(a.mean()), float(a.var(ddof=ddof))],
            "rmse": [float(e.size), float(s.mean()), float(s.var(ddof=ddof))]}


def pool_moments(parts: list[list[float]]) -> list[float]:
    """``[n, mean, variance]`` of the union of samples given by their own ``[n, mean, variance]``
    (ddof=1), as if computed on the concatenation.

    >>> x = np.array([1.0, 2.0, 4.0, 8.0, 9.0])
    >>> pool_moments([[2, x[:2].mean(), x[:2].var(ddof=1)], [3, x[2:].mean(), x[2:].var(ddof=1)]])
    [5.0, 4.8, 12.7]
    >>> round(float(x.var(ddof=1)), 6)
    12.7
    """
    n = float(sum(p[0] for p in parts))
    if n == 0:
        return [0.0, 0.0, 0.0]
    mean = sum(p[0] * p[1] for p in parts) / n
    ss = sum((p[0] - 1) * p[2] + p[0] * (p[1] - mean) ** 2 for p in parts)
    return [n, round(float(mean), 12), round(float(ss) / (n - 1), 12) if n > 1 else 0.0]


def worse_p_value(window: list[float], reference: float | list[float]) -> float | None:
    """One-sided p-value of H1 "the window's mean loss is above the reference's".

    `window` is ``[n, mean, variance]`` of the per-event losses (`loss_moments`); `reference`
    a known mean loss (a spec's ``baseline_metrics``: ``mae``, or ``rmse**2``) or another sample's
    ``[n, mean, variance]`` (a first-window baseline, the previous windows pooled). Large-sample
    z-test, ``z = (mean - ref) / sqrt(var / n [+ ref_var / ref_n])``, ``p = P(Z >= z)`` — the
    losses need not be normal, only n large (Vigil judges a window from 100 labels). ``None``
    when either side has no variance to test with.

    >>> round(worse_p_value([400, 1.1, 1.0], 1.0), 4)  # z = 0.1 / 0.05 = 2
    0.0228
    >>> round(worse_p_value([400, 1.1, 1.0], [400, 1.0, 1.0]), 4)  # z = 0.1 / sqrt(0.005)
    0.0786
    """
    from scipy.stats import norm
    n, mean, var = window
    se2 = var / n if n > 0 else 0.0
    if isinstance(reference, (int, float)):
        ref = float(reference)
    else:
        rn, ref, rvar = reference
        se2 += rvar / rn if rn > 0 else 0.0
    if se2 <= 0 or not np.isfinite(se2):
        return None
    return float(norm.sf((mean - ref) / np.sqrt(se2)))
