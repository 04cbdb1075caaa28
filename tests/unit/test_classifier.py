"""The shared classifier trainer: time-ordered slices, purge, calibration, bands, reasons, reproducibility."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import SalesmlError
from training.classifier import ClassifierData, TrainConfig, train_classifier
from training.metrics import classification_metrics, expected_calibration_error

FAST = TrainConfig(n_trials=3, timeout_s=60, band_labels=("A", "B", "C", "D"), n_jobs=1)


def panel(n: int = 6000, seed: int = 0) -> pd.DataFrame:
    """Monthly cutoffs; the label depends on x1 (strong), x2 (weak) and a category; noise column x3."""
    rng = np.random.default_rng(seed)
    cutoffs = pd.date_range("2022-01-31", periods=12, freq="ME")
    frame = pd.DataFrame(
        {
            "entity": [f"E{i % 700}" for i in range(n)],
            "cutoff": rng.choice(cutoffs, n),
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "x3": rng.normal(size=n),
            "segment": rng.choice(["a", "b", "c"], n),
        }
    )
    logit = -0.5 + 1.8 * frame["x1"] + 0.5 * frame["x2"] + np.where(frame["segment"] == "a", 1.0, 0.0)
    frame["label"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


def data_for(frame: pd.DataFrame, **kw) -> ClassifierData:
    """The panel's ClassifierData; keyword arguments replace the defaults (e.g. ``categorical``)."""
    fields = {
        "id_col": "entity",
        "time_col": "cutoff",
        "label_col": "label",
        "numeric": ["x1", "x2", "x3"],
        "categorical": ["segment"],
        "rule_baselines": {"x1_rule": "x1"},
    }
    return ClassifierData(frame=frame, **{**fields, **kw})


@pytest.fixture(scope="module")
def fitted():
    frame = panel()
    return frame, train_classifier(data_for(frame), FAST)


def test_time_slices_are_ordered_and_purged() -> None:
    frame = panel()
    result = train_classifier(data_for(frame, purge=pd.Timedelta(days=45)), FAST)
    tp = result.test_predictions
    test_start = tp["cutoff"].min()
    s = result.slices
    train_last = pd.Timestamp(s["train"].split(" .. ")[1])
    cal_first, cal_last = (pd.Timestamp(x) for x in s["calibration"].split(" .. "))
    assert train_last < cal_first <= cal_last < test_start
    # Purge: no training row's 45-day label window reaches the calibration slice.
    assert train_last + pd.Timedelta(days=45) < cal_first
    assert cal_last + pd.Timedelta(days=45) < test_start
    assert s["purged_rows"]["train"] > 0


def test_model_beats_noise_is_calibrated_and_bands_are_monotone(fitted) -> None:
    _, result = fitted
    m = result.metrics
    assert m["model"]["roc_auc"] > 0.80
    assert m["model"]["ece"] < 0.05
    assert set(m) == {"model", "logistic", "x1_rule"}
    rates = result.bands_test["observed_rate"].to_numpy()
    assert list(result.bands_test["band"]) == ["A", "B", "C", "D"]
    assert np.all(np.diff(rates) < 0), rates
    top = result.importance["feature"].head(2).tolist()
    assert top[0] == "x1"
    assert "x3" not in top


def test_reasons_are_signed_contributions_that_add_up(fitted) -> None:
    frame, result = fitted
    rows = frame.head(50)
    contrib = result.model.contributions(rows)
    booster = result.model.pipeline.named_steps["model"].booster_
    X = result.model.pipeline.named_steps["prepare"].transform(result.model.prepare(rows))
    raw = booster.predict(X, raw_score=True)
    full = booster.predict(X, pred_contrib=True)
    np.testing.assert_allclose(full.sum(axis=1), raw, rtol=1e-6, atol=1e-6)
    out = result.model.predict(rows)
    first = out["reason_1"].to_numpy()
    for i, name in enumerate(first):
        assert abs(contrib.iloc[i][name]) == pytest.approx(contrib.iloc[i].abs().max())
    assert {"probability", "band", "reason_3", "reason_3_contribution", "reason_3_value"} <= set(out.columns)


