"""BG/NBD ("buy till you die", Fader, Hardie & Lee 2005): probability alive and of no purchase in the next H days.

Used by churn as a baseline and as features. Fitted separately at every cutoff on that cutoff's rows, from
feature columns that only see events at or before it (``purchases_total``, ``tenure_days``, ``recency_days``),
so it is point in time like every other feature. Time is measured in weeks inside the fit.

The ``lifetimes`` package implements the same model and installs cleanly here, but it is unmaintained since 2020;
these few lines are checked against its fitted parameters on cdnow in ``tests/unit/test_churn_features_bgnbd.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import gammaln

__all__ = ["BGNBD", "bgnbd_columns", "fit_bgnbd"]

_UNIT = 7.0  # days per time unit inside the model


@dataclass(frozen=True)
class BGNBD:
    """Fitted BG/NBD parameters (time unit: weeks): purchase rate ~ Gamma(r, alpha), dropout p ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float

    def p_alive(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """P(still alive at T) for ``x`` repeat purchases, the last at ``t_x``, observed for ``T`` (weeks)."""
        x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
        with np.errstate(over="ignore", divide="ignore"):
            log_odds = (
                np.log(self.a)
                - np.log(np.maximum(self.b + x - 1, 1e-12))
                + (self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + t_x))
            )
            return np.where(x > 0, 1.0 / (1.0 + np.exp(log_odds)), 1.0)

    def p_no_purchase(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, horizon: float) -> np.ndarray:
        """P(no purchase in (T, T + horizon]): dead, or alive with a gamma-Poisson rate that stays silent."""
        alive = self.p_alive(x, t_x, T)
        T = np.asarray(T, dtype=float)
        silent = np.exp(
            (self.r + np.asarray(x, dtype=float))
            * (np.log(self.alpha + T) - np.log(self.alpha + T + horizon))
        )
        return (1.0 - alive) + alive * silent


def _neg_ll(
    log_params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, weight: np.ndarray
) -> float:
    r, alpha, a, b = np.exp(log_params)
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore"):
        a4 = np.where(
            x > 0, np.log(a) - np.log(np.maximum(b + x - 1, 1e-12)) - (r + x) * np.log(alpha + t_x), -np.inf
        )
    return -float(np.sum(weight * (a1 + a2 + np.logaddexp(a3, a4))))


def fit_bgnbd(x: np.ndarray, t_x: np.ndarray, T: np.ndarray, start: BGNBD | None = None) -> BGNBD:
    """Maximum likelihood on repeat purchases ``x``, last-purchase time ``t_x`` and age ``T`` (weeks).

    Customers with the same ``(x, t_x, T)`` are fitted once with a weight (the likelihood is a sum over them).
    """
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    uniq, weight = np.unique(np.column_stack([x, t_x, T]), axis=0, return_counts=True)
    ux, ut, uT = uniq.T
    x0 = np.zeros(4) if start is None else np.log([start.r, start.alpha, start.a, start.b])
    res = minimize(
        lambda p: _neg_ll(p, ux, ut, uT, weight), x0, method="L-BFGS-B", bounds=[(-10.0, 10.0)] * 4
    )
    r, alpha, a, b = np.exp(res.x)
    return BGNBD(float(r), float(alpha), float(a), float(b))


def bgnbd_columns(frame: pd.DataFrame, *, horizon_days: int, cutoff_col: str = "cutoff") -> pd.DataFrame:
    """``bgnbd_p_alive`` and ``bgnbd_p_no_purchase`` (within ``horizon_days``) per row, fitted per cutoff.

    Needs ``purchases_total``, ``tenure_days`` and ``recency_days`` (features at the cutoff).
    """
    out = pd.DataFrame(index=frame.index, columns=["bgnbd_p_alive", "bgnbd_p_no_purchase"], dtype=float)
    model = None
    for _, rows in frame.groupby(cutoff_col, sort=True):
        x = rows["purchases_total"].to_numpy(float) - 1.0
        T = rows["tenure_days"].to_numpy(float) / _UNIT
        t_x = T - rows["recency_days"].to_numpy(float) / _UNIT
        model = fit_bgnbd(x, t_x, T, start=model)
        out.loc[rows.index, "bgnbd_p_alive"] = model.p_alive(x, t_x, T)
        out.loc[rows.index, "bgnbd_p_no_purchase"] = model.p_no_purchase(x, t_x, T, horizon_days / _UNIT)
    return out
