"""The reconciliation projections against hierarchicalforecast itself (the slow, obviously-correct reference)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.load import load_dataset
from features.series import build_series
from training.forecast.reconcile import reconcile, reconciled_name

METHODS = ("BottomUp", "MinTrace_ols", "MinTrace_wls_struct")


def _reference(series, base: pd.DataFrame, model: str, method: str) -> pd.Series:
    from hierarchicalforecast.core import HierarchicalReconciliation
    from hierarchicalforecast.methods import BottomUp, MinTrace

    rec = BottomUp() if method == "BottomUp" else MinTrace(method=method.removeprefix("MinTrace_"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = HierarchicalReconciliation(reconcilers=[rec]).reconcile(
            Y_hat_df=base[["unique_id", "ds", model]], tags=series.tags, S_df=series.S
        )
    col = f"{model}/{method.replace('MinTrace_', 'MinTrace_method-')}"
    return base[["unique_id", "ds"]].merge(out, on=["unique_id", "ds"], how="left")[col]


@pytest.mark.parametrize("method", METHODS)
def test_projection_matches_hierarchicalforecast(small_synthetic_spec: Path, method: str) -> None:
    series = build_series(load_dataset(small_synthetic_spec))
    series.nonnegative = False  # the clip at zero is ours, not hierarchicalforecast's
    rng = np.random.default_rng(0)
    ds = pd.date_range(series.end, periods=4, freq=series.freq)[1:]
    ids = series.S["unique_id"]
    base = pd.DataFrame({"unique_id": np.repeat(ids, len(ds)), "ds": np.tile(ds, len(ids))})
    base["a"] = rng.gamma(2.0, 50.0, len(base))
    base["b"] = rng.normal(0.0, 10.0, len(base))  # signs both ways: no clip hides a difference
    ours = reconcile(series, base, ["a", "b"], (method,))
    for model in ("a", "b"):
        expected = _reference(series, base, model, method).to_numpy()
        np.testing.assert_allclose(ours[reconciled_name(model, method)], expected, rtol=1e-7, atol=1e-6)
