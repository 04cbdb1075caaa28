"""The one place forecast metrics are computed, from the backtest's long output.

``forecasts`` has ``cutoff, unique_id, level, ds, y, scale`` and, per model, the point column and
``{model}-lo/hi-{level}``; ``totals`` has one row per ``cutoff, unique_id`` with the window total ``y`` and,
per model, the total and its calibrated bounds. Metrics are pooled over cutoffs and series of a level.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.forecast.intervals import interval_columns

__all__ = ["METRICS", "evaluate"]

METRICS = ("wape", "mase", "bias", "cov_80", "width_80", "cov_95", "width_95", "qcov_80", "qcov_95")


def _interval_stats(frame: pd.DataFrame, model: str, level: int) -> tuple[float, float]:
    lo_col, hi_col = interval_columns(model, level)
    if lo_col not in frame.columns:
        return np.nan, np.nan
    ok = frame[lo_col].notna() & frame[hi_col].notna()
    f = frame[ok]
    if f.empty:
        return np.nan, np.nan
    cover = float(((f["y"] >= f[lo_col]) & (f["y"] <= f[hi_col])).mean())
    width = float((f[hi_col] - f[lo_col]).mean() / max(f["y"].abs().mean(), 1e-9))
    return cover, width


def evaluate(
    forecasts: pd.DataFrame,
    models: list[str],
    *,
    totals: pd.DataFrame | None = None,
    levels: tuple[int, ...] = (80, 95),
    level_order: list[str] | None = None,
) -> pd.DataFrame:
    """Per hierarchy level and model: WAPE, MASE, bias, interval coverage / relative width, total coverage.

    * ``wape`` = sum |y - yhat| / sum |y|; ``bias`` = sum (yhat - y) / sum |y| (positive: over-forecast);
    * ``mase`` = mean over series-windows of MAE / in-sample seasonal-naive MAE (``scale``);
    * ``cov_L`` = share of actuals inside the L % interval; ``width_L`` = mean width / mean |y|;
    * ``qcov_L`` = share of window totals inside their L % total interval.

    Args:
        forecasts: the backtest's evaluation windows.
        models: model columns to score.
        totals: window totals with bounds (for ``qcov_*``).
        levels: interval coverages in percent.
        level_order: order of hierarchy levels in the output (coarse to fine).

    Returns:
        one row per ``level, model`` with the columns of :data:`METRICS` and ``n_series``.
    """
    rows = []
    for lvl, frame in forecasts.groupby("level", sort=False):
        denom = max(float(frame["y"].abs().sum()), 1e-9)
        for model in models:
            err = frame[model] - frame["y"]
            mae = err.abs().groupby([frame["cutoff"], frame["unique_id"]]).mean()
            scale = frame.groupby(["cutoff", "unique_id"])["scale"].first()
            row = {
                "level": lvl,
                "model": model,
                "wape": float(err.abs().sum() / denom),
                "mase": float((mae / scale).mean()),
                "bias": float(err.sum() / denom),
                "n_series": int(frame["unique_id"].nunique()),
            }
            for lv in levels:
                row[f"cov_{lv}"], row[f"width_{lv}"] = _interval_stats(frame, model, lv)
                row[f"qcov_{lv}"] = np.nan
                if totals is not None:
                    part = totals[totals["level"] == lvl]
                    lo_col, hi_col = interval_columns(model, lv)
                    if lo_col in part.columns and len(part):
                        ok = part[lo_col].notna()
                        p = part[ok]
                        row[f"qcov_{lv}"] = float(((p["y"] >= p[lo_col]) & (p["y"] <= p[hi_col])).mean())
            rows.append(row)
    out = pd.DataFrame(rows)
    order = {lvl: i for i, lvl in enumerate(level_order or forecasts["level"].drop_duplicates())}
    out["_order"] = out["level"].map(order)
    out = out.sort_values(["_order", "model"], kind="stable").reset_index(drop=True)
    return out[["level", "model", *[m for m in METRICS if m in out.columns], "n_series"]]
