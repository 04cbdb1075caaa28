"""Calibrated intervals from pooled, scaled conformal scores.

A forecast made at cutoff ``c`` for series ``i`` and step ``s`` has the score ``(y - yhat) / scale_i``, where
``scale_i`` is the series' in-sample seasonal-naive MAE at ``c`` (the MASE denominator). Scores are pooled over
the series of a hierarchy level (and a band of neighbouring steps), so the quantiles rest on thousands of
errors rather than the two per series that ``n_windows=2`` conformal gives. Only scores whose actuals are
known at the cutoff being calibrated are used: intervals at a cutoff never see later data.

Quarter totals are calibrated as totals: the score of a range of steps is the scaled error of the summed
forecast, so their quantiles are those of totals, not sums of per-period bands.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "DIST_PROBS",
    "interval_columns",
    "quantile_offsets",
    "range_scores",
    "series_scale",
    "step_intervals",
]

DIST_PROBS = np.round(np.arange(0.01, 1.0, 0.01), 2)  # the stored quarter-total distribution


def interval_columns(model: str, level: int) -> tuple[str, str]:
    """``({model}-lo-{level}, {model}-hi-{level})``."""
    return f"{model}-lo-{level}", f"{model}-hi-{level}"


def series_scale(train: pd.DataFrame, season: int) -> pd.Series:
    """Per-series in-sample MAE of the seasonal naive forecast (naive when too short), floored at 1."""
    wide = train.pivot(index="unique_id", columns="ds", values="y").sort_index(axis=1).to_numpy()
    lag = season if wide.shape[1] > season + 1 else 1
    if wide.shape[1] <= lag:
        mae = np.nanmean(np.abs(wide), axis=1)
    else:
        mae = np.nanmean(np.abs(wide[:, lag:] - wide[:, :-lag]), axis=1)
    ids = train.pivot(index="unique_id", columns="ds", values="y").index
    return pd.Series(np.maximum(np.nan_to_num(mae, nan=1.0), 1.0), index=ids, name="scale")


def quantile_offsets(scores: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Conformal quantiles of signed scores (finite-sample corrected toward the tails)."""
    scores = np.asarray(scores, dtype=float)
    scores = scores[np.isfinite(scores)]
    n = len(scores)
    if n == 0:
        return np.full(len(probs), np.nan)
    probs = np.asarray(probs, dtype=float)
    adj = np.where(probs >= 0.5, np.ceil((n + 1) * probs) / n, np.floor((n + 1) * probs) / n)
    adj = np.clip(adj, 0.0, 1.0)
    return np.quantile(scores, adj, method="linear")


def _pool(scores: pd.DataFrame, level: str, mask_steps: np.ndarray, min_scores: int) -> np.ndarray:
    here = scores[(scores["level"] == level) & mask_steps]["score"].to_numpy()
    if len(here) >= min_scores:
        return here
    return scores[mask_steps]["score"].to_numpy()


def step_intervals(
    frame: pd.DataFrame,
    history: pd.DataFrame,
    model: str,
    levels: tuple[int, ...],
    *,
    min_scores: int = 40,
    band: int = 2,
    nonnegative: bool = False,
) -> pd.DataFrame:
    """Add ``{model}-lo/hi-{level}`` to ``frame`` (``unique_id, level, step, scale, <model>``).

    Args:
        frame: forecasts at one cutoff.
        history: earlier forecasts whose actuals are known at that cutoff: ``level, step, scale, y, <model>``.
        model: the forecast column.
        levels: coverages in percent.
        min_scores: below this many scores at a level, pool all levels.
        band: pool steps within ``+- band`` of each step.
        nonnegative: clip bounds at zero.
    """
    out = frame.copy()
    probs = []
    for lv in levels:
        a = 1 - lv / 100
        probs += [a / 2, 1 - a / 2]
    probs_arr = np.array(probs)
    scores = pd.DataFrame(
        {
            "level": history["level"].to_numpy(),
            "step": history["step"].to_numpy(),
            "score": ((history["y"] - history[model]) / history["scale"]).to_numpy(),
        }
    )
    scores = scores[np.isfinite(scores["score"])]
    table: dict[tuple[str, int], np.ndarray] = {}
    for (lvl, step), _ in out.groupby(["level", "step"]):
        mask = (scores["step"] >= step - band).to_numpy() & (scores["step"] <= step + band).to_numpy()
        if not mask.any():
            mask = (scores["step"] <= step).to_numpy()  # nearest shorter steps
        table[(lvl, step)] = quantile_offsets(_pool(scores, lvl, mask, min_scores), probs_arr)
    keys = list(zip(out["level"], out["step"], strict=True))
    offsets = np.vstack([table[k] for k in keys]) if keys else np.empty((0, len(probs)))
    for j, lv in enumerate(levels):
        lo_col, hi_col = interval_columns(model, lv)
        lo = out[model].to_numpy() + offsets[:, 2 * j] * out["scale"].to_numpy()
        hi = out[model].to_numpy() + offsets[:, 2 * j + 1] * out["scale"].to_numpy()
        lo, hi = np.minimum(lo, out[model].to_numpy()), np.maximum(hi, out[model].to_numpy())
        if nonnegative:
            lo, hi = np.clip(lo, 0, None), np.clip(hi, 0, None)
        out[lo_col], out[hi_col] = lo, hi
    return out


def range_scores(history: pd.DataFrame, model: str, first: int, last: int) -> pd.DataFrame:
    """Scaled errors of the summed forecast over steps ``first..last`` at every earlier cutoff.

    ``history`` holds ``cutoff, unique_id, level, step, scale, y, <model>``; only cutoffs whose whole range has
    actuals count. Returns ``level, score``.
    """
    part = history[(history["step"] >= first) & (history["step"] <= last)]
    grouped = part.groupby(["cutoff", "unique_id"], sort=False).agg(
        level=("level", "first"),
        scale=("scale", "first"),
        n=("y", "count"),
        y=("y", "sum"),
        f=(model, "sum"),
    )
    grouped = grouped[grouped["n"] == last - first + 1]
    return pd.DataFrame(
        {
            "level": grouped["level"].to_numpy(),
            "score": ((grouped["y"] - grouped["f"]) / grouped["scale"]).to_numpy(),
        }
    )


def range_quantiles(scores: pd.DataFrame, level: str, probs: np.ndarray, min_scores: int) -> np.ndarray:
    """Quantile offsets of range-total scores for one level (all levels pooled when too few)."""
    here = scores.loc[scores["level"] == level, "score"].to_numpy()
    if len(here) < min_scores:
        here = scores["score"].to_numpy()
    return quantile_offsets(here, probs)
