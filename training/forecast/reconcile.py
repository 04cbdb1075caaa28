"""Coherent forecasts across the hierarchy (hierarchicalforecast), non-negative where sales are.

Base forecasts of every node are reconciled with each method in ``ForecastConfig.reconcilers``; the backtest
chooses one. For non-negative data, negative reconciled bottom forecasts are set to zero and every aggregate is
re-summed from the bottom, so the result stays coherent and non-negative.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from features.series import HierarchicalSeries

__all__ = ["methods_for", "reconcile", "reconciled_name"]


def reconciled_name(model: str, method: str) -> str:
    """The column name of ``model`` reconciled by ``method`` (e.g. ``LGBM/MinTrace_ols``)."""
    return f"{model}/{method}"


def _method(name: str):
    from hierarchicalforecast.methods import BottomUp, MinTrace

    if name == "BottomUp":
        return BottomUp()
    if name.startswith("MinTrace_"):
        return MinTrace(method=name.removeprefix("MinTrace_"))
    raise ValueError(f"unknown reconciliation method {name!r}")


def _bottom_up(series: HierarchicalSeries, frame: pd.DataFrame, col: str, clip: bool) -> pd.Series:
    """Re-sum ``col`` from the bottom nodes through S (optionally clipping the bottom at zero)."""
    wide = frame.pivot(index="unique_id", columns="ds", values=col)
    bottom = wide.reindex(series.bottom_ids).to_numpy()
    if clip:
        bottom = np.clip(bottom, 0.0, None)
    S = series.S.drop(columns="unique_id").to_numpy(dtype=np.float64)
    full = pd.DataFrame(S @ bottom, index=series.S["unique_id"], columns=wide.columns)
    long = full.stack().rename(col).reset_index()
    long.columns = ["unique_id", "ds", col]
    return frame[["unique_id", "ds"]].merge(long, on=["unique_id", "ds"], how="left")[col]


def methods_for(series: HierarchicalSeries, methods: tuple[str, ...], max_bottom: int) -> tuple[str, ...]:
    """The methods that fit the hierarchy's size: above ``max_bottom`` bottom series only ``BottomUp``."""
    if len(series.bottom_ids) <= max_bottom:
        return methods
    return tuple(m for m in methods if m == "BottomUp") or ("BottomUp",)


def _hf_label(method: str) -> str:
    """hierarchicalforecast's column label of a method (``MinTrace_ols`` -> ``MinTrace_method-ols``)."""
    return method.replace("MinTrace_", "MinTrace_method-")


def reconcile(
    series: HierarchicalSeries, base: pd.DataFrame, models: str | list[str], methods: tuple[str, ...]
) -> pd.DataFrame:
    """Add one column ``{model}/{method}`` per model and method to ``base`` (``unique_id, ds, <models>``)."""
    from hierarchicalforecast.core import HierarchicalReconciliation

    models = [models] if isinstance(models, str) else list(models)
    out = base.copy()
    if len(series.tags) == 1:  # a single series: nothing to reconcile
        for model in models:
            for m in methods:
                out[reconciled_name(model, m)] = out[model]
        return out
    hat = base[["unique_id", "ds", *models]].copy()
    hrec = HierarchicalReconciliation(reconcilers=[_method(m) for m in methods])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec = hrec.reconcile(Y_hat_df=hat, tags=series.tags, S_df=series.S)
    rename = {f"{model}/{_hf_label(m)}": reconciled_name(model, m) for model in models for m in methods}
    missing = [c for c in rename if c not in rec.columns]
    if missing:
        raise RuntimeError(f"hierarchicalforecast returned no column {missing[0]!r}; got {list(rec.columns)}")
    rec = rec[["unique_id", "ds", *rename]].rename(columns=rename)
    out = out.merge(rec, on=["unique_id", "ds"], how="left")
    if series.nonnegative:
        for col in rename.values():
            out[col] = _bottom_up(series, out, col, clip=True).to_numpy()
    return out
