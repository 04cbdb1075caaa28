"""Forecast pipeline on the small synthetic organisation (weekly): backtest file contract, coherence, intervals,
point-in-time correctness, quarter totals and target plans, serving functions and their errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.errors import NotFoundError, SalesmlError
from features.load import load_dataset
from features.series import build_series
from training.forecast.backtest import choose_weight, forecast_at, run_backtest
from training.forecast.config import BACKTEST_FILES, CHOSEN, LGBM, ForecastConfig
from training.forecast.intervals import interval_columns, step_intervals
from training.forecast.pyfunc import SalesForecastModel
from training.forecast.quarters import forecast_quarters
from training.forecast.report import summary_table, write_backtest
from training.forecast.serve_api import forecast_nodes, plan_target, quarter_totals

# Small trees keep the module to a handful of fits; two calibration cutoffs choose, as in the default.
FAST = ForecastConfig(
    lgbm_params={"n_estimators": 60, "learning_rate": 0.1, "num_leaves": 15, "n_jobs": 1, "verbose": -1},
)
KEYS = ("cutoff", "unique_id", "level", "ds", "y")


def _bounded(backtest) -> list[str]:
    """The models whose intervals the backtest calibrates: the baselines, LightGBM and the served forecast."""
    return [*backtest.baselines, LGBM, CHOSEN]


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
    assert sorted(p.name for p in paths.values()) == sorted(BACKTEST_FILES)
    fc = pd.read_parquet(paths["forecasts"])
    # only keys, model columns (the served one as `chosen`) and their interval columns
    intervals = {c for m in backtest.models for lv in (80, 95) for c in interval_columns(m, lv)}
    assert set(fc.columns) - set(KEYS) - set(backtest.models) <= intervals
    assert set(KEYS) <= set(fc.columns) and CHOSEN in fc.columns
    for model in _bounded(backtest):
        for lv in (80, 95):
            lo, hi = interval_columns(model, lv)
            assert lo in fc.columns and hi in fc.columns
    # the served forecast is its recipe's candidates' mean (one candidate when nothing is pooled)
    np.testing.assert_allclose(fc[CHOSEN], fc[backtest.recipe.components].mean(axis=1))
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
    # which cutoffs chose and which measured
    cuts = pd.read_csv(paths["cutoffs"], parse_dates=["cutoff"])
    assert set(cuts.loc[cuts["role"] == "evaluation", "cutoff"]) == set(fc["cutoff"])
    cal = cuts[cuts["role"] == "calibration"]
    assert len(cal) == 2 and cal["chose"].all() and not cal["measured"].any()
    assert (cal["cutoff"] < fc["cutoff"].min()).all()
    assert not cuts.loc[cuts["role"] == "evaluation", "chose"].any()
    scales = pd.read_parquet(paths["scales"])
    assert list(scales.columns) == ["cutoff", "unique_id", "scale"] and (scales["scale"] >= 1).all()
    selection = pd.read_csv(paths["selection"])
    assert (selection.loc[selection["role"] == "chosen", "model"] == backtest.chosen).all()


def test_summary_names_the_choice_per_level(series, backtest) -> None:
    table = summary_table(backtest, series.levels)
    assert list(table["level"]) == series.levels
    assert table["chosen_on"].eq("calibration").all()
    m = backtest.metrics
    for _, row in table.iterrows():
        part = m[m["level"] == row["level"]].set_index("model")["wape"]
        assert row["ratio"] == pytest.approx(part[CHOSEN] / part[backtest.baselines].min())
        assert row["chosen"] == backtest.recipe.level_model(row["level"])
        assert all("/" + c.split("/", 1)[1] in row["chosen"] for c in backtest.recipe.components)


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
    for model in _bounded(backtest):
        lo80, hi80 = interval_columns(model, 80)
        lo95, hi95 = interval_columns(model, 95)
        ok = fc[lo80].notna()
        assert ok.all()  # the calibration cutoffs' errors calibrate the first window
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

    def at(s):
        h, recipe, baselines = backtest.cutoffs.horizon, backtest.recipe, backtest.baselines
        raw0 = forecast_at(s, c0, h, FAST, recipe, baselines)
        raw1 = forecast_at(s, c1, h, FAST, recipe, baselines)
        hist = raw0[raw0["ds"] <= c1]
        cur = raw1[raw1["step"] <= backtest.cutoffs.window]
        for m in [*baselines, LGBM, CHOSEN]:
            cur = step_intervals(cur, hist, m, (80, 95), nonnegative=s.nonnegative)
        return cur.drop(columns="y").sort_values(["unique_id", "ds"]).reset_index(drop=True)

    original = at(series)
    # the served recipe at c0 is what the backtest measured there
    made = backtest.raw[backtest.raw["cutoff"] == c0].set_index(["unique_id", "ds"])[CHOSEN]
    again = forecast_at(series, c0, backtest.cutoffs.horizon, FAST, backtest.recipe, backtest.baselines)
    np.testing.assert_allclose(
        again.set_index(["unique_id", "ds"])[CHOSEN].reindex(made.index), made, rtol=1e-9, atol=1e-6
    )
    pd.testing.assert_frame_equal(original, at(altered), check_like=True)


def test_blend_weight_chosen_on_the_calibration_window_only(series, backtest) -> None:
    raw = backtest.raw
    weight = backtest.recipe.weight
    assert weight in FAST.combine_grid
    both = (raw["LGBM"] > 0) & (raw["SeasonalNaive"] > 0)  # the blend is clipped after blending
    assert both.mean() > 0.5
    blend = weight * raw.loc[both, "LGBM"] + (1 - weight) * raw.loc[both, "SeasonalNaive"]
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
    with pytest.raises(NotFoundError, match="unknown node"):
        forecast_nodes(artifacts, nodes=["region=Atlantis"])
    with pytest.raises(NotFoundError, match="unknown level"):
        forecast_nodes(artifacts, level="galaxy")
    for bad in (0, -5, float("nan"), "abc"):
        with pytest.raises(SalesmlError, match="positive number"):
            plan_target(artifacts, "total", bad)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match="unknown node"):
        plan_target(artifacts, "nope", 100.0)
    bottom = artifacts.nodes[artifacts.nodes["is_bottom"]]["unique_id"].iloc[0]
    alone = plan_target(artifacts, bottom, 100.0)  # a bottom node's own target: no children to split over
    assert alone["role"].tolist() == ["node"] and alone["target"].tolist() == [100.0]
    assert 0.0 <= alone["probability"].iloc[0] <= 1.0


def test_pyfunc_predict_without_refit(artifacts, tmp_path: Path) -> None:
    path = artifacts.save(tmp_path / "forecast")

    class _Ctx:
        artifacts = {"forecast": str(path)}

    model = SalesForecastModel()
    model.load_context(_Ctx())
    out = model.predict(None, pd.DataFrame({"unique_id": ["total"]}))
    pd.testing.assert_frame_equal(out, forecast_nodes(artifacts, nodes=["total"]), check_dtype=False)


def _seasonal_panel():  # noqa: ANN202 - a HierarchicalSeries
    """Two monthly bottom series that repeat one yearly pattern exactly, and their total."""
    from features.series import HierarchicalSeries

    ds = pd.date_range("2018-01-01", periods=72, freq="MS")
    pattern = np.array([5, 3, 8, 12, 20, 30, 25, 18, 9, 4, 2, 7], dtype=float)
    a, b = np.tile(pattern, 6), np.tile(pattern[::-1] * 2, 6)
    Y = pd.concat(
        [
            pd.DataFrame({"unique_id": uid, "ds": ds, "y": y})
            for uid, y in (("total", a + b), ("a", a), ("b", b))
        ]
    ).sort_values(["unique_id", "ds"], ignore_index=True)
    nodes = pd.DataFrame(
        {
            "unique_id": ["total", "a", "b"],
            "level": ["total", "bottom", "bottom"],
            "hierarchy": [None, 0, 0],
            "depth": [0, 1, 1],
            "parent": [None, "total", "total"],
            "is_bottom": [False, True, True],
        }
    )
    S = pd.DataFrame({"unique_id": ["total", "a", "b"], "a": [1.0, 1.0, 0.0], "b": [1.0, 0.0, 1.0]})
    tags = {"total": np.array(["total"]), "bottom": np.array(["a", "b"])}
    return HierarchicalSeries(
        Y=Y,
        nodes=nodes,
        S=S,
        tags=tags,
        bottom_level="bottom",
        freq="MS",
        season_length=12,
        static=pd.DataFrame({"unique_id": ["total", "a", "b"]}),
        hierarchies=[["bottom"]],
    )


def test_a_baseline_is_served_where_it_wins() -> None:
    # seasonal naive is exact on this panel: whatever else competes, the served forecast must be made of it
    from dataclasses import replace

    series = _seasonal_panel()
    result = run_backtest(series, replace(FAST, pool_size=3))
    assert result.recipe.chosen_on == "calibration"
    # a pool that does no better than the exact baseline on the choosing windows is not served
    assert result.recipe.pool == [] and result.recipe.base == "SeasonalNaive"
    assert {result.recipe.level_model(lvl).split("/")[0] for lvl in series.levels} == {"SeasonalNaive"}
    chosen = result.metrics[result.metrics["model"] == CHOSEN].set_index("level")["wape"]
    assert chosen.max() < 1e-9


@pytest.mark.slow
def test_the_choice_never_sees_the_evaluation_windows(small_synthetic_spec: Path, series, backtest) -> None:
    # changing every actual after the first evaluation cutoff changes the measurements, never the choice
    first = backtest.cutoffs.evaluation[0]
    altered_ds = load_dataset(small_synthetic_spec)
    orders = altered_ds.tables["orders"]
    later = orders["time"] > first + pd.Timedelta(days=7)  # after the period labelled `first`
    orders.loc[later, "amount"] = orders.loc[later, "amount"] * 0.2
    altered = build_series(altered_ds)
    again = run_backtest(altered, FAST)
    assert again.recipe == backtest.recipe
    pd.testing.assert_frame_equal(again.selection, backtest.selection)
    assert not again.metrics.equals(backtest.metrics)


def test_known_ahead_drivers_a_season_ago_once_the_seasonal_lag_is_seen(series) -> None:
    from training.forecast.models import _exog_frames

    known = [c for c in series.known_ahead.columns if c != "ds"]
    assert known, "the small synthetic organisation has known-ahead drivers"
    grid = pd.date_range(series.start, series.end, freq=series.freq)
    season = series.season_length
    for n_train, expect in ((season + 26, True), (season + 25, False)):
        cutoff = grid[n_train - 1]
        df, future, _, cols = _exog_frames(series, series.truncate(cutoff), cutoff, 13, season_ago=True)
        plain = _exog_frames(series, series.truncate(cutoff), cutoff, 13)[0]
        assert not any(c.endswith("_season_ago") for c in plain.columns)  # off unless asked for
        lagged = [f"{c}_season_ago" for c in cols]
        assert all(c in df.columns for c in lagged) is expect and all(c in future for c in lagged) is expect
        if not expect:
            continue
        ka = series.known_ahead.set_index("ds")
        for frame in (df, future):
            rows = frame.drop_duplicates("ds").set_index("ds")
            back = rows.index - pd.tseries.frequencies.to_offset(series.freq) * season
            have = back.isin(ka.index)
            assert have.sum() > 0
            for c in cols:
                np.testing.assert_array_equal(
                    rows.loc[have, f"{c}_season_ago"].to_numpy(), ka.loc[back[have], c].to_numpy()
                )


def test_a_pool_is_served_as_its_members_mean_only_when_it_beats_the_best_baseline(series, backtest) -> None:
    from dataclasses import replace

    from training.forecast.backtest import _choose_pool

    # the three best candidates averaged: served when their mean beats the best reconciled baseline there
    rows = pd.DataFrame(
        {
            "level": ["total"] * 4,
            "y": [10.0, 10.0, 10.0, 10.0],
            "A/BottomUp": [12.0, 8.0, 12.0, 8.0],  # each 20 % off, in turn
            "B/BottomUp": [8.0, 12.0, 8.0, 12.0],
            "C/BottomUp": [10.0, 10.0, 10.0, 10.0],
            "SN": [11.0, 9.0, 11.0, 9.0],
            "SN/BottomUp": [11.0, 9.0, 11.0, 9.0],
        }
    )
    score = pd.Series({"C/BottomUp": 0.0, "SN/BottomUp": 1.0, "A/BottomUp": 2.0, "B/BottomUp": 2.0})
    # C, SN and A: their mean is 10 % off, as SN alone is: a tie is not served
    assert _choose_pool(rows, score, list(score.index), ["SN"], 3, ["total"])[0] == []
    score = pd.Series({"A/BottomUp": 2.0, "B/BottomUp": 2.0, "C/BottomUp": 2.5, "SN/BottomUp": 1.0})
    ranked = ["A/BottomUp", "B/BottomUp", "C/BottomUp", "SN/BottomUp"]
    assert _choose_pool(rows, score, ranked, ["SN"], 3, ["total"])[0] == ranked[:3]  # exact on average
    assert _choose_pool(rows, score, ranked, ["SN"], 1, ["total"])[0] == []
    # a pooled recipe's forecast at a cutoff is the mean of its members, each made as it would be alone
    c0 = backtest.cutoffs.evaluation[0]
    h, base = backtest.cutoffs.horizon, backtest.recipe
    members = [f"{b}/BottomUp" for b in (LGBM, *backtest.baselines[:2])]
    pooled = replace(base, base=LGBM, method="BottomUp", pool=members)
    assert pooled.name == f"Pool({', '.join(members)})"
    assert pooled.level_model("total") == f"mean({', '.join(members)})"
    made = forecast_at(series, c0, h, FAST, pooled, backtest.baselines).set_index(["unique_id", "ds"])[CHOSEN]
    alone = [
        forecast_at(
            series,
            c0,
            h,
            FAST,
            replace(base, base=m.split("/")[0], method="BottomUp", pool=[]),
            backtest.baselines,
        )
        .set_index(["unique_id", "ds"])[CHOSEN]
        .reindex(made.index)
        for m in members
    ]
    np.testing.assert_allclose(made, np.mean(alone, axis=0), rtol=1e-9, atol=1e-6)


def test_a_served_pool_is_named_scored_and_made_as_its_members_mean(series) -> None:
    from dataclasses import replace

    result = run_backtest(series, replace(FAST, pool_size=3))
    recipe = result.recipe
    assert len(recipe.pool) == 3, "on this organisation the three best beat the best baseline together"
    sel = result.selection
    assert set(sel.loc[sel["role"] == "chosen", "model"]) == {recipe.name}
    assert set(sel.loc[sel["role"] == "pooled", "model"]) == set(recipe.pool)
    pooled_score = sel.loc[sel["model"] == recipe.name, "score"].iloc[0]
    best_baseline = sel.loc[sel["model"].str.split("/").str[0].isin(result.baselines), "score"].min()
    assert pooled_score < best_baseline
    for frame in (result.raw, result.forecasts):
        np.testing.assert_allclose(frame[CHOSEN], frame[recipe.pool].mean(axis=1))
