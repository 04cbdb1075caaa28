"""The monitor's statistics: drift flagged where it is and nowhere else at any sample size, calibration checked
against a hand computation, forecast anomalies with their multiplicity held."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from features.errors import SalesmlError
from training.forecast.artifacts import ForecastArtifacts
from training.forecast.tails import fit_tail_df, tail_probability
from training.monitor.calibration import (
    band_table,
    calibration_table,
    expected_calibration_error,
    roc_auc_or_none,
    wilson_interval,
)
from training.monitor.drift import OTHER, FeatureProfile, bin_counts, drift_table, holm, profile_frame, psi


def _customers(n: int, rng: np.random.Generator, shift: float = 0.0) -> pd.DataFrame:
    """A churn-like frame: recency (sd 30) can be shifted by ``shift`` sd; the rest never moves."""
    return pd.DataFrame(
        {
            "recency_days": rng.normal(60, 30, n) + shift * 30,
            "revenue_12m": rng.lognormal(7, 1, n),
            "orders_90d": rng.poisson(3, n).astype(float),
            "tenure_days": rng.uniform(30, 2000, n),
            "discount_pct": rng.normal(0.1, 0.03, n),
            "tickets": rng.poisson(0.5, n).astype(float),
            "segment": rng.choice(["smb", "mid", "enterprise"], n, p=[0.6, 0.3, 0.1]),
        }
    )


@pytest.fixture(scope="module")
def reference() -> dict[str, FeatureProfile]:
    return profile_frame(_customers(5_000, np.random.default_rng(0)))


def test_a_half_sd_shift_in_one_feature_is_flagged_and_named_first(reference) -> None:
    table = drift_table(reference, _customers(2_000, np.random.default_rng(1), shift=0.5))
    assert table.loc[0, "feature"] == "recency_days" and table.loc[0, "flagged"]
    assert table["flagged"].sum() == 1, table[["feature", "psi", "p_adjusted"]]


@pytest.mark.parametrize("n", [200, 200_000])
def test_the_same_features_unchanged_are_not_flagged_at_200_or_200000_rows(reference, n: int) -> None:
    table = drift_table(reference, _customers(n, np.random.default_rng(2)))
    assert not table["flagged"].any(), table[["feature", "psi", "p_adjusted"]]


def test_false_alarms_stay_rare_over_seeds_where_a_fixed_psi_threshold_is_not(reference) -> None:
    flagged = psi_only = 0
    for seed in range(20):
        table = drift_table(reference, _customers(50, np.random.default_rng(100 + seed)))
        flagged += bool(table["flagged"].any())
        psi_only += bool((table["psi"] >= 0.1).any())
    assert flagged <= 1
    assert psi_only >= 5  # why the rule has a test: PSI alone "drifts" on small unchanged samples


def test_profiles_count_training_values_exactly_and_keep_unseen_and_missing_values() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 2.0, 3.0, np.nan, 10.0], "c": ["a", "b", "a", None, "a", "b"]})
    prof = profile_frame(frame, bins=3)
    for col in frame:
        assert tuple(bin_counts(prof[col], frame[col])) == prof[col].counts
        assert FeatureProfile.from_dict(prof[col].to_dict()) == prof[col]
    assert prof["x"].counts[-1] == 1 and prof["c"].counts[-1] == 1  # the missing bins
    counts = bin_counts(prof["c"], pd.Series(["z", "a", None]))
    assert counts[prof["c"].categories.index(OTHER)] == 1 and counts[-1] == 1
    with pytest.raises(SalesmlError, match=r"lack 1 feature\(s\).*'x'"):
        drift_table(prof, frame[["c"]])


def test_psi_and_holm_by_hand() -> None:
    # PSI of (50, 50) against (25, 75): (0.25-0.5) ln(0.5) + (0.75-0.5) ln(1.5)
    assert psi(np.array([50, 50]), np.array([25, 75])) == pytest.approx(
        0.25 * math.log(2) + 0.25 * math.log(1.5)
    )
    # Holm: sorted 0.01, 0.02, 0.04 times 3, 2, 1 = 0.03, 0.04, 0.04 (monotone), in the input order
    np.testing.assert_allclose(holm([0.04, 0.01, 0.02]), [0.04, 0.03, 0.04])


PROBS = [0.05, 0.08, 0.12, 0.15, 0.18, 0.55, 0.58, 0.61, 0.92, 0.95, 1.0, 0.35]
OUTCOMES = [0, 0, 0, 1, 0, 1, 0, 1, 1, 1, 1, 0]


def test_calibration_per_bin_matches_a_hand_computation() -> None:
    table = calibration_table(PROBS, OUTCOMES)
    # by hand: bins [0, .1) 2 rows 0 events, [.1, .2) 3 rows 1 event, [.3, .4) 1 row 0, [.5, .6) 2 rows 1,
    # [.6, .7) 1 row 1, [.9, 1.0] 3 rows 3 events (1.0 falls in the last bin)
    assert table["bin_low"].round(1).tolist() == [0.0, 0.1, 0.3, 0.5, 0.6, 0.9]
    assert table["n"].tolist() == [2, 3, 1, 2, 1, 3]
    assert table["events"].tolist() == [0, 1, 0, 1, 1, 3]
    np.testing.assert_allclose(
        table["mean_predicted"], [0.065, (0.12 + 0.15 + 0.18) / 3, 0.35, 0.565, 0.61, (0.92 + 0.95 + 1.0) / 3]
    )
    np.testing.assert_allclose(table["observed_rate"], [0.0, 1 / 3, 0.0, 0.5, 1.0, 1.0])
    # ECE = (2*.065 + 3*|1/3 - .15| + 1*.35 + 2*|.5 - .565| + 1*|1 - .61| + 3*|1 - .9567|) / 12
    by_hand = (2 * 0.065 + 3 * abs(1 / 3 - 0.15) + 0.35 + 2 * 0.065 + 0.39 + 3 * (1 - 2.87 / 3)) / 12
    assert expected_calibration_error(table) == pytest.approx(by_hand)


def test_wilson_interval_by_hand() -> None:
    # 3 of 10, z = 1.959964: centre (0.3 + z^2/20) / (1 + z^2/10), half z sqrt(0.021 + z^2/400) / (1 + z^2/10)
    z = 1.959963984540054
    centre = (0.3 + z * z / 20) / (1 + z * z / 10)
    half = z * math.sqrt(0.3 * 0.7 / 10 + z * z / 400) / (1 + z * z / 10)
    low, high = wilson_interval(3, 10)
    assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-9)
    assert (round(low, 4), round(high, 4)) == (0.1078, 0.6032)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_bands_counts_and_auc_needs_enough_of_each_class() -> None:
    bands = ["high" if p > 0.5 else "low" for p in PROBS]
    table = band_table(bands, PROBS, OUTCOMES, order=["high", "medium", "low"])
    assert table["band"].tolist() == ["high", "low"]  # medium is absent
    assert table["n"].tolist() == [6, 6] and table["events"].tolist() == [5, 1]
    assert roc_auc_or_none(PROBS, OUTCOMES) is None  # 6 and 6: below 10 of each
    # by hand: of 6 x 6 pairs, 4 put a non-event above an event (0.18, 0.35, 0.58 over 0.15; 0.58 over 0.55)
    assert roc_auc_or_none(PROBS, OUTCOMES, min_each=5) == pytest.approx(32 / 36)
    with pytest.raises(SalesmlError, match="in \\[0, 1\\]"):
        calibration_table([0.2, 1.5], [0, 1])
    with pytest.raises(SalesmlError, match="outcomes must be 0 or 1"):
        calibration_table([0.2, 0.5], [0, 2])
    with pytest.raises(SalesmlError, match="same length"):
        calibration_table([0.2, 0.5], [0])


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
    z = unit_errors(np.array([-45.0, 10.0]), np.array([0.0, 0.0]), np.array([0.0, 0.0]), np.array([845.0, 0.0]))
    assert z[0] == pytest.approx(-45 / (845 / 1.959963984540054))
    assert np.isnan(z[1])  # no width on either side: nothing to measure by
