"""The production forecast: rest of the current calendar quarter and the whole next one, with quarter totals.

The model chosen by the backtest is refitted on all data; per-period intervals and quarter-total
distributions are calibrated on the backtest's errors (every cutoff whose actuals are known), quarter totals
as totals. The current quarter's total is the actuals to date plus the forecast of its remaining periods.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from features.series import HierarchicalSeries
from training.forecast.artifacts import FORECAST_COLUMNS, QUARTER_COLUMNS, ForecastArtifacts
from training.forecast.backtest import BacktestResult, forecast_at
from training.forecast.config import CHOSEN, ForecastConfig
from training.forecast.intervals import (
    DIST_PROBS,
    interval_columns,
    range_quantiles,
    range_scores,
    step_intervals,
)
from training.forecast.recent import accuracy_rows, last_quarter_table, recent_history

__all__ = ["forecast_quarters", "quarter_periods"]


def quarter_periods(series: HierarchicalSeries) -> dict[str, pd.DatetimeIndex]:
    """Grid periods of the current quarter (the one holding the last data period) and of the next one.

    A period belongs to the quarter of its label (week-ending date for weeks, first day for months).
    """
    end = series.end
    current = end.to_period("Q")
    nxt = current + 1
    future = pd.date_range(end, nxt.end_time.normalize() + pd.Timedelta(days=31), freq=series.freq)
    future = future[future > end]
    q = future.to_period("Q")
    hist = pd.date_range(series.start, end, freq=series.freq)
    return {
        "current_actual": hist[hist.to_period("Q") == current],
        "current_rest": future[q == current],
        "next": future[q == nxt],
    }


def forecast_quarters(
    series: HierarchicalSeries, backtest: BacktestResult, config: ForecastConfig, *, meta: dict | None = None
) -> ForecastArtifacts:
    """Refit the chosen model on all data and build the artifacts serving needs."""
    chosen = CHOSEN
    recipe = backtest.recipe
    periods = quarter_periods(series)
    n_rest, n_next = len(periods["current_rest"]), len(periods["next"])
    h = n_rest + n_next
    cur = forecast_at(
        series, series.end, h, config, recipe, recipe.baselines_needed(backtest.baselines, config)
    )
    hist = backtest.raw[backtest.raw["ds"] <= series.end]
    cur = step_intervals(
        cur, hist, chosen, config.levels, min_scores=config.min_scores, nonnegative=series.nonnegative
    )
    fc = cur.rename(columns={chosen: "mean"})
    for lv in config.levels:
        lo, hi = interval_columns(chosen, lv)
        fc = fc.rename(columns={lo: f"lo-{lv}", hi: f"hi-{lv}"})
    forecasts = fc[FORECAST_COLUMNS].sort_values(["unique_id", "ds"]).reset_index(drop=True)

    # Quarter totals, calibrated as totals on the backtest's range errors.
    probs = list(DIST_PROBS)
    for lv in config.levels:
        a = 1 - lv / 100
        probs += [a / 2, 1 - a / 2]
    probs_arr = np.array(probs)
    levels = series.level_of()
    actual = series.Y[series.Y["ds"].isin(periods["current_actual"])].groupby("unique_id")["y"].sum()
    rows = []
    for quarter, first, last in (("current", 1, n_rest), ("next", n_rest + 1, h)):
        part = cur[(cur["step"] >= first) & (cur["step"] <= last)]
        f_sum = part.groupby("unique_id")[chosen].sum().reindex(series.nodes["unique_id"]).fillna(0.0)
        scale = cur.groupby("unique_id")["scale"].first().reindex(f_sum.index)
        base = (
            actual.reindex(f_sum.index).fillna(0.0)
            if quarter == "current"
            else pd.Series(0.0, index=f_sum.index)
        )
        if last >= first:
            scores = range_scores(hist, chosen, first, last)
            table = {
                lvl: range_quantiles(scores, lvl, probs_arr, config.min_scores) for lvl in levels.unique()
            }
            offs = np.vstack([table[levels[u]] for u in f_sum.index])
        else:  # the quarter is already complete: its total is known
            offs = np.zeros((len(f_sum), len(probs_arr)))
        q = f_sum.to_numpy()[:, None] + offs * scale.to_numpy()[:, None]
        if series.nonnegative:
            q = np.clip(q, 0.0, None)
        q = np.maximum.accumulate(q[:, : len(DIST_PROBS)], axis=1), q[:, len(DIST_PROBS) :]
        dist, bounds = q
        period = series.end.to_period("Q") + (0 if quarter == "current" else 1)
        frame = pd.DataFrame(
            {
                "unique_id": f_sum.index,
                "level": levels.reindex(f_sum.index).to_numpy(),
                "quarter": quarter,
                "period": str(period),
                "start": period.start_time.normalize(),
                "end": period.end_time.normalize(),
                "actual_to_date": base.to_numpy(),
                "forecast_rest": f_sum.to_numpy(),
                "mean": base.to_numpy() + f_sum.to_numpy(),
                "median": base.to_numpy() + dist[:, list(DIST_PROBS).index(0.5)],
            }
        )
        for j, lv in enumerate(config.levels):
            lo = np.minimum(bounds[:, 2 * j], f_sum.to_numpy())
            hi = np.maximum(bounds[:, 2 * j + 1], f_sum.to_numpy())
            frame[f"lo-{lv}"] = base.to_numpy() + lo
            frame[f"hi-{lv}"] = base.to_numpy() + hi
        qcols = [f"q{int(round(p * 100)):02d}" for p in DIST_PROBS]
        dist_frame = pd.DataFrame(base.to_numpy()[:, None] + dist, columns=qcols)
        rows.append(pd.concat([frame, dist_frame], axis=1))
    quarters = pd.concat(rows, ignore_index=True)
    quarters = quarters[QUARTER_COLUMNS + [c for c in quarters.columns if c not in QUARTER_COLUMNS]]
    info = {
        "cutoff": str(series.end.date()),
        "freq": series.freq,
        "season_length": series.season_length,
        "model": recipe.name,
        "recipe": recipe.to_dict(),
        "level_models": {lvl: recipe.level_model(lvl) for lvl in series.levels},
        "combine_weight": backtest.combine_weight,
        "levels": list(config.levels),
        "bottom_level": series.bottom_level,
        "hierarchy_levels": series.levels,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **(meta or {}),
    }
    info["accuracy"] = accuracy_rows(backtest)
    return ForecastArtifacts(
        forecasts=forecasts,
        quarters=quarters,
        nodes=series.nodes.copy(),
        meta=info,
        history=recent_history(series),
        last_quarter=last_quarter_table(series, backtest),
    )