def test_same_seed_same_metrics() -> None:
    frame = panel(2000)
    a = train_classifier(data_for(frame), FAST).metrics
    b = train_classifier(data_for(frame), FAST).metrics
    assert a == b


def test_bad_labels_and_missing_columns_are_named(fitted) -> None:
    frame = panel(500)
    with pytest.raises(SalesmlError, match="label column 'label' must hold only 0 and 1"):
        train_classifier(data_for(frame.assign(label=frame["label"] * 2)), FAST)
    with pytest.raises(SalesmlError, match="column 'x2' is not in the training frame"):
        train_classifier(data_for(frame.drop(columns="x2")), FAST)
    with pytest.raises(SalesmlError, match=r"feature column\(s\) \['x1'\] missing"):
        fitted[1].model.predict(frame.drop(columns="x1"))


def test_metrics_reference_values() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    m = classification_metrics(y, p)
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2))
    # ECE by hand: bins 1, 4, 3, 8 each hold one row -> mean |y - p|.
    assert expected_calibration_error(y, p) == pytest.approx(np.mean(np.abs(y - p)))
    assert m["lift_top_decile"] == pytest.approx(2.0)


def test_missing_categorical_values_train_and_score() -> None:
    """NaN / None / pd.NA in a categorical column: both the model and the logistic baseline fit and score."""
    frame = panel(1500, seed=3)
    segment = frame["segment"].astype(object)
    segment.iloc[::7] = np.nan
    segment.iloc[1::11] = None
    frame["segment"] = segment.astype("string")  # a nullable string column holds pd.NA
    assert frame["segment"].isna().sum() > 200
    result = train_classifier(data_for(frame), FAST)
    assert {"model", "logistic"} <= set(result.metrics)
    assert result.metrics["logistic"]["roc_auc"] > 0.75
    prepared = result.model.prepare(frame.head(30))
    assert not any(v is pd.NA for v in prepared["segment"])
    out = result.model.predict(frame.head(30))
    assert out["probability"].between(0, 1).all()


