"""Rolling-origin backtest on common calendar cutoffs: calibration cutoffs choose, evaluation cutoffs measure.

At every cutoff the base models (the statistical baselines and a global LightGBM) are fitted on the data up
to the cutoff and forecast two quarters ahead. On the calibration cutoffs alone (:mod:`training.forecast.select`)
the LightGBM objective, the ``LGBM+SN`` weight, the ensemble members, the per-level base and finally the served
forecast (a base model and a reconciliation method, the :class:`~training.forecast.select.Recipe`) are chosen;
the evaluation cutoffs then only measure every model and the served forecast, under the fixed name ``chosen``.
Intervals at an evaluation cutoff are calibrated on the errors of earlier cutoffs whose actuals are known at
that cutoff. Metrics are computed by :func:`training.forecast.evaluate.evaluate` only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.series import HierarchicalSeries
from training.forecast.config import (
    CHOSEN,
    COMBINED,
    ENSEMBLE,
    LGBM,
    PER_LEVEL,
    Cutoffs,
    ForecastConfig,
    backtest_cutoffs,
    baseline_names,
)
from training.forecast.evaluate import evaluate
from training.forecast.intervals import (
    interval_columns,
    range_quantiles,
    range_scores,
    series_scale,
    step_intervals,
)
from training.forecast.models import base_forecasts, combine, intermittent_share, lgbm_column
from training.forecast.reconcile import methods_for, reconcile, reconciled_name
from training.forecast.select import Recipe, choice_rows, derive, level_wape, ratio_score

__all__ = ["INTERMITTENT_SHARE", "BacktestResult", "choose_weight", "forecast_at", "run_backtest"]

INTERMITTENT_SHARE = 0.05  # bottom series with at least this share of zero periods get Croston-type baselines


@dataclass
class BacktestResult:
    """What a backtest produced.

    Attributes:
        forecasts: evaluation windows: ``cutoff, unique_id, level, ds, step, y, scale``, one column per model
            (``chosen`` among them) and ``{model}-lo/hi-{80,95}`` for the baselines, ``LGBM`` and ``chosen``.
        totals: window totals per ``cutoff, unique_id`` with calibrated bounds per model.
        metrics: :func:`evaluate` output (``level, model, wape, mase, bias, cov_*, width_*, qcov_*``).
        raw: every cutoff's point forecasts over the full horizon (calibration source for later forecasts).
        cutoffs: the calendar cutoffs used.
        models: model columns (baselines, base LightGBM, blends, reconciled variants, ``chosen``).
        baselines: the statistical baseline columns.
        recipe: how ``chosen`` is made, and on which cutoffs it was chosen.
        selection: the choice's scores: one row per candidate and level (``wape``, ``ratio`` to the best
            baseline at that level on the choosing windows) with ``score`` (the mean ratio) and ``role``.
        intermittent_share: share of zero periods of the bottom series before the first evaluation cutoff.
    """

    forecasts: pd.DataFrame
    totals: pd.DataFrame
    metrics: pd.DataFrame
    raw: pd.DataFrame
    cutoffs: Cutoffs
    models: list[str]
    baselines: list[str]
    recipe: Recipe
    selection: pd.DataFrame
    intermittent_share: float = 0.0

    @property
    def chosen(self) -> str:
        """The candidate served as ``chosen`` (e.g. ``PerLevel/MinTrace_ols``)."""
        return self.recipe.name

    @property
    def combine_weight(self) -> float:
        return self.recipe.weight


def _annotate(series: HierarchicalSeries, frame: pd.DataFrame, cutoff: pd.Timestamp, h: int) -> pd.DataFrame:
    """Add ``step, level, scale`` and the actuals ``y`` (NaN beyond the data), and a leading ``cutoff``."""
    out = frame.copy()
    steps = {d: i + 1 for i, d in enumerate(pd.date_range(cutoff, periods=h + 1, freq=series.freq)[1:])}
    out["step"] = out["ds"].map(steps).astype(int)
    out["level"] = out["unique_id"].map(series.level_of())
    scale = series_scale(series.truncate(cutoff), series.season_length)
    out["scale"] = out["unique_id"].map(scale).fillna(1.0)
    out = out.drop(columns="y", errors="ignore").merge(series.Y, on=["unique_id", "ds"], how="left")
    out.insert(0, "cutoff", cutoff)
    return out


def forecast_at(
    series: HierarchicalSeries,
    cutoff: pd.Timestamp,
    h: int,
    config: ForecastConfig,
    recipe: Recipe,
    baselines: list[str],
) -> pd.DataFrame:
    """The served forecast made at ``cutoff`` by ``recipe``, with the base models it is made of.

    Returns:
        ``cutoff, unique_id, level, ds, step, y, scale`` + base model columns + ``chosen``; ``y`` is NaN
        beyond the data.
    """
    base = base_forecasts(series, cutoff, h, config, baselines=baselines, objectives=(recipe.objective,))
    base = derive(
        series,
        base,
        config,
        weight=recipe.weight,
        members=recipe.members or None,
        per_level=recipe.per_level or None,
    )
    components = recipe.components
    bases = list(dict.fromkeys(c.split("/", 1)[0] for c in components))
    methods = tuple(dict.fromkeys(c.split("/", 1)[1] for c in components))
    out = reconcile(series, base, bases, methods)
    out[CHOSEN] = out[components].mean(axis=1)
    out = out.drop(columns=[reconciled_name(b, m) for b in bases for m in methods])
    return _annotate(series, out, cutoff, h)


def _window_totals(
    cur: pd.DataFrame,
    hist: pd.DataFrame,
    models: list[str],
    with_bounds: list[str],
    window: int,
    config: ForecastConfig,
    nonneg: bool,
) -> pd.DataFrame:
    """Window totals at one cutoff; ``with_bounds`` get bounds calibrated on earlier window totals."""
    agg = {"level": ("level", "first"), "scale": ("scale", "first"), "y": ("y", "sum")}
    agg.update({m: (m, "sum") for m in models})
    tot = cur.groupby(["cutoff", "unique_id"], sort=False).agg(**agg).reset_index()
    for m in with_bounds:
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


def _choose_objective(
    series: HierarchicalSeries,
    bases: list[tuple[pd.DataFrame, pd.Timestamp]],
    objectives: tuple[str, ...],
    baselines: list[str],
    window: int,
    until: pd.Timestamp,
) -> str:
    """The objective whose bottom-up LightGBM sum has the lowest :func:`ratio_score` on the calibration rows."""
    cols = [lgbm_column(o) for o in objectives]
    summed = []
    for base, cutoff in bases:
        frame = derive(series, base[["unique_id", "ds", *baselines, *cols]], ForecastConfig(combine=False))
        frame = reconcile(series, frame, cols, ("BottomUp",))
        frame = frame.drop(columns=cols).rename(columns={reconciled_name(c, "BottomUp"): c for c in cols})
        summed.append((frame, cutoff))
    rows = choice_rows(series, summed, window, until)
    wape = level_wape(rows, [*baselines, *cols], series.levels)
    score = ratio_score(wape, cols, baselines)
    return objectives[int(np.argmin(score.to_numpy()))]


def _choose_pool(
    rows: pd.DataFrame,
    score: pd.Series,
    ranked: list[str],
    baselines: list[str],
    size: int,
    levels: list[str],
) -> tuple[list[str], pd.Series | None]:
    """The ``size`` best candidates by ``score`` and their mean's WAPE per level on ``rows`` (the choosing
    windows), when that mean scores better there than the best reconciled baseline does; otherwise
    ``([], None)`` (the best candidate is served alone, so a baseline that ties with the pool is served as it
    is)."""
    members = ranked[:size]
    if len(members) < 2:
        return [], None
    wape = level_wape(rows.assign(_pool=rows[members].mean(axis=1)), ["_pool", *baselines], levels)
    pooled_score = float(ratio_score(wape, ["_pool"], baselines).iloc[0])
    floor = min(float(score[c]) for c in ranked if c.split("/", 1)[0] in baselines)
    return (members, wape["_pool"]) if pooled_score < floor else ([], None)


def _selection_table(
    wape: pd.DataFrame, candidates: list[str], baselines: list[str], role: dict
) -> pd.DataFrame:
    best = wape[baselines].min(axis=1).clip(lower=1e-12)
    ratio = wape.div(best, axis=0)
    score = ratio[candidates].mean(axis=0)
    rows = []
    for model in wape.columns:
        for level in wape.index:
            rows.append(
                {
                    "model": model,
                    "level": level,
                    "wape": float(wape.loc[level, model]),
                    "ratio": float(ratio.loc[level, model]),
                    "score": float(score.get(model, np.nan)),
                    "role": role.get(model, "candidate" if model in candidates else "base"),
                }
            )
    return pd.DataFrame(rows)


def _lgbm_renamed(base: pd.DataFrame, objective: str, objectives: tuple[str, ...]) -> pd.DataFrame:
    """Keep the chosen objective's LightGBM as ``LGBM`` and drop the others."""
    if len(objectives) == 1:
        return base
    out = base.drop(columns=[lgbm_column(o) for o in objectives if o != objective])
    return out.rename(columns={lgbm_column(objective): LGBM})


