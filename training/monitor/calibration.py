"""Served probabilities against the outcomes that followed: per probability bin and per tier / grade, each rate
with its count and a Wilson 95 % interval (a rate of 3 in 10 and of 300 in 1,000 are not the same evidence)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from features.errors import SalesmlError

__all__ = [
    "band_table",
    "calibration_table",
    "expected_calibration_error",
    "roc_auc_or_none",
    "wilson_interval",
]


def wilson_interval(events: Any, n: Any, confidence: float = 0.95) -> tuple[Any, Any]:
    """Wilson score interval of ``events`` in ``n`` (arrays or scalars); ``n == 0`` gives NaN."""
    k = np.asarray(events, dtype=float)
    m = np.asarray(n, dtype=float)
    z = float(norm.ppf(0.5 + confidence / 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / m
        centre = (p + z * z / (2 * m)) / (1 + z * z / m)
        half = z * np.sqrt(p * (1 - p) / m + z * z / (4 * m * m)) / (1 + z * z / m)
    low = np.where(m > 0, centre - half, np.nan)
    high = np.where(m > 0, centre + half, np.nan)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def _as_float(values: Any, what: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        sample = np.asarray(values, dtype=object).ravel()[:3].tolist()
        raise SalesmlError(f"{what} must be numbers; found values such as {sample}") from None


def _check(probability: Any, outcome: Any) -> tuple[np.ndarray, np.ndarray]:
    p = _as_float(probability, "probabilities")
    y = _as_float(outcome, "outcomes (0 or 1, or true / false)")
    if p.shape != y.shape or p.ndim != 1:
        raise SalesmlError(
            "probabilities and outcomes must be two one-dimensional lists of the same length; "
            f"got shapes {p.shape} and {y.shape}"
        )
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        bad = p[~(np.isfinite(p) & (p >= 0) & (p <= 1))][:3].tolist()
        raise SalesmlError(f"probabilities must be finite numbers in [0, 1]; found {bad}")
    if not np.isin(y, (0.0, 1.0)).all():
        bad = y[~np.isin(y, (0.0, 1.0))][:3].tolist()
        raise SalesmlError(f"outcomes must be 0 or 1 (or true / false); found {bad}")
    return p, y


def _bin_index(p: np.ndarray, bins: int) -> np.ndarray:
    """Bin ``b`` holds ``b / bins <= p < (b + 1) / bins`` (1.0 in the last), the edges compared as the floats
    ``b / bins`` (``floor(p * bins)`` alone puts 0.29 in [0.28, 0.29) at 100 bins: 0.29 * 100 < 29)."""
    idx = np.floor(p * bins).astype(int)
    idx += p >= (idx + 1) / bins
    idx -= p < idx / bins
    return np.clip(idx, 0, bins - 1)


def calibration_table(probability: Any, outcome: Any, *, bins: int = 10) -> pd.DataFrame:
    """Per non-empty fixed-width bin of [0, 1] (1.0 in the last): ``bin_low, bin_high, n, events,
    mean_predicted, observed_rate, ci_low, ci_high``."""
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise SalesmlError(f"bins must be a whole number of at least 1; got {bins!r}")
    p, y = _check(probability, outcome)
    idx = _bin_index(p, bins)
    rows = []
    for b in np.unique(idx):
        at = idx == b
        n, events = int(at.sum()), int(y[at].sum())
        low, high = wilson_interval(events, n)
        rows.append(
            {
                "bin_low": b / bins,
                "bin_high": (b + 1) / bins,
                "n": n,
                "events": events,
                "mean_predicted": float(p[at].mean()),
                "observed_rate": events / n,
                "ci_low": low,
                "ci_high": high,
            }
        )
    columns = ["bin_low", "bin_high", "n", "events", "mean_predicted", "observed_rate", "ci_low", "ci_high"]
    return pd.DataFrame(rows, columns=columns)


def expected_calibration_error(table: pd.DataFrame) -> float:
    """``sum(n * |observed - predicted|) / sum(n)`` over the bins of :func:`calibration_table`."""
    n = table["n"].to_numpy(dtype=float)
    if n.sum() == 0:
        return float("nan")
    gap = np.abs(table["observed_rate"].to_numpy(dtype=float) - table["mean_predicted"].to_numpy(dtype=float))
    return float((n * gap).sum() / n.sum())


def band_table(band: Any, probability: Any, outcome: Any, order: Sequence[str] | None = None) -> pd.DataFrame:
    """Per tier / grade: ``band, n, events, observed_rate, ci_low, ci_high, mean_predicted`` (in ``order``)."""
    p, y = _check(probability, outcome)
    labels = np.asarray(band).astype(str)
    if labels.shape != p.shape:
        raise SalesmlError(
            f"bands and probabilities must have the same length; got {labels.shape} and {p.shape}"
        )
    seen = list(dict.fromkeys(labels.tolist()))
    names = [b for b in order if b in seen] + [b for b in seen if b not in order] if order else sorted(seen)
    rows = []
    for name in names:
        at = labels == name
        n, events = int(at.sum()), int(y[at].sum())
        low, high = wilson_interval(events, n)
        rows.append(
            {
                "band": name,
                "n": n,
                "events": events,
                "observed_rate": events / n,
                "ci_low": low,
                "ci_high": high,
                "mean_predicted": float(p[at].mean()),
            }
        )
    return pd.DataFrame(
        rows, columns=["band", "n", "events", "observed_rate", "ci_low", "ci_high", "mean_predicted"]
    )


def roc_auc_or_none(probability: Any, outcome: Any, *, min_each: int = 10) -> float | None:
    """ROC AUC when each class has at least ``min_each`` rows, else None (too few outcomes to say)."""
    from sklearn.metrics import roc_auc_score

    p, y = _check(probability, outcome)
    positives = int(y.sum())
    if positives < min_each or len(y) - positives < min_each:
        return None
    return float(roc_auc_score(y, p))
