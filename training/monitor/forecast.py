"""How a served forecast held up once the actuals of its periods arrived: accuracy, coverage and anomalies.

A served forecast (:class:`~training.forecast.artifacts.ForecastArtifacts`) holds, for every node and future
period, the mean and the 80 / 95 % range. Once newer data holds some of those periods, each node-period is
checked (and, over several periods, each node's total over them):

* accuracy and calibration per level: WAPE, bias (``sum(forecast - actual) / sum(actual)``), the share of
  actuals inside the 80 / 95 % ranges;
* anomalies: the node-periods whose actual fell outside the 95 % (and the 80 %) range, ranked by the money
  involved (``|actual - expected|``). About 5 % of node-periods fall outside a calibrated 95 % range by
  chance alone, so an *alert* needs more: each actual's two-sided tail probability under the forecast (spread on
  the actual's side: the 95 % range's half-width / 1.96; tails: the level's, fitted on the backtest by
  :mod:`training.forecast.tails`) is Holm-adjusted over the
  node-periods and node totals of its level, each level getting an equal share of the error rate, and a rule
  fires on the adjusted value (``forecast.anomaly_p``). Where the forecast's errors are as wide as its ranges
  say, the chance of any false alert in one run is then at most the rule's threshold, however many nodes.

A node total over several periods takes the sum of the periods' bounds as its range (errors of one node are
taken as fully correlated over the periods: the widest range the periods allow, so the check stays
conservative).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.errors import SalesmlError
from features.series import HierarchicalSeries
from training.forecast.artifacts import ForecastArtifacts
from training.forecast.tails import tail_probability, unit_errors
from training.monitor.drift import holm

__all__ = ["ForecastCheck", "check_forecast"]

_BOUNDS = ["lo-80", "hi-80", "lo-95", "hi-95"]


@dataclass(frozen=True)
class ForecastCheck:
    """The outcome of :func:`check_forecast`.

    Attributes:
        cutoff: the forecast's data cut-off (the last period it saw).
        periods: the forecast periods whose actuals the new data holds.
        rows: one row per node and period: ``unique_id, level, period, actual, mean, lo-80, hi-80, lo-95,
            hi-95, outside_80, outside_95, money, p_value, p_adjusted``; ``period`` is the period's date or,
            for a node's total over every period checked, ``first..last``.
        levels: per level: ``level, nodes, periods, wape, bias, coverage_80, coverage_95``.
        missing_nodes: forecast nodes that the new data no longer holds (not checked).
    """

    cutoff: pd.Timestamp
    periods: list[pd.Timestamp]
    rows: pd.DataFrame
    levels: pd.DataFrame
    missing_nodes: list[str]

    def anomalies(self, range_level: int = 95) -> pd.DataFrame:
        """Node-periods outside the ``range_level`` % range, most money first."""
        out = self.rows[self.rows[f"outside_{range_level}"]]
        return out.sort_values(["money", "p_adjusted"], ascending=[False, True]).reset_index(drop=True)

    def findings(self) -> pd.DataFrame:
        """Findings for :func:`training.monitor.rules.evaluate_rules` (``product, metric, level, node, period,
        value, n, effect, message``)."""
        rows = self.rows[self.rows["p_adjusted"] < 1.0].rename(columns=lambda c: c.replace("-", "_"))
        found = [
            {
                "product": "sales_forecast",
                "metric": "forecast.anomaly_p",
                "level": r.level,
                "node": r.unique_id,
                "period": r.period,
                "value": float(r.p_adjusted),
                "n": 1,
                "effect": float(r.money),
                "message": _anomaly_message(r),
            }
            for r in rows.itertuples(index=False)
        ]
        for r in self.levels.itertuples(index=False):
            n = int(r.nodes * r.periods)
            for metric, value in (
                ("forecast.wape", r.wape),
                ("forecast.abs_bias", abs(r.bias)),
                ("forecast.coverage_80", r.coverage_80),
                ("forecast.coverage_95", r.coverage_95),
            ):
                found.append(
                    {
                        "product": "sales_forecast",
                        "metric": metric,
                        "level": r.level,
                        "node": None,
                        "period": _span(self.periods),
                        "value": float(value),
                        "n": n,
                        "effect": float("nan"),
                        "message": f"{r.level}: {metric.removeprefix('forecast.')} {value:.3f} over {r.nodes} "
                        f"nodes x {r.periods} periods",
                    }
                )
        return pd.DataFrame(
            found, columns=["product", "metric", "level", "node", "period", "value", "n", "effect", "message"]
        )


def check_forecast(art: ForecastArtifacts, series: HierarchicalSeries) -> ForecastCheck:
    """Compare a served forecast with the actuals that ``series`` (newer data) holds for its periods.

    Raises:
        SalesmlError: the new data holds no period after the forecast's cut-off, or none of its nodes.
    """
    fc = art.forecasts.copy()
    fc["ds"] = pd.to_datetime(fc["ds"])
    new = series.Y[series.Y["ds"] > art.cutoff]
    periods = sorted(set(fc["ds"]) & set(new["ds"]))
    if not periods:
        raise SalesmlError(
            f"the data ends {series.end.date()}: no forecast period after the model's data cut-off "
            f"{art.cutoff.date()} has actuals yet (the forecast runs {fc['ds'].min().date()} .. "
            f"{fc['ds'].max().date()}); give newer data or train the model --as-of an earlier day"
        )
    known = set(series.Y["unique_id"])
    missing = sorted(set(fc["unique_id"]) - known)
    if len(missing) == fc["unique_id"].nunique():
        raise SalesmlError(
            f"none of the forecast's {len(missing)} nodes is in the new data (node ids look like "
            f"{missing[:3]}); is it the same data set and spec?"
        )
    fc = fc[fc["ds"].isin(periods) & ~fc["unique_id"].isin(missing)]
    merged = fc.merge(new[["unique_id", "ds", "y"]], on=["unique_id", "ds"], how="left")
    merged = merged.rename(columns={"y": "actual"})
    merged["actual"] = merged["actual"].fillna(0.0)
    per_period = merged.assign(period=merged["ds"].dt.strftime("%Y-%m-%d"))
    frames = [per_period]
    if len(periods) > 1:
        sums = merged.groupby(["unique_id", "level"], sort=False)[["actual", "mean", *_BOUNDS]].sum()
        frames.append(sums.reset_index().assign(period=_span(periods)))
    rows = pd.concat(frames, ignore_index=True)[["unique_id", "level", "period", "actual", "mean", *_BOUNDS]]
    rows["outside_80"] = (rows["actual"] < rows["lo-80"]) | (rows["actual"] > rows["hi-80"])
    rows["outside_95"] = (rows["actual"] < rows["lo-95"]) | (rows["actual"] > rows["hi-95"])
    rows["money"] = (rows["actual"] - rows["mean"]).abs()
    rows["p_value"] = _tail_p(rows, art.meta.get("tail_df") or {})
    rows["p_adjusted"] = _adjust_by_level(rows)
    return ForecastCheck(
        cutoff=art.cutoff,
        periods=[pd.Timestamp(p) for p in periods],
        rows=rows,
        levels=_levels(per_period, art),
        missing_nodes=missing,
    )


def _adjust_by_level(rows: pd.DataFrame) -> np.ndarray:
    """Holm within each level, at an equal share of the error rate per level (a weighted Bonferroni over the
    levels): a level of 3 regions is not drowned by a bottom level of thousands of cells."""
    n_levels = rows["level"].nunique()
    out = np.ones(len(rows))
    for _, idx in rows.groupby("level", sort=False).indices.items():
        out[idx] = np.minimum(1.0, holm(rows["p_value"].to_numpy()[idx]) * n_levels)
    return out


def _tail_p(rows: pd.DataFrame, tail_df: dict[str, float]) -> np.ndarray:
    """Two-sided tail probability of each actual under the forecast: the range's spread on the actual's side,
    the level's tails as fitted on the backtest (:mod:`training.forecast.tails`; normal when unknown)."""
    actual, mean = rows["actual"].to_numpy(dtype=float), rows["mean"].to_numpy(dtype=float)
    z = unit_errors(actual, mean, rows["lo-95"].to_numpy(dtype=float), rows["hi-95"].to_numpy(dtype=float))
    p = np.ones(len(rows))
    levels = rows["level"].to_numpy()
    for level in np.unique(levels):
        at = (levels == level) & np.isfinite(z)
        p[at] = tail_probability(z[at], tail_df.get(str(level)))
    # a range of zero width on the actual's side: only an exact hit is not an anomaly
    flat = ~np.isfinite(z)
    gap = np.abs(actual - mean)
    p[flat] = np.where(gap[flat] <= 1e-9 * np.maximum(np.abs(mean[flat]), 1.0), 1.0, 0.0)
    return np.clip(p, 0.0, 1.0)


