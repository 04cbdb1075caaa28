"""How heavy the tails of the served forecast's errors are, per level: what ``salesml monitor`` needs to say how
unlikely an actual outside the range is.

A 95 % range says where 95 % of actuals fall, not how far the other 5 % go: a bottom series with an occasional
large order misses by many range widths now and then, a region's sum of many series almost never does. Per
level, the backtest's errors in units of the range (``z = (y - forecast) / (half-width / 1.96)``, the half-width
on the error's side) beyond the range (``|z| > 1.96``) are fitted by a Student-t whose 97.5 % quantile is held at
1.96 (so the range keeps its meaning): its degrees of freedom are chosen on a grid by the likelihood of those
exceedances alone (``inf``: normal tails), so the fit answers how far misses go, not how the centre looks. A
level with fewer than ``min_exceedances`` misses in the backtest (an aggregate of few nodes) keeps normal tails:
the sum of many series is the case where they hold best.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm, t

__all__ = ["DF_GRID", "fit_tail_df", "tail_probability", "unit_errors"]

DF_GRID = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0, 10.0, 15.0, 30.0, 100.0, float("inf"))
_Z95 = float(norm.ppf(0.975))


def unit_errors(actual: np.ndarray, mean: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Errors in units of the range's spread (``half-width / 1.96``) on their side; where that side has no width
    (a range clipped at zero for sales that are never negative, and a return came in) the other side's; NaN
    where the range has no width at all."""
    above = actual >= mean
    own = np.where(above, hi - mean, mean - lo).astype(float)
    other = np.where(above, mean - lo, hi - mean).astype(float)
    half = np.where(own > 0, own, other)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (actual - mean) / (half / _Z95)
    return np.where(half > 0, z, np.nan)


def fit_tail_df(
    forecasts: pd.DataFrame, model: str = "chosen", *, min_exceedances: int = 10
) -> dict[str, float]:
    """Degrees of freedom per level from a backtest's ``forecasts`` (``level, y, {model}, {model}-lo/hi-95``)."""
    lo, hi = f"{model}-lo-95", f"{model}-hi-95"
    out: dict[str, float] = {}
    for level, g in forecasts.groupby("level", sort=False):
        z = unit_errors(
            g["y"].to_numpy(float), g[model].to_numpy(float), g[lo].to_numpy(float), g[hi].to_numpy(float)
        )
        z = np.abs(z[np.isfinite(z)])
        z = z[z > _Z95]
        if len(z) < min_exceedances:
            out[str(level)] = float("inf")
            continue
        out[str(level)] = max(DF_GRID, key=lambda df: _loglik(z, df))
    return out


def _loglik(z: np.ndarray, df: float) -> float:
    if np.isinf(df):
        return float(norm.logpdf(z).sum())
    s = _Z95 / float(t.ppf(0.975, df))
    return float((t.logpdf(z / s, df) - np.log(s)).sum())


def tail_probability(z: np.ndarray, df: float | None) -> np.ndarray:
    """Two-sided tail probability of errors ``z`` (range units) under the level's fitted tails."""
    z = np.abs(np.asarray(z, dtype=float))
    if df is None or np.isinf(df):
        return 2.0 * norm.sf(z)
    s = _Z95 / float(t.ppf(0.975, df))
    return 2.0 * t.sf(z / s, df)