def run_backtest(
    series: HierarchicalSeries,
    config: ForecastConfig | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> BacktestResult:
    """Choose on the calibration cutoffs, measure on the evaluation cutoffs; intervals calibrated out of sample."""
    config = config or ForecastConfig()
    say = progress or (lambda _msg: None)
    cuts = backtest_cutoffs(series, config)
    first = cuts.evaluation[0]
    share = intermittent_share(series.truncate(first), series.bottom_ids)
    baselines = baseline_names(
        config, series.season_length, series.nonnegative and share >= INTERMITTENT_SHARE
    )
    methods = methods_for(series, config.reconcilers, config.mintrace_max_bottom)
    objectives = tuple(o for o in config.objectives if series.nonnegative or o not in ("tweedie", "poisson"))
    objectives = objectives or ("l1",)
    choosing = cuts.calibration or cuts.evaluation  # too short a history: the evaluation windows choose
    chosen_on = "calibration" if cuts.calibration else "evaluation"
    until = first if cuts.calibration else None
    if chosen_on == "evaluation":
        objectives = objectives[:1]

    # 1. base forecasts at the choosing cutoffs, every objective competing
    bases: dict[pd.Timestamp, pd.DataFrame] = {}
    for c in choosing:
        say(f"fitting at {chosen_on} cutoff {c.date()}")
        bases[c] = base_forecasts(series, c, cuts.horizon, config, baselines=baselines, objectives=objectives)
    choice = [(bases[c], c) for c in choosing]
    objective = objectives[0]
    if len(objectives) > 1:
        objective = _choose_objective(series, choice, objectives, baselines, cuts.window, until)
        say(f"LightGBM objective {objective} (chosen on the {chosen_on} cutoffs)")
    for c in choosing:
        bases[c] = _lgbm_renamed(bases[c], objective, objectives)
    choice = [(bases[c], c) for c in choosing]

    # 2. blend weight, ensemble members, per-level base
    weight = config.combine_weight
    if weight is None:
        weight = choose_weight(series, choice, config, cuts.window, until=until)
    rows = choice_rows(
        series, [(derive(series, b, config, weight=weight), c) for b, c in choice], cuts.window, until
    )
    wape = level_wape(rows, [*baselines, LGBM], series.levels)
    members = []
    if config.ensemble:
        bottom = wape.loc[series.bottom_level, baselines].sort_values(kind="stable")
        members = [LGBM, *bottom.index[:2]]
    singles = [*baselines, LGBM] + ([COMBINED] if config.combine else []) + ([ENSEMBLE] if members else [])
    derived = [(derive(series, b, config, weight=weight, members=members or None), c) for b, c in choice]
    wape = level_wape(choice_rows(series, derived, cuts.window, until), singles, series.levels)
    per_level = {lvl: str(wape.loc[lvl, singles].astype(float).idxmin()) for lvl in series.levels}
    if not config.ensemble:
        per_level = {}

    # 3. every base model reconciled by every method competes
    bases_all = [*singles] + ([PER_LEVEL] if per_level else [])
    finished = {}
    for b, c in choice:
        d = derive(series, b, config, weight=weight, members=members or None, per_level=per_level or None)
        finished[c] = reconcile(series, d, bases_all, methods)
    candidates = [reconciled_name(b, m) for b in bases_all for m in methods]
    rows = choice_rows(series, [(finished[c], c) for c in choosing], cuts.window, until)
    wape = level_wape(rows, [*bases_all, *candidates], series.levels)
    evidence = int(rows["ds"].nunique())
    competing = candidates
    if evidence < (config.min_choice_periods or -(-cuts.window // 2)):
        competing = [reconciled_name(b, m) for b in baselines for m in methods]
        say(f"only {evidence} period(s) of actuals choose: the statistical baselines alone compete")
    score = ratio_score(wape, competing, baselines)
    ranked = [str(c) for c in score.sort_values(kind="stable").index]
    pool, pooled_wape = _choose_pool(rows, score, ranked, baselines, config.pool_size, series.levels)
    base_model, method = ranked[0].split("/", 1)
    recipe = Recipe(
        base=base_model,
        method=method,
        objective=objective,
        weight=float(weight),
        members=list(members),
        per_level=per_level if PER_LEVEL in {c.split("/", 1)[0] for c in pool or ranked[:1]} else {},
        pool=pool,
        chosen_on=chosen_on,
        choice_cutoffs=[str(c.date()) for c in choosing],
    )
    best = recipe.name
    if pooled_wape is not None:
        wape[best] = pooled_wape
        competing = [*competing, best]
        score[best] = ratio_score(wape, [best], baselines)[best]
    say(f"chosen {best} (score {score[best]:.3f} on the {chosen_on} cutoffs; best baseline per level = 1)")
    selection = _selection_table(
        wape, competing, baselines, {best: "chosen", **dict.fromkeys(pool, "pooled")}
    )

    # 4. the evaluation cutoffs only measure
    for c in cuts.evaluation:
        if c in finished:
            continue
        say(f"fitting at evaluation cutoff {c.date()}")
        b = base_forecasts(series, c, cuts.horizon, config, baselines=baselines, objectives=(objective,))
        d = derive(series, b, config, weight=weight, members=members or None, per_level=per_level or None)
        finished[c] = reconcile(series, d, bases_all, methods)
    # every cutoff's forecasts, the served one under its fixed name (calibration cutoffs: interval history)
    raw = []
    for c in cuts.all:
        frame = finished[c].copy()
        frame[CHOSEN] = frame[recipe.components].mean(axis=1)
        raw.append(_annotate(series, frame, c, cuts.horizon))
    raw = pd.concat(raw, ignore_index=True)

    models = [*bases_all, *candidates, CHOSEN]
    with_bounds = [*baselines, LGBM, CHOSEN]
    fc_parts, tot_parts = [], []
    for c in cuts.evaluation:
        cur = raw[(raw["cutoff"] == c) & (raw["step"] <= cuts.window)].copy()
        hist = raw[(raw["cutoff"] < c) & (raw["ds"] <= c)]
        for m in with_bounds:
            cur = step_intervals(
                cur, hist, m, config.levels, min_scores=config.min_scores, nonnegative=series.nonnegative
            )
        fc_parts.append(cur)
        tot_parts.append(
            _window_totals(cur, hist, models, with_bounds, cuts.window, config, series.nonnegative)
        )
    forecasts = pd.concat(fc_parts, ignore_index=True)
    head = ["cutoff", "unique_id", "level", "ds", "step", "y", "scale"]
    forecasts = forecasts[head + [c for c in forecasts.columns if c not in head]]
    totals = pd.concat(tot_parts, ignore_index=True)
    metrics = evaluate(forecasts, models, totals=totals, levels=config.levels, level_order=series.levels)
    return BacktestResult(forecasts, totals, metrics, raw, cuts, models, baselines, recipe, selection, share)