def _levels(per_period: pd.DataFrame, art: ForecastArtifacts) -> pd.DataFrame:
    order = list(dict.fromkeys(art.nodes["level"]))
    out = []
    for level, g in per_period.groupby("level", sort=False):
        actual = float(g["actual"].sum())
        err = g["mean"] - g["actual"]
        denom = abs(actual) if actual else float("nan")
        out.append(
            {
                "level": level,
                "nodes": int(g["unique_id"].nunique()),
                "periods": int(g["ds"].nunique()),
                "wape": float(err.abs().sum()) / denom,
                "bias": float(err.sum()) / denom,
                "coverage_80": float(((g["actual"] >= g["lo-80"]) & (g["actual"] <= g["hi-80"])).mean()),
                "coverage_95": float(((g["actual"] >= g["lo-95"]) & (g["actual"] <= g["hi-95"])).mean()),
            }
        )
    frame = pd.DataFrame(out)
    frame["_order"] = frame["level"].map({lv: i for i, lv in enumerate(order)})
    return frame.sort_values("_order").drop(columns="_order").reset_index(drop=True)


def _span(periods: list[pd.Timestamp]) -> str:
    first, last = min(periods), max(periods)
    return f"{first:%Y-%m-%d}" if first == last else f"{first:%Y-%m-%d}..{last:%Y-%m-%d}"


def _anomaly_message(r: Any) -> str:
    where = "inside"
    if r.actual < r.lo_95:
        where = "below"
    elif r.actual > r.hi_95:
        where = "above"
    return (
        f"{r.unique_id} {r.period}: actual {r.actual:,.0f}, expected {r.mean:,.0f}, {where} the 95 % range "
        f"{r.lo_95:,.0f} .. {r.hi_95:,.0f}"
    )
