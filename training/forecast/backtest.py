"""Rolling-origin backtest on common calendar cutoffs, with calibrated intervals and window totals.

At every cutoff (calibration cutoffs first, then the evaluation cutoffs) the base models are fitted on the data
up to the cutoff and forecast two quarters ahead. The ``LGBM+SN`` blend weight is chosen on the calibration
cutoffs only, then the LightGBM and blended forecasts are reconciled with every candidate method. Intervals at an evaluation cutoff are calibrated on the errors of earlier cutoffs whose actuals are
known at that cutoff. Metrics are computed by :func:`training.forecast.evaluate.evaluate` only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.series import HierarchicalSeries
from training.forecast.config import (
    COMBINED,
    SEASONAL_NAIVE,
    Cutoffs,
    ForecastConfig,
    auto_model_name,
    backtest_cutoffs,
)
from training.forecast.evaluate import evaluate
from training.forecast.intervals import (
    interval_columns,
    range_quantiles,
    range_scores,
    series_scale,
    step_intervals,
)
from training.forecast.models import base_forecasts, combine
from training.forecast.reconcile import reconcile, reconciled_name

__all__ = ["BacktestResult", "choose_model", "choose_weight", "forecast_at", "run_backtest"]


@dataclass
class BacktestResult:
    """What a backtest produced.

    Attributes:
        forecasts: evaluation windows: ``cutoff, unique_id, level, ds, step, y, scale``, one column per model
            and ``{model}-lo/hi-{80,95}``.
        totals: window totals per ``cutoff, unique_id`` with calibrated bounds per model.
        metrics: :func:`evaluate` output (``level, model, wape, mase, bias, cov_*, width_*, qcov_*``).
        raw: every cutoff's point forecasts over the full horizon (calibration source for later forecasts).
        cutoffs: the calendar cutoffs used.
        models: model columns (baselines, base LightGBM, reconciled variants).
        baselines: the statistical baseline columns.
        chosen: the reconciled LightGBM variant with the lowest mean WAPE over levels.
        combine_weight: the LightGBM share of ``LGBM+SN`` (chosen on the calibration cutoffs, see
            :func:`choose_weight`, or fixed by the config).
    """

    forecasts: pd.DataFrame
    totals: pd.DataFrame
    metrics: pd.DataFrame
    raw: pd.DataFrame
    cutoffs: Cutoffs
    models: list[str]
    baselines: list[str]
    chosen: str
    combine_weight: float = 0.5


def forecast_at(
    series: HierarchicalSeries,
    cutoff: pd.Timestamp,
    h: int,
    config: ForecastConfig,
    *,
    methods: tuple[str, ...] | None = None,
    candidates: tuple[str, ...] | None = None,
    baselines: bool = True,
    weight: float = 0.5,
) -> pd.DataFrame:
    """Point forecasts of every node from the data up to ``cutoff``, with ``level, step, scale`` and actuals.

    ``weight`` is the LightGBM share of the ``LGBM+SN`` blend.

    Returns:
        ``cutoff, unique_id, level, ds, step, y, scale`` + model columns; ``y`` is NaN beyond the data.
    """
    base = base_forecasts(series, cutoff, h, config, baselines=baselines, weight=None)
    return _finish(series, base, cutoff, h, config, weight, methods=methods, candidates=candidates)


def _finish(
    series: HierarchicalSeries,
    base: pd.DataFrame,
    cutoff: pd.Timestamp,
    h: int,
    config: ForecastConfig,
    weight: float,
    *,
    methods: tuple[str, ...] | None = None,
    candidates: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """Blend, clip, reconcile and annotate the base forecasts made at ``cutoff`` (see :func:`forecast_at`)."""
    base = base.copy()
    if config.combine:
        base[COMBINED] = combine(base, weight)
    if series.nonnegative:  # sales that are never negative get non-negative base forecasts too
        models = [c for c in base.columns if c not in ("unique_id", "ds")]
        base[models] = base[models].clip(lower=0.0)
    out = base
    for model in candidates or config.candidates():
        out = reconcile(series, out, model, methods or config.reconcilers)
    steps = {d: i + 1 for i, d in enumerate(pd.date_range(cutoff, periods=h + 1, freq=series.freq)[1:])}
    out["step"] = out["ds"].map(steps).astype(int)
    out["level"] = out["unique_id"].map(series.level_of())
    scale = series_scale(series.truncate(cutoff), series.season_length)
    out["scale"] = out["unique_id"].map(scale).fillna(1.0)
    out = out.merge(series.Y, on=["unique_id", "ds"], how="left")
    out.insert(0, "cutoff", cutoff)
    return out


def _window_totals(
    cur: pd.DataFrame,
    hist: pd.DataFrame,
    models: list[str],
    window: int,
    config: ForecastConfig,
    nonneg: bool,
) -> pd.DataFrame:
    """Window totals at one cutoff with bounds calibrated on earlier window totals."""
    agg = {"level": ("level", "first"), "scale": ("scale", "first"), "y": ("y", "sum")}
    agg.update({m: (m, "sum") for m in models})
    tot = cur.groupby(["cutoff", "unique_id"], sort=False).agg(**agg).reset_index()
    for m in models:
        scores = range_scores(hist, m, 1, window)
        for lv in config.levels:
            a = 1 - lv / 100
            lo_col, hi_col = interval_columns(m, lv)
            lo, hi = np.full(len(tot), np.nan), np.full(len(tot), np.nan)
            if len(scores):
                for lvl in tot["level"].unique():
                    q = range_quantiles(scores, lvl, np.array([a / 2, 1 - a / 2]), config.min_scores)
                    mask = (tot["level"] == lvl).to_numpy()
                    lo[mask] = tot.loc[mask, m] + q[0] * tot.loc[mask, "scale"]
                    hi[mask] = tot.loc[mask, m] + q[1] * tot.loc[mask, "scale"]
                lo, hi = np.minimum(lo, tot[m]), np.maximum(hi, tot[m])
                if nonneg:
                    lo, hi = np.clip(lo, 0, None), np.clip(hi, 0, None)
            tot[lo_col], tot[hi_col] = lo, hi
    return tot


def choose_weight(
    series: HierarchicalSeries,
    bases: list[tuple[pd.DataFrame, pd.Timestamp]],
    config: ForecastConfig,
    window: int,
    until: pd.Timestamp | None = None,
) -> float:
    """The LightGBM share of ``LGBM+SN`` with the lowest bottom-level WAPE at the calibration cutoffs.

    Args:
        bases: ``(base forecasts, cutoff)`` of the calibration cutoffs only (never an evaluation window).
        window: periods after each cutoff that count (one quarter, as in the evaluation).
        until: the first evaluation cutoff: actuals after it never count. Short histories get overlapping
            windows (a step shorter than a quarter), where a calibration cutoff's quarter runs past it.

    The bottom level has the most series (the aggregates of a single cutoff are a handful of numbers); ties go
    to the weight nearest 0.5.
    """
    bottom = set(series.bottom_ids)
    parts = []
    for base, cutoff in bases:
        last = pd.date_range(cutoff, periods=window + 1, freq=series.freq)[-1]
        if until is not None:
            last = min(last, until)
        part = base[base["unique_id"].isin(bottom) & (base["ds"] > cutoff) & (base["ds"] <= last)]
        parts.append(part.merge(series.Y, on=["unique_id", "ds"], how="inner"))
    frame = pd.concat(parts, ignore_index=True)
    denom = float(frame["y"].abs().sum())
    if frame.empty or denom == 0.0:
        return 0.5
    best, best_err = 0.5, np.inf
    for w in sorted(config.combine_grid, key=lambda v: abs(v - 0.5)):
        f = combine(frame, w)
        if series.nonnegative:
            f = f.clip(lower=0.0)
        err = float((frame["y"] - f).abs().sum()) / denom
        if err < best_err - 1e-12:
            best, best_err = float(w), err
    return best


def choose_model(metrics: pd.DataFrame, candidates: list[str]) -> str:
    """The candidate with the lowest mean WAPE over hierarchy levels."""
    score = metrics[metrics["model"].isin(candidates)].groupby("model")["wape"].mean()
    return str(score.idxmin())


def run_backtest(
    series: HierarchicalSeries,
    config: ForecastConfig | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> BacktestResult:
    """Backtest every model on the same calendar cutoffs; intervals and totals calibrated out of sample."""
    config = config or ForecastConfig()
    cuts = backtest_cutoffs(series, config)
    auto = auto_model_name(config, series.season_length)
    reconciled = [reconciled_name(b, m) for b in config.candidates() for m in config.reconcilers]
    baselines = [SEASONAL_NAIVE, auto]
    models = [*baselines, *config.candidates(), *reconciled]
    bases = []
    for c in cuts.all:
        if progress:
            progress(f"fitting at cutoff {c.date()}")
        bases.append((base_forecasts(series, c, cuts.horizon, config, weight=None), c))
    weight = config.combine_weight
    if weight is None:
        calibration = [(b, c) for b, c in bases if c in cuts.calibration]
        weight = (
            choose_weight(series, calibration, config, cuts.window, until=cuts.evaluation[0])
            if calibration
            else 0.5
        )
        if progress and config.combine:
            progress(f"LGBM+SN weight {weight:.1f} on LightGBM (chosen on the calibration cutoffs)")
    raw = pd.concat(
        [_finish(series, b, c, cuts.horizon, config, weight) for b, c in bases], ignore_index=True
    )

    fc_parts, tot_parts = [], []
    for c in cuts.evaluation:
        cur = raw[(raw["cutoff"] == c) & (raw["step"] <= cuts.window)].copy()
        hist = raw[(raw["cutoff"] < c) & (raw["ds"] <= c)]
        for m in models:
            cur = step_intervals(
                cur, hist, m, config.levels, min_scores=config.min_scores, nonnegative=series.nonnegative
            )
        fc_parts.append(cur)
        tot_parts.append(_window_totals(cur, hist, models, cuts.window, config, series.nonnegative))
    forecasts = pd.concat(fc_parts, ignore_index=True)
    head = ["cutoff", "unique_id", "level", "ds", "step", "y", "scale"]
    forecasts = forecasts[head + [c for c in forecasts.columns if c not in head]]
    totals = pd.concat(tot_parts, ignore_index=True)
    metrics = evaluate(forecasts, models, totals=totals, levels=config.levels, level_order=series.levels)
    chosen = choose_model(metrics, reconciled)
    return BacktestResult(forecasts, totals, metrics, raw, cuts, models, baselines, chosen, float(weight))
