"""Coherent forecasts across the hierarchy, non-negative where sales are.

Base forecasts of every node are reconciled with each method in ``ForecastConfig.reconcilers``; the backtest
chooses one. For non-negative data, negative reconciled bottom forecasts are set to zero and every aggregate is
re-summed from the bottom, so the result stays coherent and non-negative.

The methods are the linear projections of hierarchicalforecast (``BottomUp``, ``MinTrace(ols)``,
``MinTrace(wls_struct)``): ``y~ = S G y^`` with ``G`` depending only on the summing matrix ``S``. ``G`` is
computed once per hierarchy and applied to every model, date and cutoff in one product; hierarchicalforecast
recomputed it per call (28 s per walmart cutoff for 8 models and 3 methods, about 1 s here).
``tests/unit/test_forecast_reconcile.py`` checks the result against hierarchicalforecast itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.series import HierarchicalSeries

__all__ = ["methods_for", "reconcile", "reconciled_name"]


def reconciled_name(model: str, method: str) -> str:
    """The column name of ``model`` reconciled by ``method`` (e.g. ``LGBM/MinTrace_ols``)."""
    return f"{model}/{method}"


def _projection(series: HierarchicalSeries, method: str) -> np.ndarray:
    """``G`` (bottom x nodes) of ``method``, cached on the series (it depends on ``S`` only)."""
    cache = series.__dict__.setdefault("_projections", {})
    if method in cache:
        return cache[method]
    S = series.S.drop(columns="unique_id").to_numpy(dtype=np.float64)
    if method == "BottomUp":
        G = np.zeros((S.shape[1], S.shape[0]))
        rows = {uid: i for i, uid in enumerate(series.S["unique_id"])}
        for j, uid in enumerate(series.bottom_ids):
            G[j, rows[uid]] = 1.0
    elif method in ("MinTrace_ols", "MinTrace_wls_struct"):
        w = np.ones(S.shape[0]) if method == "MinTrace_ols" else S.sum(axis=1)
        StW = S.T / w  # S' W^-1 with W = diag(w)
        G = np.linalg.solve(StW @ S, StW)
    else:
        raise ValueError(f"unknown reconciliation method {method!r}")
    cache[method] = G
    return G


def methods_for(series: HierarchicalSeries, methods: tuple[str, ...], max_bottom: int) -> tuple[str, ...]:
    """The methods that fit the hierarchy's size: above ``max_bottom`` bottom series only ``BottomUp``
    (MinTrace solves a bottom x bottom system and holds bottom x nodes numbers per method)."""
    if len(series.bottom_ids) <= max_bottom:
        return methods
    return tuple(m for m in methods if m == "BottomUp") or ("BottomUp",)


def reconcile(
    series: HierarchicalSeries, base: pd.DataFrame, models: str | list[str], methods: tuple[str, ...]
) -> pd.DataFrame:
    """Add one column ``{model}/{method}`` per model and method to ``base`` (``unique_id, ds, <models>``)."""
    models = [models] if isinstance(models, str) else list(models)
    out = base.copy()
    if len(series.tags) == 1:  # a single series: nothing to reconcile
        for model in models:
            for m in methods:
                out[reconciled_name(model, m)] = out[model]
        return out
    order = series.S["unique_id"].to_numpy()
    dates = np.sort(base["ds"].unique())
    index = pd.MultiIndex.from_product([order, dates], names=["unique_id", "ds"])
    values = base.set_index(["unique_id", "ds"])[models].reindex(index).to_numpy(dtype=np.float64)
    if np.isnan(values).any():
        raise ValueError("base forecasts are missing for some node and date; every node needs every date")
    Y = values.reshape(len(order), len(dates) * len(models))
    S = series.S.drop(columns="unique_id").to_numpy(dtype=np.float64)
    rec = pd.DataFrame(index=index)
    for m in methods:
        bottom = _projection(series, m) @ Y
        if series.nonnegative:
            bottom = np.clip(bottom, 0.0, None)
        full = (S @ bottom).reshape(len(order) * len(dates), len(models))
        for k, model in enumerate(models):
            rec[reconciled_name(model, m)] = full[:, k]
    return out.merge(rec.reset_index(), on=["unique_id", "ds"], how="left")
