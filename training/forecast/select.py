"""Choosing the served forecast on the calibration cutoffs only, from LightGBM, the baselines and blends.

Every choice is made on the calibration cutoffs (before the first evaluation cutoff, with actuals up to it):

1. the LightGBM objective (``l1`` or, for non-negative data, ``tweedie``): the one whose bottom-up sum scores
   best;
2. the ``LGBM+SN`` weight (:func:`training.forecast.backtest.choose_weight`);
3. the :data:`ENSEMBLE` members: LightGBM and the two baselines with the lowest bottom-level WAPE;
4. the :data:`PER_LEVEL` base: at each level, the base model with the lowest WAPE there;
5. the served forecast: every base model reconciled by every method competes, scored by the mean over
   hierarchy levels of its WAPE over the best baseline's WAPE at that level (the baselines unreconciled),
   so each level counts the same whatever its scale. A reconciled baseline is a candidate too: what is
   served is never worse than it on these windows.
6. with ``pool_size`` > 1 (not the default), the mean of that many best candidates is served (each is
   coherent, so their mean is) when it scores better on these windows than the best reconciled baseline;
   otherwise the best candidate alone is (benchmarks/README.md: how the pool measured).

The result is a :class:`Recipe`, which makes the same forecast at any later cutoff from that cutoff's base
forecasts. Without calibration cutoffs (a history too short for them) the evaluation windows choose, and
the recipe says so (``chosen_on="evaluation"``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from features.series import HierarchicalSeries
from training.forecast.config import COMBINED, ENSEMBLE, LGBM, PER_LEVEL, SEASONAL_NAIVE, ForecastConfig
from training.forecast.models import combine

__all__ = [
    "Recipe",
    "derive",
    "level_wape",
    "choice_rows",
    "ratio_score",
]


@dataclass
class Recipe:
    """How the served forecast (``chosen``) is made from one cutoff's base forecasts.

    Attributes:
        base: the base model of the chosen candidate (``LGBM``, ``LGBM+SN``, ``Ensemble``, ``PerLevel`` or a
            baseline).
        method: its reconciliation method.
        objective: the LightGBM objective.
        weight: the LightGBM share of ``LGBM+SN``.
        members: the models averaged by ``Ensemble``.
        per_level: level -> base model, for ``PerLevel``.
        pool: the reconciled candidates (``base/method``) whose mean is served; empty when the best candidate
            (``base/method``) is served alone.
        chosen_on: ``calibration`` (the cutoffs before the first evaluation cutoff) or ``evaluation``.
        choice_cutoffs: the cutoffs whose windows made the choice.
    """

    base: str
    method: str
    objective: str = "l1"
    weight: float = 0.5
    members: list[str] = field(default_factory=list)
    per_level: dict[str, str] = field(default_factory=dict)
    pool: list[str] = field(default_factory=list)
    chosen_on: str = "calibration"
    choice_cutoffs: list[str] = field(default_factory=list)

    @property
    def components(self) -> list[str]:
        """The reconciled candidates (``base/method``) whose mean is served: one when nothing is pooled."""
        return list(self.pool) or [f"{self.base}/{self.method}"]

    @property
    def name(self) -> str:
        """``base/method``, or ``Pool(a/m, b/m, ...)`` for the mean of several."""
        parts = self.components
        return parts[0] if len(parts) == 1 else f"Pool({', '.join(parts)})"

    def _base_at(self, base: str, level: str) -> str:
        base = self.per_level.get(level, LGBM) if base == PER_LEVEL else base
        if base == ENSEMBLE:
            return f"{ENSEMBLE}({', '.join(self.members)})"
        return base

    def level_model(self, level: str) -> str:
        """What the served forecast is made of at ``level``: the base model there and its reconciliation
        (``Ensemble(LGBM, SeasonalNaive, Theta)/MinTrace_ols``), or ``mean(...)`` of the pooled ones."""
        # what each component is at this level, and how often (PerLevel may be Ensemble at a level)
        parts: dict[str, int] = {}
        for component in self.components:
            base, method = component.split("/", 1)
            part = f"{self._base_at(base, level)}/{method}"
            parts[part] = parts.get(part, 0) + 1
        if len(self.components) == 1:
            return next(iter(parts))
        return "mean(" + ", ".join(p if n == 1 else f"{n} x {p}" for p, n in parts.items()) + ")"

    def baselines_needed(self, baselines: list[str], config: ForecastConfig) -> list[str]:
        """The baselines a refit must compute to make this forecast (and the blends :func:`derive` adds)."""
        bases = {c.split("/", 1)[0] for c in self.components}
        need = {*bases, *self.members, *self.per_level.values()}
        if config.combine:
            need.add(SEASONAL_NAIVE)
        return [b for b in baselines if b in need]

    def to_dict(self) -> dict:
        return asdict(self)


def derive(
    series: HierarchicalSeries,
    base: pd.DataFrame,
    config: ForecastConfig,
    *,
    weight: float | None = None,
    members: list[str] | None = None,
    per_level: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Add the blends that are known so far (``LGBM+SN``, ``Ensemble``, ``PerLevel``) and clip at zero.

    ``base`` holds ``unique_id, ds`` and the base models of one cutoff; a blend whose parameter is ``None`` is
    left out. Non-negative data gets non-negative base forecasts.
    """
    out = base.copy()
    if config.combine and weight is not None and LGBM in out:
        out[COMBINED] = combine(out, weight)
    if config.ensemble and members:
        out[ENSEMBLE] = out[members].mean(axis=1)
    if config.ensemble and per_level:
        level = out["unique_id"].map(series.level_of())
        values = np.full(len(out), np.nan)
        for lvl, model in per_level.items():
            mask = (level == lvl).to_numpy()
            values[mask] = out.loc[mask, model].to_numpy()
        out[PER_LEVEL] = values
    if series.nonnegative:
        models = [c for c in out.columns if c not in ("unique_id", "ds")]
        out[models] = out[models].clip(lower=0.0)
    return out


