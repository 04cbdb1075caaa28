"""The monitor's forecast checks: tails fitted per level on the backtest, anomalies ranked by money with their
multiplicity held, and returns below a range clipped at zero measured by its other side."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import SalesmlError
from training.forecast.artifacts import ForecastArtifacts
from training.forecast.tails import fit_tail_df, tail_probability


def test_tails_are_fitted_per_level_and_make_far_misses_less_surprising() -> None:
    rng = np.random.default_rng(3)
    n = 4_000
    frames = []
    for level, errors in (("region", rng.normal(0, 1, n)), ("bottom", rng.standard_t(2, n))):
        half = 1.96 * (1.0 if level == "region" else float(np.quantile(np.abs(errors), 0.95)) / 1.96)
        frames.append(
            pd.DataFrame(
                {
                    "level": level,
                    "y": 100 + errors,
                    "chosen": 100.0,
                    "chosen-lo-95": 100 - half,
                    "chosen-hi-95": 100 + half,
                }
            )
        )
    df = fit_tail_df(pd.concat(frames))
    assert df["region"] >= 15 and df["bottom"] <= 3
    far = np.array([6.0])
    assert tail_probability(far, df["bottom"])[0] > 1000 * tail_probability(far, df["region"])[0]


def _artifacts(tail_df: dict[str, float] | None = None) -> ForecastArtifacts:
    nodes = pd.DataFrame(
        {
            "unique_id": ["total", "r=A", "r=B"],
            "level": ["total", "r", "r"],
            "hierarchy": [-1, 0, 0],
            "depth": [0, 1, 1],
            "parent": [None, "total", "total"],
            "is_bottom": [False, True, True],
        }
    )
    ds = pd.to_datetime(["2025-01-05", "2025-01-12"])
    rows = []
    for uid, mean in (("total", 200.0), ("r=A", 100.0), ("r=B", 100.0)):
        sd = 10.0 if uid != "total" else 14.0
        for d in ds:
            rows.append(
                {
                    "unique_id": uid,
                    "level": nodes.set_index("unique_id").loc[uid, "level"],
                    "ds": d,
                    "mean": mean,
                    "lo-80": mean - 1.2816 * sd,
                    "hi-80": mean + 1.2816 * sd,
                    "lo-95": mean - 1.96 * sd,
                    "hi-95": mean + 1.96 * sd,
                }
            )
    meta = {"cutoff": "2024-12-29", "tail_df": tail_df or {}}
    return ForecastArtifacts(forecasts=pd.DataFrame(rows), quarters=pd.DataFrame(), nodes=nodes, meta=meta)


def _series(a: list[float], b: list[float]):
    from features.series import HierarchicalSeries

    ds = pd.to_datetime(["2024-12-29", "2025-01-05", "2025-01-12"])
    a, b = [100.0, *a], [100.0, *b]
    y = pd.DataFrame(
        {
            "unique_id": ["total"] * 3 + ["r=A"] * 3 + ["r=B"] * 3,
            "ds": list(ds) * 3,
            "y": [x + z for x, z in zip(a, b, strict=True)] + a + b,
        }
    )
    art = _artifacts()
    return HierarchicalSeries(
        Y=y, nodes=art.nodes, S=pd.DataFrame(), tags={}, bottom_level="r", freq="W-SUN", season_length=52
    )


def test_forecast_check_measures_levels_and_ranks_a_miss_by_money() -> None:
    from training.monitor.forecast import check_forecast

    check = check_forecast(_artifacts(), _series([50.0, 52.0], [104.0, 97.0]))
    levels = check.levels.set_index("level")
    assert levels.loc["r", "wape"] == pytest.approx((50 + 48 + 4 + 3) / (50 + 52 + 104 + 97))
    assert levels.loc["r", "coverage_95"] == 0.5
    top = check.anomalies(95).iloc[0]
    assert (top["unique_id"], top["period"]) == ("r=A", "2025-01-05..2025-01-12")  # the node's total, 98 off
    # 5 sd below on one of 2 nodes x 3 checks per node: adjusted = raw * 2 levels * Holm step, far below 0.01
    assert check.rows.set_index(["unique_id", "period"]).loc[("r=A", "2025-01-05"), "p_adjusted"] < 1e-4
    quiet = check.rows[check.rows["unique_id"] == "r=B"]
    assert (quiet["p_adjusted"] == 1.0).all()
    found = check.findings()
    assert set(found["metric"]) == {
        "forecast.anomaly_p",
        "forecast.wape",
        "forecast.abs_bias",
        "forecast.coverage_80",
        "forecast.coverage_95",
    }


def test_heavy_tails_fitted_on_the_backtest_keep_a_lumpy_level_from_alerting() -> None:
    from training.monitor.forecast import check_forecast

    # r=A 45 below (4.5 sd): under normal tails a clear alert, under the t(1.5) a level of one-off orders has
    series = _series([55.0, 100.0], [100.0, 100.0])
    normal = check_forecast(_artifacts(), series).rows
    lumpy = check_forecast(_artifacts({"r": 1.5}), series).rows
    at = (normal["unique_id"] == "r=A") & (normal["period"] == "2025-01-05")
    assert normal.loc[at, "p_adjusted"].iloc[0] < 0.01 < lumpy.loc[at, "p_adjusted"].iloc[0]


def test_no_period_with_actuals_yet_is_a_clear_error() -> None:
    from training.monitor.forecast import check_forecast

    series = _series([100.0, 100.0], [100.0, 100.0])
    series.Y = series.Y[series.Y["ds"] <= "2024-12-29"]
    with pytest.raises(SalesmlError, match="no forecast period after the model's data cut-off 2024-12-29"):
        check_forecast(_artifacts(), series)


def test_a_return_below_a_range_clipped_at_zero_is_measured_by_the_other_side() -> None:
    from training.forecast.tails import unit_errors

    # walmart: a department forecast at 0 with a 95 % range 0 .. 845 (clipped at zero), then a return of -45
    z = unit_errors(
        np.array([-45.0, 10.0]), np.array([0.0, 0.0]), np.array([0.0, 0.0]), np.array([845.0, 0.0])
    )
    assert z[0] == pytest.approx(-45 / (845 / 1.959963984540054))
    assert np.isnan(z[1])  # no width on either side: nothing to measure by
