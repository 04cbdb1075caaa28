"""Classification metrics shared by churn and lead scoring: one function, used everywhere."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

__all__ = ["band_table", "classification_metrics", "expected_calibration_error", "reliability_table"]


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """ECE with equal-width probability bins, weighted by the share of rows in each bin."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    bins = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            total += mask.mean() * abs(y[mask].mean() - p[mask].mean())
    return float(total)


def reliability_table(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Mean predicted vs observed rate per equal-width bin (the data behind a reliability diagram)."""
    frame = pd.DataFrame({"y": np.asarray(y, dtype=float), "p": np.asarray(p, dtype=float)})
    frame["bin"] = np.clip((frame["p"] * n_bins).astype(int), 0, n_bins - 1)
    out = frame.groupby("bin").agg(predicted=("p", "mean"), observed=("y", "mean"), n=("y", "size"))
    return out.reset_index()


def classification_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC, Brier, ECE (10 bins), lift and capture in the top decile, base rate, rows."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    n = len(y)
    base = float(y.mean()) if n else float("nan")
    two_classes = n > 0 and 0 < y.sum() < n
    top = np.argsort(-p, kind="stable")[: max(1, int(np.ceil(n * 0.1)))]
    top_rate = float(y[top].mean()) if n else float("nan")
    return {
        "roc_auc": float(roc_auc_score(y, p)) if two_classes else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if two_classes else float("nan"),
        "brier": float(brier_score_loss(y, np.clip(p, 0, 1))) if n else float("nan"),
        "ece": expected_calibration_error(y, p) if n else float("nan"),
        "lift_top_decile": top_rate / base if base > 0 else float("nan"),
        "capture_top_decile": float(y[top].sum() / y.sum()) if y.sum() > 0 else float("nan"),
        "base_rate": base,
        "n": float(n),
    }


def band_table(y: np.ndarray, p: np.ndarray, bands: np.ndarray, labels: tuple[str, ...]) -> pd.DataFrame:
    """Rows, observed rate and mean probability per band, in band order (highest probability first)."""
    frame = pd.DataFrame({"y": np.asarray(y, dtype=float), "p": p, "band": bands})
    out = frame.groupby("band", observed=False).agg(
        n=("y", "size"), observed_rate=("y", "mean"), mean_probability=("p", "mean")
    )
    return out.reindex(list(labels)).reset_index()
