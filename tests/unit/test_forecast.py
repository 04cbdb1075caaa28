"""Forecast pipeline on the small synthetic organisation (weekly): backtest file contract, coherence, intervals,
point-in-time correctness, quarter totals and target plans, serving functions and their errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.errors import SalesmlError
from features.load import load_dataset
from features.series import build_series
from training.forecast.backtest import choose_weight, forecast_at, run_backtest
from training.forecast.config import ForecastConfig
from training.forecast.intervals import interval_columns, step_intervals
from training.forecast.pyfunc import SalesForecastModel
from training.forecast.quarters import forecast_quarters
from training.forecast.report import write_backtest
from training.forecast.serve_api import forecast_nodes, plan_target, quarter_totals

# Small trees and no extra calibration cutoff keep the module to a handful of fits.
FAST = ForecastConfig(
    n_calibration=0,
    lgbm_params={"n_estimators": 60, "learning_rate": 0.1, "num_leaves": 15, "n_jobs": 1, "verbose": -1},
)


@pytest.fixture(scope="module")
def series(small_synthetic_spec: Path):
    return build_series(load_dataset(small_synthetic_spec))


@pytest.fixture(scope="module")
def backtest(series):
    return run_backtest(series, FAST)


@pytest.fixture(scope="module")
def artifacts(series, backtest):
    return forecast_quarters(series, backtest, FAST, meta={"dataset": "synthetic-small"})


def test_backtest_file_contract(backtest, tmp_path: Path) -> None:
    paths = write_backtest(backtest, tmp_path)
    fc = pd.read_parquet(paths["forecasts"])
    for col in ("cutoff", "unique_id", "level", "ds", "y"):
        assert col in fc.columns
    for model in backtest.models:
        assert model in fc.columns
        for lv in (80, 95):
            lo, hi = interval_columns(model, lv)
            assert lo in fc.columns and hi in fc.columns
    # the same calendar cutoffs for every series, at least 4 windows of one quarter
    assert fc["cutoff"].nunique() >= 4
    assert fc.groupby("unique_id")["cutoff"].nunique().eq(fc["cutoff"].nunique()).all()
    assert fc.groupby(["cutoff", "unique_id"])["ds"].count().eq(13).all()
    assert (fc["ds"] > fc["cutoff"]).all()
    metrics = pd.read_csv(paths["metrics"])
    for col in (
        "level",
        "model",
        "wape",
        "mase",
        "bias",
        "cov_80",
        "width_80",
        "cov_95",
        "width_95",
        "qcov_80",
    ):
        assert col in metrics.columns
    assert set(metrics["model"]) == set(backtest.models)
    assert set(metrics["level"]) == set(fc["level"])


def test_reconciled_forecasts_add_up(series, backtest) -> None:
    fc = backtest.forecasts
    S = series.S.set_index("unique_id")
    for model in [m for m in backtest.models if "/" in m]:
        for _, part in fc.groupby(["cutoff", "ds"]):
            v = part.set_index("unique_id")[model]
            agg = S.to_numpy() @ v.reindex(S.columns).to_numpy()
            np.testing.assert_allclose(
                agg, v.reindex(S.index).to_numpy(), rtol=1e-6, atol=1e-3 * max(1, v.abs().max()) * 1e-3
            )
        if series.nonnegative:
            assert (fc[model] >= -1e-9).all()


def test_no_inverted_interval(backtest, artifacts) -> None:
    fc = backtest.forecasts
    for model in backtest.models:
        lo80, hi80 = interval_columns(model, 80)
        lo95, hi95 = interval_columns(model, 95)
        ok = fc[lo80].notna()
        # without a calibration cutoff (FAST) only the first window lacks earlier errors to calibrate on
        assert ok[fc["cutoff"] > fc["cutoff"].min()].all()
        f = fc[ok]
        assert (f[lo80] <= f[model] + 1e-9).all() and (f[model] <= f[hi80] + 1e-9).all()
        assert (f[lo95] <= f[lo80] + 1e-9).all() and (f[hi80] <= f[hi95] + 1e-9).all()
    a = artifacts.forecasts
    assert (a["lo-95"] <= a["lo-80"] + 1e-9).all() and (a["lo-80"] <= a["mean"] + 1e-9).all()
    assert (a["mean"] <= a["hi-80"] + 1e-9).all() and (a["hi-80"] <= a["hi-95"] + 1e-9).all()
    q = artifacts.quarters
    assert (q["lo-95"] <= q["hi-95"]).all() and (q["lo-80"] <= q["hi-80"]).all()


def test_forecasts_at_a_cutoff_ignore_later_data(small_synthetic_spec: Path, series, backtest) -> None:
    c0, c1 = backtest.cutoffs.evaluation[:2]
    altered_ds = load_dataset(small_synthetic_spec)
    orders = altered_ds.tables["orders"]
    later = orders["time"] > c1
    assert later.any()
    orders.loc[later, "amount"] = orders.loc[later, "amount"] * 3 + 100
    altered = build_series(altered_ds)
    assert not altered.Y[altered.Y["ds"] > c1]["y"].equals(series.Y[series.Y["ds"] > c1]["y"])

    def at(s, raw0=None, raw1=None):
        raw0 = forecast_at(s, c0, backtest.cutoffs.horizon, FAST) if raw0 is None else raw0
        raw1 = forecast_at(s, c1, backtest.cutoffs.horizon, FAST) if raw1 is None else raw1
        hist = raw0[raw0["ds"] <= c1]
        cur = raw1[raw1["step"] <= backtest.cutoffs.window]
        for m in backtest.models:
            cur = step_intervals(cur, hist, m, (80, 95), nonnegative=s.nonnegative)
        return cur.drop(columns="y").sort_values(["unique_id", "ds"]).reset_index(drop=True)

    raw = backtest.raw  # the original data's forecasts at both cutoffs, made during the backtest
    original = at(series, raw[raw["cutoff"] == c0], raw[raw["cutoff"] == c1])
    pd.testing.assert_frame_equal(original, at(altered), check_like=True)


def test_blend_weight_chosen_on_the_calibration_window_only(series, backtest) -> None:
    # without a calibration cutoff (FAST) the blend is the plain mean, at every cutoff
    assert backtest.combine_weight == 0.5
    raw = backtest.raw
    both = (raw["LGBM"] > 0) & (raw["SeasonalNaive"] > 0)  # the blend is clipped after blending
    assert both.mean() > 0.5
    blend = 0.5 * raw.loc[both, "LGBM"] + 0.5 * raw.loc[both, "SeasonalNaive"]
    np.testing.assert_allclose(raw.loc[both, "LGBM+SN"], blend, rtol=1e-9, atol=1e-9)

    cutoff = backtest.cutoffs.evaluation[0]
    w = backtest.cutoffs.window
    future = series.Y[series.Y["ds"] > cutoff].copy()
    step = future.groupby("unique_id").cumcount() + 1
    later = (step > w).to_numpy()  # past the first quarter: must not count

    def base(exact: str, other: str) -> pd.DataFrame:
        out = future[["unique_id", "ds"]].copy()
        out[exact] = future["y"]
        out[other] = 2 * future["y"] + 1
        # beyond the first quarter the exact model is far off: counting it would flip the choice
        out.loc[later, exact] = 1e9
        out.loc[later, other] = future.loc[later, "y"]
        return out

    config = ForecastConfig()
    assert choose_weight(series, [(base("LGBM", "SeasonalNaive"), cutoff)], config, w) == 1.0
    assert choose_weight(series, [(base("SeasonalNaive", "LGBM"), cutoff)], config, w) == 0.0

    # overlapping windows: actuals after the first evaluation cutoff never count, even inside the quarter
    half = w // 2
    until = pd.date_range(cutoff, periods=half + 1, freq=series.freq)[-1]
    inside = (step > half).to_numpy() & ~later  # inside the quarter but after ``until``

    def base_until(exact: str, other: str) -> pd.DataFrame:
        out = base(exact, other)
        out.loc[inside, exact] = 1e9
        out.loc[inside, other] = future.loc[inside, "y"]
        return out

    assert choose_weight(series, [(base_until("LGBM", "SeasonalNaive"), cutoff)], config, w) == 0.0
    assert (
        choose_weight(series, [(base_until("LGBM", "SeasonalNaive"), cutoff)], config, w, until=until) == 1.0
    )


def test_quarter_totals_current_and_next(series, artifacts) -> None:
    q = artifacts.quarters
    assert set(q["quarter"]) == {"current", "next"}
    assert set(q["unique_id"]) == set(series.nodes["unique_id"])
    cur = q[q["quarter"] == "current"].set_index("unique_id")
    end = series.end
    in_q = series.Y[(series.Y["ds"].dt.to_period("Q") == end.to_period("Q"))]
    actual = in_q.groupby("unique_id")["y"].sum()
    np.testing.assert_allclose(cur["actual_to_date"], actual.reindex(cur.index).fillna(0))
    f = artifacts.forecasts
    rest = f[f["ds"].dt.to_period("Q") == end.to_period("Q")].groupby("unique_id")["mean"].sum()
    np.testing.assert_allclose(
        cur["mean"], (actual + rest.reindex(actual.index).fillna(0)).reindex(cur.index)
    )
    quant = q[artifacts.quantile_columns()].to_numpy()
    assert (np.diff(quant, axis=1) >= -1e-9).all()


def test_plan_allocations_and_probabilities(artifacts) -> None:
    nxt = quarter_totals(artifacts, nodes=["total"], quarter="next").iloc[0]
    targets = [0.6 * nxt["mean"], nxt["mean"], 1.3 * nxt["mean"], 2.0 * nxt["mean"]]
    probs = []
    for t in targets:
        plan = plan_target(artifacts, "total", t, "next")
        kids = plan[plan["role"] == "child"]
        assert len(kids) == 3  # regions
        assert kids["target"].sum() == pytest.approx(t)
        assert plan["probability"].between(0, 1).all()
        probs.append(plan["probability"].to_numpy())
    probs_arr = np.vstack(probs)
    assert (np.diff(probs_arr, axis=0) <= 1e-12).all(), "probabilities must not rise with the target"
    assert probs_arr[0, 0] > probs_arr[-1, 0]
    assert probs_arr[-1].max() < 0.5


def test_serving_functions_and_errors(artifacts) -> None:
    out = forecast_nodes(artifacts, level="region")
    assert list(out.columns) == ["unique_id", "level", "ds", "mean", "lo-80", "hi-80", "lo-95", "hi-95"]
    assert set(out["level"]) == {"region"}
    one = forecast_nodes(artifacts, nodes=["total"])
    assert one["unique_id"].eq("total").all() and len(one) > 0
    with pytest.raises(SalesmlError, match="unknown node"):
        forecast_nodes(artifacts, nodes=["region=Atlantis"])
    with pytest.raises(SalesmlError, match="unknown level"):
        forecast_nodes(artifacts, level="galaxy")
    for bad in (0, -5, float("nan"), "abc"):
        with pytest.raises(SalesmlError, match="positive number"):
            plan_target(artifacts, "total", bad)  # type: ignore[arg-type]
    with pytest.raises(SalesmlError, match="unknown node"):
        plan_target(artifacts, "nope", 100.0)
    bottom = artifacts.nodes[artifacts.nodes["is_bottom"]]["unique_id"].iloc[0]
    with pytest.raises(SalesmlError, match="no children"):
        plan_target(artifacts, bottom, 100.0)


def test_pyfunc_predict_without_refit(artifacts, tmp_path: Path) -> None:
    path = artifacts.save(tmp_path / "forecast")

    class _Ctx:
        artifacts = {"forecast": str(path)}

    model = SalesForecastModel()
    model.load_context(_Ctx())
    out = model.predict(None, pd.DataFrame({"unique_id": ["total"]}))
    pd.testing.assert_frame_equal(out, forecast_nodes(artifacts, nodes=["total"]), check_dtype=False)
