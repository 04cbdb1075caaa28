"""What a planner looks back at beside the forecast: each node's recent actuals, the champion's accuracy against
the baselines per level, and the last complete quarter's forecast against its actual.

All three are read off data the training already holds (the series, the backtest's evaluation windows); nothing
is refitted. They are saved with the forecast (:class:`~training.forecast.artifacts.ForecastArtifacts`) so that
the service's page and ``salesml report`` show the same figures.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.series import HierarchicalSeries
from training.forecast.artifacts import HISTORY_COLUMNS, LAST_QUARTER_COLUMNS
from training.forecast.backtest import BacktestResult
from training.forecast.config import CHOSEN

__all__ = ["accuracy_rows", "last_quarter_table", "recent_history"]

HISTORY_YEARS = 2


def recent_history(series: HierarchicalSeries, years: int = HISTORY_YEARS) -> pd.DataFrame:
    """``unique_id, ds, y`` of every node over the last ``years`` years of the series."""
    start = series.end - pd.DateOffset(years=years)
    recent = series.Y[series.Y["ds"] > start]
    return recent[HISTORY_COLUMNS].sort_values(["unique_id", "ds"]).reset_index(drop=True)


def accuracy_rows(result: BacktestResult) -> list[dict[str, Any]]:
    """Per level, the served forecast (``model='chosen'``, with what it is made of) and every baseline on the
    evaluation windows: ``level, model, role, wape, mase, bias, cov_80, cov_95`` and the ratio to the best
    baseline at that level. JSON-ready (NaN as None)."""
    m = result.metrics
    rows: list[dict[str, Any]] = []
    for level, part in m.groupby("level", sort=False):
        part = part.set_index("model")
        base = part.loc[[b for b in result.baselines if b in part.index], "wape"]
        best = float(base.min()) if len(base) else float("nan")
        for model in [CHOSEN, *base.index]:
            if model not in part.index:
                continue
            r = part.loc[model]
            row = {
                "level": str(level),
                "model": model,
                "role": "served" if model == CHOSEN else "baseline",
                "made_of": result.recipe.level_model(str(level)) if model == CHOSEN else model,
                "chosen_on": result.recipe.chosen_on,
            }
            for key in ("wape", "mase", "bias", "cov_80", "cov_95"):
                value = float(r[key]) if key in r and pd.notna(r[key]) else None
                row[key] = value
            row["ratio_to_best_baseline"] = (
                float(r["wape"]) / best if np.isfinite(best) and best > 0 and pd.notna(r["wape"]) else None
            )
            rows.append(row)
    return rows


def last_quarter_table(series: HierarchicalSeries, result: BacktestResult) -> pd.DataFrame:
    """Per node, the last complete quarter's actual and the served forecast's backtest for it.

    The quarter is the latest one whose last period is in the data. Its forecast is the served recipe's backtest
    forecast (``chosen`` in the backtest's full-horizon forecasts) from the latest cutoff before the quarter
    whose horizon holds every one of the quarter's periods: what the model would have said when the quarter
    began. Empty when no cutoff's horizon covers the whole quarter.
    """
    grid = pd.date_range(series.start, series.end, freq=series.freq)
    q = grid.to_period("Q")
    complete = [p for p in q.unique() if (grid[q == p].max() + grid.freq).to_period("Q") != p]
    if not complete:
        return pd.DataFrame(columns=LAST_QUARTER_COLUMNS)
    period = complete[-1]
    wanted = set(grid[q == period])
    fc = result.raw
    for cutoff in sorted(fc["cutoff"].unique(), reverse=True):
        window = fc[(fc["cutoff"] == cutoff) & fc["ds"].isin(wanted)]
        if set(window["ds"]) != wanted or pd.Timestamp(cutoff) >= min(wanted):
            continue
        sums = window.groupby(["unique_id", "level"], sort=False)[["y", CHOSEN]].sum().reset_index()
        return pd.DataFrame(
            {
                "unique_id": sums["unique_id"],
                "level": sums["level"].astype(str),
                "period": str(period),
                "cutoff": pd.Timestamp(cutoff),
                "periods": len(wanted),
                "actual": sums["y"].astype(float),
                "forecast": sums[CHOSEN].astype(float),
            }
        )[LAST_QUARTER_COLUMNS]
    return pd.DataFrame(columns=LAST_QUARTER_COLUMNS)