def drifting_panel(n: int = 4000, seed: int = 1) -> pd.DataFrame:
    """12 monthly cutoffs; the label follows x1 in the first 8 months (the train slice) and x2 from month 9 on
    (the calibration and test slices): a regime change the train slice never sees."""
    frame = panel(n, seed)
    month = frame["cutoff"].dt.month
    rng = np.random.default_rng(seed + 100)
    logit = np.where(month <= 8, 2.0 * frame["x1"], 2.0 * frame["x2"]) - 0.3
    frame["label"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


def test_refit_on_train_and_calibration_uses_the_latest_rows_and_keeps_calibration_out_of_sample() -> None:
    frame = drifting_panel()
    plain = train_classifier(data_for(frame), FAST)
    refit = train_classifier(data_for(frame), TrainConfig(**{**FAST.__dict__, "refit": "train+calibration"}))
    rows = refit.slices["rows"]
    assert refit.slices["refit"] == "train+calibration"
    assert refit.slices["final_fit_rows"] == rows["train"] + rows["calibration"]
    assert "refit" not in plain.slices
    # Same search; calibrator and band thresholds come from the train-only model's calibration-slice scores
    # (plain's pipeline is that model), and the calibrator keeps the refitted model's ranking.
    assert refit.best_params == plain.best_params
    assert refit.calibration_report["brier_none"] == plain.calibration_report["brier_none"]
    assert "brier_isotonic" not in refit.calibration_report
    assert refit.model.calibrator.increasing()
    cal_first, cal_last = (pd.Timestamp(x) for x in plain.slices["calibration"].split(" .. "))
    cal_rows = frame[frame["cutoff"].between(cal_first, cal_last)]
    assert refit.model.lgbm_share == plain.model.lgbm_share  # chosen from the same train-only fits
    raw_cal = plain.model._raw(plain.model.encode(cal_rows))  # uncalibrated
    p_cal = refit.model.calibrator.transform(raw_cal)
    expected = [float(np.quantile(p_cal, 1 - c)) for c in (0.1, 0.3, 0.6)]
    assert refit.model.band_thresholds == pytest.approx(expected)
    # The refitted model and logistic baseline learned the new regime the calibration slice shows.
    for name in ("model", "logistic"):
        assert refit.metrics[name]["roc_auc"] > plain.metrics[name]["roc_auc"] + 0.05, name
    assert refit.metrics["x1_rule"] == plain.metrics["x1_rule"]
    with pytest.raises(SalesmlError, match="refit must be"):
        train_classifier(data_for(frame), TrainConfig(**{**FAST.__dict__, "refit": "all"}))


def test_label_time_drops_rows_whose_outcome_is_known_only_in_the_next_slice() -> None:
    frame = panel(3000, seed=5)
    rng = np.random.default_rng(5)
    frame["closed_at"] = frame["cutoff"] + pd.to_timedelta(rng.integers(0, 120, len(frame)), unit="D")
    frame.loc[frame.index[::50], "closed_at"] = pd.NaT  # unknown: counts as known at the cutoff
    plain = train_classifier(data_for(frame), FAST)
    result = train_classifier(data_for(frame, label_time_col="closed_at"), FAST)
    cal_start = pd.Timestamp(plain.slices["calibration"].split(" .. ")[0])
    test_start = plain.test_predictions["cutoff"].min()
    known = frame["closed_at"].fillna(frame["cutoff"])
    in_train = frame["cutoff"] < cal_start
    in_cal = (frame["cutoff"] >= cal_start) & (frame["cutoff"] < test_start)
    late_train = int((in_train & (known >= cal_start)).sum())
    late_cal = int((in_cal & (known >= test_start)).sum())
    assert late_train > 0 and late_cal > 0
    purged = result.slices["purged_rows"]
    assert purged["train_by_label_time"] == purged["train"] == late_train
    assert purged["calibration_by_label_time"] == purged["calibration"] == late_cal
    rows, plain_rows = result.slices["rows"], plain.slices["rows"]
    assert rows["train"] == plain_rows["train"] - late_train
    assert rows["calibration"] == plain_rows["calibration"] - late_cal
    assert rows["test"] == plain_rows["test"]  # the test slice is never purged
    assert "train_by_label_time" not in plain.slices["purged_rows"]
    with pytest.raises(SalesmlError, match="column 'closed' is not in the training frame"):
        train_classifier(data_for(frame, label_time_col="closed"), FAST)


def test_categorical_rule_baseline_scores_the_train_rate_of_the_level() -> None:
    frame = panel(3000, seed=7)
    segment = frame["segment"].astype(object)
    segment.iloc[::13] = np.nan
    frame["segment"] = segment
    # A level that only occurs after the train slice: it must get the train base rate.
    late = frame["cutoff"] >= frame["cutoff"].sort_values().iloc[int(0.9 * len(frame))]
    frame.loc[late & (frame["x2"] > 1.0), "segment"] = "new"
    data = data_for(frame, rule_baselines={"segment_rule": "segment", "x1_rule": "x1"})
    result = train_classifier(data, FAST)
    fitted = result.baselines["segment_rule"]
    assert fitted["kind"] == "categorical"
    train_end = pd.Timestamp(result.slices["train"].split(" .. ")[1])
    train = frame[frame["cutoff"] <= train_end]
    expected = train.groupby(train["segment"].fillna("(missing)"))["label"].mean()
    assert fitted["level_rates"] == pytest.approx(expected.to_dict())
    assert "new" not in fitted["level_rates"]
    assert fitted["base_rate"] == pytest.approx(train["label"].mean())
    # The raw score's ranking on the test slice is the level rate's: its ROC AUC is the rate score's.
    tp = result.test_predictions
    test = frame[frame["cutoff"] >= tp["cutoff"].min()]  # the test slice, in frame order
    assert (test["label"].to_numpy() == tp["label"].to_numpy()).all()
    score = test["segment"].fillna("(missing)").map(fitted["level_rates"]).fillna(fitted["base_rate"])
    auc = classification_metrics(tp["label"].to_numpy(), score.to_numpy())["roc_auc"]
    assert result.metrics["segment_rule"]["roc_auc"] == pytest.approx(auc)
    assert 0.55 < auc < result.metrics["model"]["roc_auc"]  # segment "a" raises the odds; x1 matters more
    assert result.baselines["x1_rule"]["kind"] == "numeric"


def test_recency_weighting_follows_the_latest_regime() -> None:
    frame = drifting_panel()
    base = {**FAST.__dict__, "refit": "train+calibration"}
    equal = train_classifier(data_for(frame), TrainConfig(**base))
    recent = train_classifier(data_for(frame), TrainConfig(**{**base, "recency_halflife": 30.0}))
    assert recent.slices["recency_halflife"] == 30.0 and "recency_halflife" not in equal.slices
    # The last two months (the new regime) dominate the weighted fit: both models follow it far better.
    for name in ("model", "logistic"):
        assert recent.metrics[name]["roc_auc"] > equal.metrics[name]["roc_auc"] + 0.1, name
    with pytest.raises(SalesmlError, match="recency_halflife must be positive"):
        train_classifier(data_for(frame), TrainConfig(**{**base, "recency_halflife": 0.0}))


def _pipeline_predict(model, frame: pd.DataFrame) -> pd.DataFrame:
    """The reference: probabilities, contributions and reasons through the scikit-learn pipeline (pandas in)."""
    from training.classifier.scoring import _fmt

    X = model.prepare(frame)
    Xt = model.pipeline.named_steps["prepare"].transform(X)
    booster = model.pipeline.named_steps["model"].booster_
    values = booster.predict(Xt, pred_contrib=True)[:, :-1]
    p_raw = model.pipeline.predict_proba(X)[:, 1]
    if model.linear is not None:  # the blend: LightGBM's and the logistic pipeline's own log-odds
        w = model.lgbm_share
        margin = w * booster.predict(Xt, raw_score=True) + (1 - w) * model.linear.pipeline.decision_function(
            X
        )
        p_raw = 1 / (1 + np.exp(-margin))
        values = w * values + (1 - w) * model.linear.margin_and_contributions(X)[1]
    p = model.calibrator.transform(p_raw)
    out = pd.DataFrame({"probability": p, "band": model.band(p)}, index=frame.index)
    order = np.argsort(-np.abs(values), axis=1, kind="stable")[:, : model.n_reasons]
    names = np.asarray(Xt.columns, dtype=object)
    raw = X.to_numpy(dtype=object)
    for k in range(model.n_reasons):
        cols = order[:, k]
        out[f"reason_{k + 1}"] = names[cols]
        out[f"reason_{k + 1}_contribution"] = values[np.arange(len(values)), cols]
        out[f"reason_{k + 1}_value"] = [_fmt(v) for v in raw[np.arange(len(X)), cols]]
    return out


@pytest.fixture(scope="module")
def mixed_model():
    """Numeric + two categorical columns, with missing values and a level too rare to be a category."""
    frame = panel(2500, seed=11)
    rng = np.random.default_rng(99)  # not panel's seed: its draws would line up with the cutoffs
    frame["region"] = rng.choice(["north", "south", "east"], len(frame)).astype(object)
    frame.loc[frame.index[:3], "region"] = "rare"  # below ToCategory's min_frequency: not a category
    frame.loc[frame.index[::9], "region"] = None
    frame.loc[frame.index[::6], "x2"] = np.nan
    data = data_for(frame, categorical=["segment", "region"], rule_baselines={})
    # a fixed LightGBM + logistic blend, so the lean-path tests below cover the linear part too
    model = train_classifier(data, TrainConfig(**{**FAST.__dict__, "blend_shares": (0.6,)})).model
    assert model.linear is not None and model.lgbm_share == 0.6
    assert model.pipeline.named_steps["prepare"].named_transformers_["cat"].categories_["region"] == [
        "east",
        "north",
        "south",
    ]
    return model


def _awkward_rows(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(12)
    rows = pd.DataFrame(
        {
            "x1": rng.normal(size=n).astype(object),
            "x2": rng.normal(size=n),
            "x3": rng.integers(-3, 4, n),  # integers
            "segment": rng.choice(["a", "b", "c", "unseen", None], n).astype(object),
            "region": rng.choice(["north", "south", "east", "rare", "west", None], n).astype(object),
        },
        index=pd.RangeIndex(100, 100 + n),
    )
    rows.loc[rows.index[::7], "x1"] = "not a number"  # coerced to missing
    rows.loc[rows.index[::11], "x1"] = "1.25"  # a number sent as text
    rows.loc[rows.index[::5], "x2"] = np.nan
    rows.loc[rows.index[::13], "segment"] = np.nan
    return rows


def test_lean_scoring_path_is_identical_to_the_pipeline(mixed_model) -> None:
    model = mixed_model
    rows = _awkward_rows()
    enc = model.encode(rows)
    assert enc.matrix is not None  # the lean path is the one under test
    expected = _pipeline_predict(model, rows)
    got = model.predict(rows)
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12, atol=1e-12)
    assert set(got["reason_1_value"]) & {"missing", "unseen", "1.25"}  # the awkward values reach the reasons
    np.testing.assert_allclose(model.predict_proba(rows), expected["probability"], rtol=1e-12, atol=1e-12)
    contrib = model.contributions(rows)
    assert list(contrib.columns) == model.features
    # One row at a time (single-threaded LightGBM) and a subset of encoded rows give the same answers.
    one = model.predict(rows.iloc[[4]])
    pd.testing.assert_frame_equal(one, expected.iloc[[4]], check_exact=False, rtol=1e-12, atol=1e-12)
    subset = pd.DataFrame(model.score(enc.take([5, 0, 5])), index=rows.index[[5, 0, 5]])
    pd.testing.assert_frame_equal(subset, expected.iloc[[5, 0, 5]], check_exact=False, rtol=1e-12, atol=1e-12)


def test_lean_path_follows_the_boosters_category_order_and_survives_pickling(mixed_model) -> None:
    import copy
    import pickle

    model = copy.deepcopy(mixed_model)
    booster = model.pipeline.named_steps["model"].booster_
    # LightGBM maps pandas categories to its codes through the booster's own list: a different order there
    # must change the lean path's codes the same way.
    booster.pandas_categorical = [list(reversed(c)) for c in booster.pandas_categorical]
    model.__dict__.pop("_lean_cache", None)
    rows = _awkward_rows(120)
    pd.testing.assert_frame_equal(
        model.predict(rows), _pipeline_predict(model, rows), check_exact=False, rtol=1e-12, atol=1e-12
    )
    # __getstate__ leaves the lean cache (booster -> input recipe) out of the pickle; the first call after
    # loading rebuilds it for the loaded booster and takes the lean path again.
    mixed_model.predict(rows.head(3))
    assert "_lean_cache" in mixed_model.__dict__
    assert "_lean_cache" not in mixed_model.__getstate__()
    restored = pickle.loads(pickle.dumps(mixed_model))
    assert "_lean_cache" not in restored.__dict__
    pd.testing.assert_frame_equal(restored.predict(rows), mixed_model.predict(rows), check_exact=True)
    booster_after, lean_after = restored.__dict__["_lean_cache"]
    assert booster_after is restored.pipeline.named_steps["model"]._Booster and lean_after is not None


def test_models_pickled_under_the_old_module_paths_load(mixed_model, monkeypatch: pytest.MonkeyPatch) -> None:
    """Models logged while the classifier was one module (training/classifier.py) name their classes
    ``training.classifier.<Class>``; the package keeps those names importable, so such models still load."""
    import pickle
    import pickletools

    from training.classifier import calibration, pipelines, scoring

    for cls in (scoring.ScoringModel, calibration.Calibrator, pipelines.LinearPart, pipelines.ToCategory):
        monkeypatch.setattr(cls, "__module__", "training.classifier")  # as the one-module code pickled them
    old = pickle.dumps(mixed_model)
    monkeypatch.undo()
    strings = {arg for op, arg, _ in pickletools.genops(old) if isinstance(arg, str)}
    assert {s for s in strings if s.startswith("training.")} == {"training.classifier"}
    assert {"ScoringModel", "Calibrator", "LinearPart", "ToCategory"} <= strings
    restored = pickle.loads(old)
    assert type(restored) is scoring.ScoringModel and type(restored.linear) is pipelines.LinearPart
    rows = _awkward_rows(50)
    pd.testing.assert_frame_equal(restored.predict(rows), mixed_model.predict(rows), check_exact=True)


def test_search_gap_fits_the_search_on_older_train_rows_only() -> None:
    frame = panel()
    plain = train_classifier(data_for(frame), FAST)
    assert "search_fit" not in plain.slices
    gapped = train_classifier(data_for(frame), TrainConfig(**{**FAST.__dict__, "search_gap": 75.0}))
    s = gapped.slices
    cal_start = pd.Timestamp(s["calibration"].split(" .. ")[0])
    first, last = (pd.Timestamp(x) for x in s["search_fit"].split(" .. "))
    assert first == pd.Timestamp(s["train"].split(" .. ")[0])
    assert last <= cal_start - pd.Timedelta(days=75) < pd.Timestamp(s["train"].split(" .. ")[1])
    assert s["search_gap"] == 75.0
    # The final model still uses the whole train slice: the split and its row counts are unchanged.
    assert s["rows"] == plain.slices["rows"] and s["train"] == plain.slices["train"]
    # A gap longer than the history: the search fits on the earliest train time alone.
    widest = train_classifier(data_for(frame), TrainConfig(**{**FAST.__dict__, "search_gap": 10_000.0}))
    first, last = widest.slices["search_fit"].split(" .. ")
    assert first == last == widest.slices["train"].split(" .. ")[0]
    with pytest.raises(SalesmlError, match="search_gap must be positive"):
        train_classifier(data_for(frame), TrainConfig(**{**FAST.__dict__, "search_gap": 0.0}))


def test_prediction_threads_share_the_cores_among_service_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    from training.classifier.lean import PARALLEL_ROWS, prediction_threads

    monkeypatch.setattr("os.cpu_count", lambda: 8)
    monkeypatch.delenv("SALESML_SERVE_WORKERS", raising=False)
    assert prediction_threads(PARALLEL_ROWS - 1) == 1  # small batches: one thread
    assert prediction_threads(PARALLEL_ROWS) == 8
    monkeypatch.setenv("SALESML_SERVE_WORKERS", "2")
    assert prediction_threads(10_000) == 4
    monkeypatch.setenv("SALESML_SERVE_WORKERS", "16")
    assert prediction_threads(10_000) == 1
    for unusable in (
        "",
        "0",
        "-2",
        "two",
        "1.5",
        "\u00b2",  # a digit to str.isdigit, not to int()
    ):  # what the service's decorator also reads as its default, 1
        monkeypatch.setenv("SALESML_SERVE_WORKERS", unusable)
        assert prediction_threads(10_000) == 8, unusable


def test_blend_share_is_chosen_on_the_calibration_slice_and_its_reasons_add_up(fitted) -> None:
    frame, result = fitted
    blend = result.blend
    aucs = {float(w): v for w, v in blend["calibration_auc"].items()}
    assert set(aucs) == set(FAST.blend_shares)
    best = max(aucs, key=lambda w: (aucs[w], w))
    expected = best if aucs[best] - aucs[1.0] >= FAST.blend_min_gain else 1.0
    assert result.model.lgbm_share == blend["lightgbm_share"] == expected
    # Whatever the share, the reasons add up to the score's log-odds: blended contributions + blended bias.
    model = result.model
    rows = frame.head(40)
    X = model.prepare(rows)
    w = model.lgbm_share
    booster = model.pipeline.named_steps["model"].booster_
    tree = booster.predict(model.pipeline.named_steps["prepare"].transform(X), pred_contrib=True)
    base = w * tree[:, -1] + (1 - w) * (model.linear.base if model.linear is not None else 0.0)
    raw = model._raw(model.encode(rows))
    np.testing.assert_allclose(
        model.contributions(rows).sum(axis=1) + base, np.log(raw / (1 - raw)), rtol=1e-9, atol=1e-9
    )


def test_linear_contributions_add_up_to_the_logistic_pipelines_log_odds(mixed_model) -> None:
    linear = mixed_model.linear
    rows = mixed_model.prepare(_awkward_rows(80))
    margin, contrib = linear.margin_and_contributions(rows)
    np.testing.assert_allclose(margin, linear.pipeline.decision_function(rows), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(contrib.sum(axis=1) + linear.base, margin, rtol=1e-10, atol=1e-10)
    # each feature's contribution comes from its own columns: a changed region moves only the region's
    changed = rows.assign(region="south")
    delta = linear.margin_and_contributions(changed)[1] - contrib
    others = [j for j, f in enumerate(mixed_model.features) if f != "region"]
    assert np.abs(delta[:, others]).max() == 0.0
    assert np.abs(delta[:, mixed_model.features.index("region")]).max() > 0.0


def test_a_blend_must_beat_lightgbm_alone_by_the_minimum_gain() -> None:
    from training.classifier.selection import choose_blend

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 4000)
    signal = y + rng.normal(0, 1.0, len(y))
    p_tree = 1 / (1 + np.exp(-(signal + rng.normal(0, 1.0, len(y)))))  # noisier than
    p_logit = 1 / (1 + np.exp(-(signal + rng.normal(0, 0.5, len(y)))))  # the logistic model
    config = TrainConfig(blend_shares=(1.0, 0.5, 0.0))
    share, info = choose_blend(p_tree, p_logit, y, config)
    gain = info["calibration_auc"][str(share)] - info["calibration_auc"]["1.0"]
    assert share < 1.0 and gain >= config.blend_min_gain, info
    # the same gain short of a (larger) minimum: LightGBM alone, and the report says why
    strict = TrainConfig(blend_shares=(1.0, 0.5, 0.0), blend_min_gain=gain + 1e-4)
    share, info = choose_blend(p_tree, p_logit, y, strict)
    assert share == 1.0 and "no share beats 1.0" in info["why"], info


def test_no_blend_without_enough_calibration_rows_or_when_switched_off() -> None:
    frame = panel(2000)
    small = train_classifier(data_for(frame), TrainConfig(**{**FAST.__dict__, "blend_min_rows": 10_000}))
    assert small.model.linear is None and small.model.lgbm_share == 1.0
    assert "too small" in small.blend["why"]
    alone = train_classifier(data_for(frame), TrainConfig(**{**FAST.__dict__, "blend_shares": (1.0,)}))
    assert alone.model.linear is None
    assert alone.metrics["model"] == small.metrics["model"]
    with pytest.raises(SalesmlError, match="blend_shares"):
        train_classifier(data_for(frame), TrainConfig(**{**FAST.__dict__, "blend_shares": (1.5,)}))


def test_linear_contributions_follow_the_fitted_columns_not_their_names() -> None:
    # "seg" has a category "c_x", so its one-hot column is named like one of "seg_c"'s; "empty" has no value
    # (the imputer drops it and keeps only its missing indicator); "rare" falls into the infrequent column.
    import warnings

    from training.classifier.pipelines import LinearPart, logistic_pipeline

    rng = np.random.default_rng(0)
    n = 400
    X = pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "empty": np.nan,
            "x2": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),
            "seg": rng.choice(["a", "b", "c_x", "rare"], n, p=[0.45, 0.45, 0.09, 0.01]).astype(object),
            "seg_c": rng.choice(["x", "y"], n).astype(object),
        }
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-X["x1"]))).astype(int)
    data = ClassifierData(
        frame=X.assign(label=y, t=0, id=range(n)),
        id_col="id",
        time_col="t",
        label_col="label",
        numeric=["x1", "empty", "x2"],
        categorical=["seg", "seg_c"],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the imputer warns about the empty column
        pipe = logistic_pipeline(data, FAST).fit(X, y)
        linear = LinearPart(pipe, data.numeric, data.categorical, X)
        margin, contrib = linear.margin_and_contributions(X)
        expected = pipe.decision_function(X)
    names = list(pipe.named_steps["prepare"].get_feature_names_out())
    owner = dict(zip(names, linear.assign.argmax(axis=1), strict=False))
    assert "cat__seg_infrequent_sklearn" in names and names.count("cat__seg_c_x") == 2
    assert [owner[c] for c in ("num__x1", "num__x2", "num__missingindicator_empty")] == [0, 2, 1]
    assert list(linear.assign.argmax(axis=1)[-5:]) == [
        3,
        3,
        3,
        4,
        4,
    ]  # seg: a, b, c_x, infrequent; seg_c: x, y
    np.testing.assert_allclose(margin, expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(contrib.sum(axis=1) + linear.base, margin, rtol=1e-10, atol=1e-10)


def test_band_population_sets_the_thresholds_at_the_shares_of_the_rows_to_score(fitted) -> None:
    frame, by_calibration = fitted
    riskier = panel(3000, seed=5).assign(
        x1=lambda f: f["x1"] + 1.5
    )  # a population far above the panel's risk
    shares = np.array([0.1, 0.2, 0.3, 0.4])  # TrainConfig's default shares of four bands
    crowded = pd.Series(by_calibration.model.predict(riskier)["band"]).value_counts(normalize=True)
    assert crowded.get("A", 0.0) > shares[0] + 0.2  # the calibration slice's quantiles crowd it into band A

    result = train_classifier(data_for(frame), FAST, band_population=riskier, band_basis="riskier rows")
    assert result.band_basis == "riskier rows" and by_calibration.band_basis == "calibration slice"
    assert result.metrics == by_calibration.metrics  # only the thresholds differ
    observed = pd.Series(result.model.predict(riskier)["band"]).value_counts(normalize=True)
    np.testing.assert_allclose(observed.reindex(["A", "B", "C", "D"]).to_numpy(), shares, atol=0.01)
    # The band tables apply the same rule at each slice: thresholds at the shares of its own probabilities.
    for table in (result.bands_validation, result.bands_test):
        np.testing.assert_allclose(table["n"] / table["n"].sum(), shares, atol=0.01)
        assert np.all(np.diff(table["observed_rate"].to_numpy()) < 0)
    with pytest.raises(SalesmlError, match="no rows to set the band thresholds on"):
        train_classifier(data_for(frame), FAST, band_population=riskier.head(0))
    with pytest.raises(SalesmlError, match="band_basis names the band_population"):
        train_classifier(data_for(frame), FAST, band_basis="riskier rows")


def test_sigmoid_calibration_is_logistic_regressions_own_arithmetic() -> None:
    """Calibrator.transform skips LogisticRegression's input checks; the probabilities are bit for bit its own."""
    from training.classifier.calibration import Calibrator, logit

    rng = np.random.default_rng(3)
    p = rng.uniform(0.001, 0.999, 2_000)
    y = (rng.random(2_000) < p**1.5).astype(int)
    cal = Calibrator("sigmoid").fit(p, y)
    fresh = np.concatenate([rng.uniform(0, 1, 500), [0.0, 1.0, 1e-9, 1 - 1e-9]])
    want = cal.model_.predict_proba(logit(fresh)[:, None])[:, 1]
    np.testing.assert_array_equal(cal.transform(fresh), want)
    assert cal.model_.coef_[0, 0] != 1.0  # a fitted map, not the identity
