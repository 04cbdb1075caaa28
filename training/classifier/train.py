"""``train_classifier``: split, search, calibrate, fit baselines, band, and evaluate on the untouched test slice."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.errors import SalesmlError
from training.classifier.calibration import Calibrator
from training.classifier.config import MIN_ROWS_PER_CLASS, ClassifierData, TrainConfig
from training.classifier.pipelines import LinearPart, lgbm_pipeline, logistic_pipeline
from training.classifier.scoring import ScoringModel
from training.classifier.search import search_params
from training.classifier.selection import (
    bands_at_own_shares,
    choose_blend,
    choose_calibration,
    resolved_band_shares,
    rule_baseline,
    thresholds_at_shares,
)
from training.classifier.split import recency_weights, search_fit_rows, split_slices
from training.metrics import band_table, classification_metrics

__all__ = ["TrainedClassifier", "train_classifier"]


@dataclass
class TrainedClassifier:
    model: ScoringModel
    data: ClassifierData
    config: TrainConfig
    metrics: dict[str, dict[str, float]]
    best_params: dict[str, Any]
    calibration_report: dict[str, float | str]
    bands_validation: pd.DataFrame
    bands_test: pd.DataFrame
    slices: dict[str, dict[str, Any]]
    test_predictions: pd.DataFrame
    importance: pd.DataFrame
    baselines: dict[str, Any]
    search_seconds: float
    blend: dict[str, Any] = field(default_factory=dict)  # the LightGBM share chosen and the AUC of each
    band_basis: str = "calibration slice"  # whose probabilities the band thresholds are shares of

    @property
    def headline(self) -> dict[str, float]:
        return self.metrics["model"]


def train_classifier(
    data: ClassifierData,
    config: TrainConfig | None = None,
    *,
    band_population: pd.DataFrame | None = None,
    band_basis: str = "",
) -> TrainedClassifier:
    """Split, search, calibrate, fit baselines, band, and evaluate on the untouched test slice.

    Band thresholds are the configured shares of the calibration slice's probabilities, or, with
    ``band_population`` (the rows the model will score, e.g. churn's customers active at the last cutoff), of the
    final model's probabilities on those rows: the bands then rank the scored population, the top share being the
    first band whatever its absolute level (the probability says that). Use it where the scored rows' risk differs
    from the calibration slice's (cdnow: one cohort, young at the calibration cutoffs, older when scored), whose
    quantiles would put nearly everyone in one band. No labels are used. The band tables then show that rule at
    each slice (thresholds at the shares of the slice's own probabilities). ``band_basis`` names the population
    for the model card and the MLflow parameters.
    """
    config = config or TrainConfig()
    if band_basis and band_population is None:
        raise SalesmlError("band_basis names the band_population; pass both or neither")
    if band_population is not None and band_population.empty:
        raise SalesmlError(f"no rows to set the band thresholds on ({band_basis or 'band_population'})")
    frame = data.frame
    label_time = [data.label_time_col] if data.label_time_col else []
    for col in [
        data.id_col,
        data.time_col,
        data.label_col,
        *data.features,
        *data.rule_baselines.values(),
        *label_time,
    ]:
        if col not in frame.columns:
            raise SalesmlError(
                f"column {col!r} is not in the training frame (columns: {list(frame.columns)[:20]})"
            )
    labels = frame[data.label_col]
    if not set(pd.unique(labels.dropna())) <= {0, 1} or labels.isna().any():
        raise SalesmlError(
            f"label column {data.label_col!r} must hold only 0 and 1, found {sorted(pd.unique(labels.dropna()))[:5]}"
        )
    if not data.features:
        raise SalesmlError("no feature columns to train on")
    counts = labels.astype(int).value_counts().reindex([0, 1], fill_value=0)
    if counts.min() < MIN_ROWS_PER_CLASS:
        raise SalesmlError(
            f"too few labelled rows to train, calibrate and test: {counts[1]} positive and {counts[0]} negative in "
            f"{data.label_col!r}; the three slices need at least {MIN_ROWS_PER_CLASS} of each class"
        )
    if not (np.isfinite(config.timeout_s) and config.timeout_s > 0):
        raise SalesmlError(
            f"the search budget (--timeout) must be a positive number of seconds, got {config.timeout_s}"
        )
    if config.n_trials < 1:
        raise SalesmlError(f"the search needs at least one trial (--trials), got {config.n_trials}")
    if config.refit not in ("train", "train+calibration"):
        raise SalesmlError(f"refit must be 'train' or 'train+calibration', not {config.refit!r}")

    tr, cal, te, slices = split_slices(data, config)
    model_proto = ScoringModel(
        lgbm_pipeline(data, {}, config),
        Calibrator("none"),
        data.numeric,
        data.categorical,
        config.band_labels,
        [],
    )
    X = model_proto.prepare(frame)
    y = labels.astype(int).to_numpy()
    pos = {name: frame.index.get_indexer(ix) for name, ix in (("train", tr), ("cal", cal), ("test", te))}
    X_tr, X_cal, X_te = X.iloc[pos["train"]], X.iloc[pos["cal"]], X.iloc[pos["test"]]
    y_tr, y_cal, y_te = y[pos["train"]], y[pos["cal"]], y[pos["test"]]

    t_tr = frame[data.time_col].iloc[pos["train"]]
    t_fit = pd.concat([t_tr, frame[data.time_col].iloc[pos["cal"]]])
    w_tr = recency_weights(t_tr, config)
    search_rows = search_fit_rows(t_tr, frame[data.time_col].iloc[pos["cal"]].min(), config)
    if search_rows is None:
        best, seconds, n_trials = search_params(data, config, X_tr, y_tr, X_cal, y_cal, w_tr)
    else:
        t_s = t_tr[search_rows]
        if len(np.unique(y_tr[search_rows])) < 2:
            raise SalesmlError(
                f"search_gap {config.search_gap}: the train rows it leaves ({t_s.min()} .. {t_s.max()}) hold "
                "only one class; choose a smaller gap or more history"
            )
        w_s = recency_weights(t_s, config)
        best, seconds, n_trials = search_params(
            data, config, X_tr[search_rows], y_tr[search_rows], X_cal, y_cal, w_s
        )
        slices["search_fit"] = f"{t_s.min()} .. {t_s.max()}"
        slices["search_gap"] = config.search_gap
    refit = config.refit == "train+calibration"
    X_fit = pd.concat([X_tr, X_cal]) if refit else X_tr
    y_fit = np.concatenate([y_tr, y_cal]) if refit else y_tr
    w_fit = recency_weights(t_fit, config) if refit else w_tr
    pipe = lgbm_pipeline(data, best, config).fit(X_tr, y_tr, model__sample_weight=w_tr)
    logit = logistic_pipeline(data, config).fit(X_tr, y_tr, model__sample_weight=w_tr)
    p_logit_cal = logit.predict_proba(X_cal)[:, 1]
    # The blend share, calibrator and bands from the train-only fits' (out-of-sample) calibration-slice scores.
    raw_cal = pipe.predict_proba(X_cal)[:, 1]
    share, blend = choose_blend(raw_cal, p_logit_cal, y_cal, config)
    linear = LinearPart(logit, data.numeric, data.categorical, X_tr) if share < 1.0 else None
    if linear is not None:
        raw_cal = ScoringModel(
            pipe, Calibrator("none"), data.numeric, data.categorical, config.band_labels, [], 3, linear, share
        ).predict_proba(X_cal)
    method, cal_scores = choose_calibration(raw_cal, y_cal, config.random_state, strictly_increasing=refit)
    calibrator = Calibrator(method).fit(raw_cal, y_cal)  # type: ignore[arg-type]
    p_cal = calibrator.transform(raw_cal)
    logit_method, _ = choose_calibration(p_logit_cal, y_cal, config.random_state, strictly_increasing=refit)
    logit_cal = Calibrator(logit_method).fit(p_logit_cal, y_cal)  # type: ignore[arg-type]
    if refit:  # the model and the logistic baseline alike, so the comparison stays fair
        pipe = lgbm_pipeline(data, best, config).fit(X_fit, y_fit, model__sample_weight=w_fit)
        logit = logistic_pipeline(data, config).fit(X_fit, y_fit, model__sample_weight=w_fit)
        if linear is not None:
            linear = LinearPart(logit, data.numeric, data.categorical, X_fit)
    shares = resolved_band_shares(config)
    model = ScoringModel(
        pipe,
        calibrator,
        data.numeric,
        data.categorical,
        config.band_labels,
        thresholds_at_shares(p_cal, shares),
        linear=linear,
        lgbm_share=share,
    )
    if band_population is not None:
        model.band_thresholds = thresholds_at_shares(model.predict_proba(band_population), shares)

    p_te = model.predict_proba(X_te)
    metrics = {"model": classification_metrics(y_te, p_te)}
    predictions = {"model": p_te}
    baselines: dict[str, Any] = {}
    predictions["logistic"] = logit_cal.transform(logit.predict_proba(X_te)[:, 1])
    metrics["logistic"] = classification_metrics(y_te, predictions["logistic"])
    baselines["logistic"] = {"pipeline": logit, "calibration": logit_method}
    for name, col in data.rule_baselines.items():
        predictions[name], metrics[name], baselines[name] = rule_baseline(
            frame[col], col in data.categorical, pos, y_tr, y_cal, y_te
        )

    if band_population is None:
        bands_cal = band_table(y_cal, p_cal, model.band(p_cal), config.band_labels)
        bands_test = band_table(y_te, p_te, model.band(p_te), config.band_labels)
    else:
        bands_cal = bands_at_own_shares(y_cal, p_cal, shares, config.band_labels)
        bands_test = bands_at_own_shares(y_te, p_te, shares, config.band_labels)
    contrib = model.contributions(X_te)
    importance = (
        contrib.abs()
        .mean()
        .sort_values(ascending=False)
        .rename("mean_abs_contribution")
        .reset_index()
        .rename(columns={"index": "feature"})
    )
    test_pred = pd.DataFrame(
        {
            data.id_col: frame.iloc[pos["test"]][data.id_col].to_numpy(),
            data.time_col: frame.iloc[pos["test"]][data.time_col].to_numpy(),
            "label": y_te,
        }
    )
    for name, p in predictions.items():
        test_pred[f"p_{name}"] = p
    slices.update({"rows": {"train": len(tr), "calibration": len(cal), "test": len(te)}, "trials": n_trials})
    if refit:  # only then: the evaluation key of a train-only run stays what it was
        slices.update({"refit": config.refit, "final_fit_rows": len(y_fit)})
    if w_tr is not None:
        slices["recency_halflife"] = config.recency_halflife
    return TrainedClassifier(
        model=model,
        data=data,
        config=config,
        metrics=metrics,
        best_params=best,
        calibration_report={"chosen": method, **{f"brier_{k}": v for k, v in cal_scores.items()}},
        bands_validation=bands_cal,
        bands_test=bands_test,
        slices=slices,
        test_predictions=test_pred,
        importance=importance,
        baselines=baselines,
        search_seconds=seconds,
        blend=blend,
        band_basis="calibration slice"
        if band_population is None
        else (band_basis or "the scored population"),
    )