def choice_rows(
    series: HierarchicalSeries,
    frames: list[tuple[pd.DataFrame, pd.Timestamp]],
    window: int,
    until: pd.Timestamp | None,
) -> pd.DataFrame:
    """The rows that choose: the first ``window`` periods after each cutoff, no actual after ``until``.

    Returns ``cutoff, unique_id, ds, level, y`` + the frames' model columns.
    """
    parts = []
    for frame, cutoff in frames:
        last = pd.date_range(cutoff, periods=window + 1, freq=series.freq)[-1]
        if until is not None:
            last = min(last, until)
        part = frame[(frame["ds"] > cutoff) & (frame["ds"] <= last)].drop(columns="y", errors="ignore")
        part = part.merge(series.Y, on=["unique_id", "ds"], how="inner")
        part.insert(0, "cutoff", cutoff)
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    out["level"] = out["unique_id"].map(series.level_of())
    return out


def level_wape(rows: pd.DataFrame, models: list[str], levels: list[str]) -> pd.DataFrame:
    """WAPE per level (index, coarse to fine) and model (columns) of ``rows`` (see :func:`choice_rows`)."""
    out = {}
    for lvl, part in rows.groupby("level", sort=False):
        denom = max(float(part["y"].abs().sum()), 1e-9)
        y = part["y"].to_numpy()
        out[lvl] = {m: float(np.abs(part[m].to_numpy() - y).sum()) / denom for m in models}
    return pd.DataFrame(out).T.reindex(levels)


def ratio_score(wape: pd.DataFrame, candidates: list[str], baselines: list[str]) -> pd.Series:
    """Mean over levels of each candidate's WAPE over the best baseline's WAPE at that level (lower wins)."""
    best = wape[baselines].min(axis=1).clip(lower=1e-12)
    return wape[candidates].div(best, axis=0).mean(axis=0)
