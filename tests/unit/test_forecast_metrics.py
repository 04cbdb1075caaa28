"""The metric and calibration primitives, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.forecast.evaluate import evaluate
from training.forecast.intervals import quantile_offsets, range_scores, series_scale


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cutoff": pd.Timestamp("2024-01-07"),
            "unique_id": ["a", "a", "b", "b"],
            "level": ["bottom"] * 4,
            "ds": pd.to_datetime(["2024-01-14", "2024-01-21"] * 2),
            "y": [10.0, 20.0, 0.0, 10.0],
            "scale": [5.0, 5.0, 2.0, 2.0],
            "m": [12.0, 18.0, 1.0, 10.0],
            "m-lo-80": [9.0, 21.0, 0.0, 5.0],  # second row excludes its actual (20 < 21)
            "m-hi-80": [15.0, 25.0, 2.0, 12.0],
        }
    )


def test_evaluate_hand_computed() -> None:
    out = evaluate(_frame(), ["m"], levels=(80,)).iloc[0]
    assert out["wape"] == pytest.approx((2 + 2 + 1 + 0) / 40)
    assert out["bias"] == pytest.approx((2 - 2 + 1 + 0) / 40)
    assert out["mase"] == pytest.approx(((2 + 2) / 2 / 5 + (1 + 0) / 2 / 2) / 2)
    assert out["cov_80"] == pytest.approx(0.75)
    assert out["width_80"] == pytest.approx(np.mean([6, 4, 2, 7]) / 10)


def test_conformal_quantiles_cover_nominally() -> None:
    rng = np.random.default_rng(0)
    calib, test = rng.standard_t(4, 4000), rng.standard_t(4, 20000)
    for level in (80, 95):
        a = 1 - level / 100
        lo, hi = quantile_offsets(calib, np.array([a / 2, 1 - a / 2]))
        cover = ((test >= lo) & (test <= hi)).mean()
        assert abs(cover - level / 100) < 0.02


def test_range_scores_use_only_complete_ranges() -> None:
    hist = pd.DataFrame(
        {
            "cutoff": [1, 1, 2, 2],
            "unique_id": ["a"] * 4,
            "level": ["x"] * 4,
            "step": [1, 2, 1, 2],
            "scale": [2.0] * 4,
            "y": [3.0, 5.0, 1.0, np.nan],  # cutoff 2's second step is not observed yet
            "m": [2.0, 2.0, 1.0, 1.0],
        }
    )
    scores = range_scores(hist, "m", 1, 2)
    assert scores["score"].tolist() == [pytest.approx((8 - 4) / 2)]


def test_series_scale_is_seasonal_naive_mae() -> None:
    train = pd.DataFrame(
        {"unique_id": "a", "ds": pd.date_range("2024-01-01", periods=6, freq="MS"), "y": [1, 2, 3, 5, 5, 9.0]}
    )
    assert series_scale(train, 2).loc["a"] == pytest.approx(np.mean([2, 3, 2, 4]))
