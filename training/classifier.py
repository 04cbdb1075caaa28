"""The one classifier trainer, shared by churn risk and lead / deal scoring.

``train_classifier(data, config)``:

1. splits the examples into train / calibration / test slices, in time order (``split="time"``: later slices
   hold later times; rows whose label window reaches into the next slice are purged) or, for snapshot data
   without time, stratified with a fixed seed (``split="stratified"``);
2. searches LightGBM hyperparameters with Optuna on the calibration slice (bounded by trials and seconds;
   linear trees are left out because LightGBM cannot give per-row contributions for them);
3. chooses the probability calibration (none / sigmoid / isotonic) by Brier score in a two-fold split of the
   calibration slice, then fits the chosen one on the whole slice;
4. fits the baselines on the same slices: logistic regression and each rule (one column used as a score:
   a numeric one oriented on the train slice, a categorical one as its level's train-slice target rate;
   isotonic-calibrated on the calibration slice);
   with ``TrainConfig(refit="train+calibration")`` the model and the logistic baseline are then refitted on
   train + calibration rows (calibrators and bands stay fitted out of sample, see :class:`TrainConfig`);
5. chooses band thresholds (risk tiers or grades A-D) at fixed shares of the calibration slice's probabilities,
   or of the final model's on the rows it will score (``train_classifier(band_population=...)``);
6. reports every metric on the untouched test slice.

The fitted :class:`ScoringModel` scores a frame of feature rows: probability, band and the top signed factors
(LightGBM ``pred_contrib``, in log-odds, with the feature's value). :func:`log_and_register` makes the run one
MLflow run, logs the model as a pyfunc with a signature and an input example, registers it, tags the version
with its evaluation key and metrics, and (optionally) applies the shared promotion gate.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from features.errors import SalesmlError
from features.settings import env_positive_int
from training.metrics import band_table, classification_metrics, reliability_table

__all__ = [
    "ClassifierData",
    "EncodedRows",
    "LinearPart",
    "ScoringModel",
    "TrainConfig",
    "TrainedClassifier",
    "decision_report",
    "load_scoring_model",
    "log_and_register",
    "metrics_table",
    "plot_diagnostics",
    "train_classifier",
]

_EPS = 1e-6


@dataclass(frozen=True)
class ClassifierData:
    """Examples for a binary classifier: one row per (entity, cutoff or decision time).

    ``purge``: a constant label window; with a time split, train (calibration) rows whose ``time + purge``
    reaches the next slice's start are dropped. ``label_time_col``: a per-row moment the label becomes known
    (a deal's close date; not a feature); with a time split, train rows whose label time is at or after the
    calibration slice's start and calibration rows whose label time is at or after the test slice's start are
    dropped, so no slice learns from outcomes that were unknown when the next one begins. A missing label time
    counts as the row's ``time_col``. Both only act on ``split="time"``; the counts are in
    ``slices["purged_rows"]``.
    """

    frame: pd.DataFrame
    id_col: str
    time_col: str
    label_col: str
    numeric: list[str]
    categorical: list[str]
    rule_baselines: dict[str, str] = field(default_factory=dict)
    purge: pd.Timedelta | None = None
    label_time_col: str | None = None

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]


@dataclass(frozen=True)
class TrainConfig:
    """How :func:`train_classifier` splits, searches, calibrates and bands.

    ``refit``: which rows the final model (and the logistic baseline) is fitted on before the test slice is
    scored. ``"train"``: the train slice only. ``"train+calibration"``: the hyperparameters are still chosen on
    the calibration slice with a train-only fit, then the chosen model is refitted on train + calibration rows,
    so a time split uses the latest history (what matters on drifting data). The calibrator and the band
    thresholds stay out of sample: they are chosen and fitted on the *train-only* model's predictions for the
    calibration slice and then applied to the refitted model's scores. Cross-fitting (fit on train plus all but
    one block of the calibration slice, predict that block) was considered and not chosen: on a time split it
    predicts earlier calibration rows with models that saw later ones, so the calibrator would learn from
    look-ahead scores, whereas the train-only model's calibration-slice predictions are forward predictions, as
    the test slice's (and deployment's) are. The price: the calibrator was fitted on scores of a model that saw
    fewer rows (same hyperparameters, hence the same number of trees, so the score scale is close; the test
    metrics show whether that holds). Because it maps another model's scores, in this mode the calibrator must
    be strictly increasing (none, or a sigmoid with a positive slope; no isotonic steps), so the refitted
    model's ranking reaches the probabilities unchanged.

    ``recency_halflife``: with a time split, every fit (search, final model, logistic baseline) weights a row
    by ``0.5 ** (age / recency_halflife)``, its age measured back from the latest row of the rows being fitted,
    in days when ``time_col`` holds dates and in ``time_col`` units otherwise (rows for row-ordered data). It
    trades variance for recency on drifting data; calibrators and rules are not weighted. ``None``: equal
    weights.

    ``search_gap``: with a time split, the hyperparameter search fits its trial models only on train rows at
    least this far (days for dates, ``time_col`` units otherwise) before the calibration slice starts, and
    scores them on the calibration slice as usual; when no train row is that old, on the rows of the earliest
    train time (the widest gap there is). Set it to how far ahead the model must predict (for churn: from the
    last fitted cutoff to the test / scoring cutoff) so that the search rewards models that still rank well
    that far ahead instead of ones that only fit the next slice (on drifting data, more complex trees win the
    one-step validation and lose further ahead). Only the search is affected: the final model, the calibrator
    and the baselines use the slices as without it. ``None``: the search fits on the whole train slice.

    ``blend_shares``: candidate shares ``w`` of LightGBM in the final score's log-odds, ``w * LightGBM + (1 - w) *
    logistic regression`` (the logistic baseline's pipeline, fitted on the same rows as the model). The share is
    chosen by ROC AUC on the calibration slice from the train-only fits (ties go to the larger share), before
    the calibrator, which is then fitted on the blend's calibration-slice scores. Only when the calibration
    slice can tell (at least ``blend_min_rows`` rows and 20 of each class) and only when the blend's ROC AUC
    there beats LightGBM alone by at least ``blend_min_gain``: a smaller gain is noise on a calibration slice of
    a few thousand rows (about a fifth of one AUC's standard error there), it flips with floating-point
    differences between machines (synthetic churn: 0.82707 for a 0.75 share vs 0.82682 alone), and a blend costs
    clarity in the reasons (the logistic part spreads weight over correlated features); otherwise, or with ``(1.0,)``,
    LightGBM alone. The reasons blend the same way: LightGBM's per-feature contributions (TreeSHAP) and the
    logistic model's (coefficient x input centred on the fitted rows, summed over a feature's columns), so they
    still add up to the score's log-odds.
    """

    split: Literal["time", "stratified"] = "time"
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    n_trials: int = 15
    timeout_s: float = 180.0
    random_state: int = 42
    band_labels: tuple[str, ...] = ("high", "medium", "low")
    band_shares: tuple[float, ...] | None = None
    n_jobs: int = 2
    refit: Literal["train", "train+calibration"] = "train"
    recency_halflife: float | None = None
    search_gap: float | None = None
    blend_shares: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25, 0.0)
    blend_min_rows: int = 200
    blend_min_gain: float = 0.002


MIN_ROWS_PER_CLASS = (
    10  # fewer cannot be split into train, calibration (two folds) and test with both classes
)


def _default_shares(n: int) -> tuple[float, ...]:
    return {2: (0.2, 0.8), 3: (0.1, 0.3, 0.6), 4: (0.1, 0.2, 0.3, 0.4)}.get(n, tuple([1.0 / n] * n))


class ToCategory(BaseEstimator, TransformerMixin):
    """Text columns -> pandas categoricals with the categories seen in fit; unseen values become missing.

    LightGBM then treats them as native categorical features and contributions stay per original column.
    """

    def __init__(self, min_frequency: int = 5):
        self.min_frequency = min_frequency

    def fit(self, X: pd.DataFrame, y: Any = None) -> ToCategory:
        self.categories_ = {}
        for col in X.columns:
            counts = X[col].astype("string").value_counts()
            self.categories_[col] = sorted(counts[counts >= self.min_frequency].index.tolist())
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        out = pd.DataFrame(index=X.index)
        for col, cats in self.categories_.items():
            out[col] = pd.Categorical(X[col].astype("string").astype(object), categories=cats)
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(list(self.categories_), dtype=object)


def _lgbm_pipeline(data: ClassifierData, params: Mapping[str, Any], config: TrainConfig) -> Pipeline:
    from lightgbm import LGBMClassifier

    pre = ColumnTransformer(
        [("num", "passthrough", data.numeric), ("cat", ToCategory(), data.categorical)],
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")
    model = LGBMClassifier(
        objective="binary",
        random_state=config.random_state,
        n_jobs=config.n_jobs,
        deterministic=True,
        force_row_wise=True,
        verbose=-1,
        subsample_freq=1,
        **params,
    )
    return Pipeline([("prepare", pre), ("model", model)])


def _logistic_pipeline(data: ClassifierData, config: TrainConfig) -> Pipeline:
    steps = []
    if data.numeric:
        steps.append(
            (
                "num",
                make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()),
                data.numeric,
            )
        )
    if data.categorical:
        steps.append(
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="(missing)"),
                    OneHotEncoder(
                        handle_unknown="infrequent_if_exist", min_frequency=10, sparse_output=False
                    ),
                ),
                data.categorical,
            )
        )
    return Pipeline(
        [
            ("prepare", ColumnTransformer(steps)),
            ("model", LogisticRegression(C=0.5, max_iter=3000, random_state=config.random_state)),
        ]
    )


class Calibrator:
    """Maps raw probabilities to calibrated ones: ``none``, ``sigmoid`` (Platt on the logit) or ``isotonic``."""

    def __init__(self, method: Literal["none", "sigmoid", "isotonic"]):
        self.method = method

    def fit(self, p: np.ndarray, y: np.ndarray) -> Calibrator:
        if self.method == "sigmoid":
            self.model_ = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(p)[:, None], y)
        elif self.method == "isotonic":
            self.model_ = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(p, y)
        return self

    def increasing(self) -> bool:
        """Whether the map is strictly increasing (none, or a sigmoid with a positive slope)."""
        if self.method == "sigmoid":
            return bool(self.model_.coef_[0, 0] > 0)
        return self.method == "none"

    def transform(self, p: np.ndarray) -> np.ndarray:
        if self.method == "sigmoid":
            return self.model_.predict_proba(_logit(p)[:, None])[:, 1]
        if self.method == "isotonic":
            return np.clip(self.model_.predict(p), 0.0, 1.0)
        return np.asarray(p)


def _sigmoid(margin: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-margin))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


class LinearPart:
    """A fitted :func:`_logistic_pipeline` as per-feature log-odds contributions that add up to its log-odds.

    A feature's contribution is the sum over its columns after the pipeline's preparation (the scaled value and
    its missing indicator; one column per category) of coefficient x (column - its mean over the fitted rows):
    ``base + sum(contributions) = intercept + coef . columns``.
    """

    def __init__(self, pipeline: Pipeline, numeric: list[str], categorical: list[str], X_fit: pd.DataFrame):
        prepare, lr = pipeline.named_steps["prepare"], pipeline.named_steps["model"]
        features = [*numeric, *categorical]
        owner = _column_owners(prepare, numeric, categorical)  # prepared column -> index into features
        self.assign = np.zeros((len(owner), len(features)))
        self.assign[np.arange(len(owner)), owner] = 1.0
        self.pipeline = pipeline
        self.coef = np.asarray(lr.coef_[0], dtype=float)
        self.center = np.asarray(prepare.transform(X_fit), dtype=float).mean(axis=0)
        self.base = float(lr.intercept_[0] + self.center @ self.coef)

    def margin_and_contributions(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Log-odds (rows) and per-feature contributions (rows x features) for prepared rows ``X``."""
        Z = np.asarray(self.pipeline.named_steps["prepare"].transform(X), dtype=float)
        C = (Z - self.center) * self.coef
        return self.base + C.sum(axis=1), C @ self.assign


def _column_owners(prepare: ColumnTransformer, numeric: list[str], categorical: list[str]) -> np.ndarray:
    """For each column :func:`_logistic_pipeline` prepares, the index (into numeric + categorical) of its feature.

    Read from the fitted transformers, not from column names (a category text may contain another feature's
    name): the numeric block gives each feature's scaled value (but for features without any value in the
    fitted rows, which the imputer drops), then a missing indicator for each feature in
    ``indicator_.features_``; the one-hot block gives, per feature, one column per frequent category plus one
    for its infrequent ones.
    """
    owners: list[int] = []
    for name, block, _ in prepare.transformers_:
        if name == "num":
            imputer = block.named_steps["simpleimputer"]
            # a column with no value in the fitted rows has no median and is dropped by the imputer
            owners += [j for j, v in enumerate(imputer.statistics_) if not np.isnan(v)]
            if imputer.indicator_ is not None:
                owners += [int(j) for j in imputer.indicator_.features_]
        elif name == "cat":
            ohe = block.named_steps["onehotencoder"]
            infrequent = getattr(ohe, "infrequent_categories_", [None] * len(ohe.categories_))
            for j, (cats, rare) in enumerate(zip(ohe.categories_, infrequent, strict=True)):
                width = len(cats) - (len(rare) - 1 if rare is not None else 0)
                owners += [len(numeric) + j] * width
    width = len(prepare.get_feature_names_out())
    if len(owners) != width:
        raise SalesmlError(f"logistic pipeline: {len(owners)} columns traced to features, {width} prepared")
    return np.asarray(owners, dtype=int)


class ScoringModel:
    """A fitted, calibrated classifier with bands and per-row reasons; what the pyfunc wraps.

    With a ``linear`` part the uncalibrated score is ``sigmoid(lgbm_share * LightGBM log-odds + (1 - lgbm_share)
    * logistic log-odds)`` and the reasons blend both models' contributions the same way (see
    ``TrainConfig.blend_shares``).
    """

    linear: LinearPart | None = None  # class defaults: models pickled before the blend load as LightGBM alone
    lgbm_share: float = 1.0

    def __init__(
        self,
        pipeline: Pipeline,
        calibrator: Calibrator,
        numeric: list[str],
        categorical: list[str],
        band_labels: tuple[str, ...],
        band_thresholds: list[float],
        n_reasons: int = 3,
        linear: LinearPart | None = None,
        lgbm_share: float = 1.0,
    ):
        self.pipeline = pipeline
        self.calibrator = calibrator
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        self.band_labels = tuple(band_labels)
        self.band_thresholds = list(band_thresholds)
        self.n_reasons = n_reasons
        if not 0.0 <= lgbm_share <= 1.0 or (linear is None and lgbm_share != 1.0):
            raise SalesmlError(f"lgbm_share must be in [0, 1] (1 without a linear part), got {lgbm_share}")
        self.linear = linear
        self.lgbm_share = float(lgbm_share)

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Select and type the feature columns; a missing column is an error that names it."""
        self._check_columns(frame)
        X = frame[self.features].copy()
        for col in self.numeric:
            X[col] = pd.to_numeric(X[col], errors="coerce").astype(float)
        for col in self.categorical:
            # Text as Python objects with missing values as np.nan, not pd.NA: scikit-learn's imputers test
            # missingness with ``x != x`` and fail on pd.NA ("boolean value of NA is ambiguous").
            X[col] = X[col].astype("string").astype(object).where(X[col].notna(), np.nan)
        return X

    def _check_columns(self, frame: pd.DataFrame) -> None:
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            raise SalesmlError(f"feature column(s) {missing} missing; the model expects {self.features}")

    # -- the lean path: one LightGBM input matrix per call ------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_lean_cache", None)  # rebuilt from the pipeline on first use
        return state

    def _lean(self) -> _LeanInput | None:
        """How to build the booster's input matrix directly, or None when the pipeline is not the usual one."""
        model = self.pipeline.named_steps.get("model")
        booster = getattr(model, "_Booster", None)
        cached = self.__dict__.get("_lean_cache")
        if cached is not None and cached[0] is booster:
            return cached[1]
        lean = _LeanInput.build(self, booster) if booster is not None else None
        self.__dict__["_lean_cache"] = (booster, lean)
        return lean

    def encode(self, frame: pd.DataFrame) -> EncodedRows:
        """Type the feature columns once: what :meth:`score` needs (a missing column is an error naming it).

        With the usual pipeline (passthrough numbers, :class:`ToCategory` text, LightGBM) this builds LightGBM's
        input matrix directly (float64; numeric columns as :meth:`prepare` coerces them, then each text column
        as the code of its category in the booster, NaN for missing or unseen values), exactly what the
        pipeline would hand the booster; otherwise it keeps the prepared frame for the pipeline.
        """
        lean = self._lean()
        if lean is None:
            X = self.prepare(frame)
            return EncodedRows(
                None,
                X,
                X[self.numeric].to_numpy(dtype=np.float64),
                X[self.categorical].to_numpy(dtype=object),
            )
        self._check_columns(frame)
        n = len(frame)
        M = np.empty((n, len(self.features)), dtype=np.float64)
        for j, col in enumerate(self.numeric):
            s = frame[col]
            if s.dtype.kind in "fiub":
                M[:, j] = s.to_numpy(dtype=np.float64, na_value=np.nan)
            else:  # the same coercion as prepare(): text that is no number becomes missing
                M[:, j] = pd.to_numeric(s, errors="coerce").astype(float).to_numpy(dtype=np.float64)
        texts = np.empty((n, len(self.categorical)), dtype=object)
        base = len(self.numeric)
        for j, col in enumerate(self.categorical):
            s = frame[col].astype("string").astype(object)  # as prepare() + ToCategory: value -> text
            codes = pd.Categorical(s, categories=lean.categories[j]).codes
            mapped = lean.remap[j][codes]  # ToCategory's code -> the booster's code (-1: missing / unseen)
            M[:, base + j] = np.where(mapped < 0, np.nan, mapped)
            texts[:, j] = s.where(s.notna(), np.nan).to_numpy(dtype=object)
        return EncodedRows(M, None, M[:, :base], texts)

    def _tree(self, enc: EncodedRows, *, contrib: bool) -> np.ndarray:
        """LightGBM's log-odds, or (``contrib``) its per-feature contributions plus the bias column, which add
        up to them."""
        if enc.matrix is None:
            M = self.pipeline.named_steps["prepare"].transform(enc.prepared)
            booster, kw = self.pipeline.named_steps["model"].booster_, {}
        else:
            M, booster = enc.matrix, self._lean().booster  # type: ignore[union-attr]
            kw = {"num_threads": _threads(len(enc))}
        return (
            booster.predict(M, pred_contrib=True, **kw)
            if contrib
            else booster.predict(M, raw_score=True, **kw)
        )

    def _linear(self, enc: EncodedRows) -> tuple[np.ndarray, np.ndarray]:
        """The linear part's log-odds and contributions (the prepared frame rebuilt from lean rows)."""
        frame = enc.prepared if enc.prepared is not None else self._frame(enc)
        return self.linear.margin_and_contributions(frame)  # type: ignore[union-attr]

    def _raw(self, enc: EncodedRows) -> np.ndarray:
        """Uncalibrated probabilities (no contributions: the cheap path for :meth:`predict_proba`)."""
        if self.linear is not None:
            w = self.lgbm_share
            return _sigmoid(w * self._tree(enc, contrib=False) + (1.0 - w) * self._linear(enc)[0])
        if enc.matrix is None:
            return self.pipeline.predict_proba(enc.prepared)[:, 1]
        return self._lean().booster.predict(enc.matrix, num_threads=_threads(len(enc)))  # type: ignore[union-attr]

    def _raw_and_contrib(self, enc: EncodedRows) -> tuple[np.ndarray, np.ndarray]:
        """Uncalibrated probabilities and per-feature contributions (no bias column) from one encoding: LightGBM's,
        or with a linear part the blend of both models' (so they still add up to the score's log-odds)."""
        tree = self._tree(enc, contrib=True)
        if self.linear is None:
            return self._raw(enc), tree[:, :-1]
        w = self.lgbm_share
        m_lin, c_lin = self._linear(enc)
        margin = w * tree.sum(axis=1) + (1.0 - w) * m_lin  # LightGBM's log-odds: contributions + bias
        return _sigmoid(margin), w * tree[:, :-1] + (1.0 - w) * c_lin

    def _frame(self, enc: EncodedRows) -> pd.DataFrame:
        """The prepared frame (as :meth:`prepare` gives it) rebuilt from encoded rows, for the linear part."""
        data = {c: enc.numbers[:, j] for j, c in enumerate(self.numeric)}
        data.update({c: enc.texts[:, j] for j, c in enumerate(self.categorical)})
        return pd.DataFrame(data, columns=self.features)

    # -- public API ---------------------------------------------------------------------------------------

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.calibrator.transform(self._raw(self.encode(frame)))

    def band(self, p: np.ndarray) -> np.ndarray:
        """Bands from the highest-probability one down; thresholds are lower bounds of each band but the last."""
        return self.band_of(p, self.band_thresholds, self.band_labels)

    @staticmethod
    def band_of(p: np.ndarray, thresholds: Sequence[float], labels: Sequence[str]) -> np.ndarray:
        idx = np.zeros(len(p), dtype=int)
        for t in thresholds:
            idx += (np.asarray(p) < t).astype(int)
        return np.asarray(labels, dtype=object)[idx]

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Signed per-feature contributions (log-odds of the uncalibrated model), one column per feature."""
        contrib = self._raw_and_contrib(self.encode(frame))[1]
        return pd.DataFrame(contrib, columns=self.features, index=frame.index)

    def score(self, enc: EncodedRows) -> dict[str, np.ndarray]:
        """:meth:`predict`'s columns as arrays, for rows already encoded with :meth:`encode`."""
        raw, contrib = self._raw_and_contrib(enc)
        p = self.calibrator.transform(raw)
        out = {"probability": p, "band": self.band(p)}
        n, n_num = len(p), len(self.numeric)
        order = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, : self.n_reasons]
        names = np.asarray(self.features, dtype=object)
        rows = np.arange(n)
        for k in range(min(self.n_reasons, contrib.shape[1])):
            cols = order[:, k]
            out[f"reason_{k + 1}"] = names[cols]
            out[f"reason_{k + 1}_contribution"] = contrib[rows, cols]
            values = np.empty(n, dtype=object)
            is_num = cols < n_num
            values[is_num] = _fmt_numbers(enc.numbers[rows[is_num], cols[is_num]])
            values[~is_num] = [_fmt(v) for v in enc.texts[rows[~is_num], cols[~is_num] - n_num]]
            out[f"reason_{k + 1}_value"] = values
        return out

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """probability, band and the top reasons (``reason_k``, ``reason_k_contribution``, ``reason_k_value``)."""
        return pd.DataFrame(self.score(self.encode(frame)), index=frame.index)


@dataclass(frozen=True)
class EncodedRows:
    """Feature rows typed once by :meth:`ScoringModel.encode`; :meth:`take` selects rows without re-encoding."""

    matrix: np.ndarray | None  # LightGBM's input (lean path), or None
    prepared: pd.DataFrame | None  # ScoringModel.prepare() output (pipeline path), or None
    numbers: np.ndarray  # the numeric features, float64, one row per row
    texts: np.ndarray  # the categorical features as text (np.nan = missing), one row per row

    def __len__(self) -> int:
        return len(self.numbers)

    def take(self, positions: np.ndarray | list[int]) -> EncodedRows:
        pos = np.asarray(positions, dtype=np.int64)
        return EncodedRows(
            None if self.matrix is None else self.matrix[pos],
            None if self.prepared is None else self.prepared.iloc[pos],
            self.numbers[pos],
            self.texts[pos],
        )


# Below this many rows LightGBM predicts on one thread: an OpenMP team for a handful of rows costs more than it
# saves, and on a busy machine its barrier waits for a descheduled thread (measured: 0.03 ms for one row on one
# thread, ~40 ms with two threads under load).
_PARALLEL_ROWS = 256


def _threads(n_rows: int) -> int:
    """LightGBM ``num_threads`` for a prediction of ``n_rows``: one thread for small batches, else the cores
    divided among the service's worker processes (``SALESML_SERVE_WORKERS``, set by ``salesml serve
    --workers``; 1 outside the service), so that two workers do not each start a thread per core."""
    if n_rows < _PARALLEL_ROWS:
        return 1
    return max(1, (os.cpu_count() or 1) // env_positive_int("SALESML_SERVE_WORKERS", 1))


@dataclass(frozen=True)
class _LeanInput:
    """What :meth:`ScoringModel._matrix` needs to reproduce the pipeline's input to LightGBM exactly."""

    booster: Any
    categories: list[pd.Index]  # ToCategory's categories per categorical column
    remap: list[np.ndarray]  # ToCategory code (plus -1 last) -> the booster's pandas category code, -1 = none

    @classmethod
    def build(cls, model: ScoringModel, booster: Any) -> _LeanInput | None:
        steps = model.pipeline.named_steps
        pre = steps.get("prepare")
        if not isinstance(pre, ColumnTransformer) or not hasattr(pre, "transformers_"):
            return None
        fitted = {name: (trans, list(cols)) for name, trans, cols in pre.transformers_}
        if set(fitted) - {"num", "cat", "remainder"}:
            return None
        num, cat = fitted.get("num"), fitted.get("cat")
        if (num or ("passthrough", []))[1] != model.numeric or (cat or (None, []))[1] != model.categorical:
            return None
        if num is not None and not _is_identity(num[0]):
            return None
        if fitted.get("remainder", ("drop", []))[0] != "drop" and fitted["remainder"][1]:
            return None
        if model.categorical and not isinstance(cat[0], ToCategory):  # type: ignore[index]
            return None
        if list(booster.feature_name()) != model.features:
            return None
        booster_cats = booster.pandas_categorical or []
        if len(booster_cats) != len(model.categorical):
            return None
        categories, remap = [], []
        for j, col in enumerate(model.categorical):
            cats = list(cat[0].categories_[col])  # type: ignore[index]
            position = {c: i for i, c in enumerate(booster_cats[j])}
            categories.append(pd.Index(cats, dtype=object))
            # Index -1 (missing / unseen in ToCategory) picks the last entry: -1.
            remap.append(np.asarray([position.get(c, -1) for c in cats] + [-1], dtype=np.int64))
        return cls(booster, categories, remap)


def _is_identity(transformer: Any) -> bool:
    """A fitted ``"passthrough"`` (scikit-learn stores it as an identity FunctionTransformer)."""
    from sklearn.preprocessing import FunctionTransformer

    if isinstance(transformer, str):
        return transformer == "passthrough"
    return isinstance(transformer, FunctionTransformer) and transformer.func is None


def _fmt_numbers(values: np.ndarray) -> list[str]:
    """:func:`_fmt` for floats: ``missing`` for NaN, else 4 significant digits."""
    return ["missing" if v != v else f"{v:.4g}" for v in values.tolist()]


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return "missing"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


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


def _split(data: ClassifierData, config: TrainConfig) -> tuple[pd.Index, pd.Index, pd.Index, dict]:
    frame = data.frame
    y = frame[data.label_col]
    if config.split == "stratified":
        rest, test = train_test_split(
            frame.index, test_size=config.fractions[2], stratify=y, random_state=config.random_state
        )
        share = config.fractions[1] / (config.fractions[0] + config.fractions[1])
        train, calib = train_test_split(
            rest, test_size=share, stratify=y.loc[rest], random_state=config.random_state
        )
        info = {"split": "stratified", "seed": config.random_state}
        return pd.Index(train), pd.Index(calib), pd.Index(test), info
    times = frame[data.time_col]
    counts = times.value_counts().sort_index()
    cum = counts.cumsum() / counts.sum()
    f_train, f_cal = config.fractions[0], config.fractions[0] + config.fractions[1]
    uniq = counts.index
    if len(uniq) < 3:
        raise SalesmlError(
            f"a time split needs at least 3 distinct values of {data.time_col!r}; found {len(uniq)}"
        )
    # Each slice is a run of whole time values (all rows of one cutoff stay together).
    train_end = uniq[min(int(np.searchsorted(cum.to_numpy(), f_train)), len(uniq) - 3)]
    cal_end = uniq[
        min(max(int(np.searchsorted(cum.to_numpy(), f_cal)), uniq.get_loc(train_end) + 1), len(uniq) - 2)
    ]
    train_mask, cal_mask, test_mask = (
        times <= train_end,
        (times > train_end) & (times <= cal_end),
        times > cal_end,
    )
    cal_start, test_start = times[cal_mask].min(), times[test_mask].min()
    purged = {"train": 0, "calibration": 0}
    if data.purge is not None:
        # A training row's label window [t, t + purge] must end before the next slice begins.
        late_train = train_mask & (times + data.purge >= cal_start)
        late_cal = cal_mask & (times + data.purge >= test_start)
        purged = {"train": int(late_train.sum()), "calibration": int(late_cal.sum())}
        train_mask, cal_mask = train_mask & ~late_train, cal_mask & ~late_cal
    if data.label_time_col is not None:
        # The outcome must be known before the next slice begins (a deal closing later is not yet labelled).
        known = frame[data.label_time_col].where(frame[data.label_time_col].notna(), times)
        late_train = train_mask & (known >= cal_start)
        late_cal = cal_mask & (known >= test_start)
        purged["train"] += int(late_train.sum())
        purged["calibration"] += int(late_cal.sum())
        purged["train_by_label_time"] = int(late_train.sum())
        purged["calibration_by_label_time"] = int(late_cal.sum())
        train_mask, cal_mask = train_mask & ~late_train, cal_mask & ~late_cal
    info = {
        "split": "time",
        "time_col": data.time_col,
        "train": f"{times[train_mask].min()} .. {times[train_mask].max()}",
        "calibration": f"{times[cal_mask].min()} .. {times[cal_mask].max()}",
        "test": f"{times[test_mask].min()} .. {times[test_mask].max()}",
        "purged_rows": purged,
    }
    for name, mask in (("train", train_mask), ("calibration", cal_mask), ("test", test_mask)):
        if mask.sum() == 0 or y[mask].nunique() < 2:
            raise SalesmlError(
                f"the {name} slice ({info.get(name, '')}) has {int(mask.sum())} rows and not both classes; "
                "more history or other cutoffs are needed"
            )
    return frame.index[train_mask], frame.index[cal_mask], frame.index[test_mask], info


def _recency_weights(times: pd.Series, config: TrainConfig) -> np.ndarray | None:
    """``0.5 ** (age / halflife)``, age back from the latest of ``times`` (days for dates); None when off."""
    if config.recency_halflife is None or config.split != "time":
        return None
    if config.recency_halflife <= 0:
        raise SalesmlError(f"recency_halflife must be positive, not {config.recency_halflife}")
    age = times.max() - times
    if pd.api.types.is_timedelta64_dtype(age):
        age = age.dt.total_seconds() / 86400.0
    return np.power(0.5, age.to_numpy(dtype=float) / config.recency_halflife)


def _search_rows(t_tr: pd.Series, cal_start: Any, config: TrainConfig) -> np.ndarray | None:
    """Which train rows the search fits on with ``config.search_gap`` (a boolean mask); None when off."""
    if config.search_gap is None or config.split != "time":
        return None
    if not config.search_gap > 0:
        raise SalesmlError(f"search_gap must be positive, not {config.search_gap}")
    gap = config.search_gap
    if pd.api.types.is_datetime64_any_dtype(t_tr):
        gap = pd.Timedelta(days=config.search_gap)
    keep = (t_tr <= cal_start - gap).to_numpy()
    if not keep.any():
        keep = (t_tr == t_tr.min()).to_numpy()
    return keep


def _search(
    data: ClassifierData, config: TrainConfig, X_tr, y_tr, X_cal, y_cal, w_tr: np.ndarray | None = None
) -> tuple[dict[str, Any], float, int]:
    import optuna
    from sklearn.metrics import roc_auc_score

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: optuna.Trial) -> float:
        params = {
            "n_estimators": trial.suggest_int("n_estimators", 50, 600, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 4, 64, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 10, 300, log=True),
            "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 30.0, log=True),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
            "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        }
        pipe = _lgbm_pipeline(data, params, config).fit(X_tr, y_tr, model__sample_weight=w_tr)
        return roc_auc_score(y_cal, pipe.predict_proba(X_cal)[:, 1])

    sampler = optuna.samplers.TPESampler(seed=config.random_state)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    # A sensible default first, so even a one-trial budget is a reasonable model.
    study.enqueue_trial(
        {
            "n_estimators": 200,
            "learning_rate": 0.05,
            "num_leaves": 15,
            "min_child_samples": 50,
            "reg_lambda": 1.0,
            "colsample_bytree": 0.8,
            "subsample": 0.8,
        }
    )
    start = time.perf_counter()
    study.optimize(objective, n_trials=config.n_trials, timeout=config.timeout_s)
    return dict(study.best_params), time.perf_counter() - start, len(study.trials)


def _choose_calibration(
    p_cal: np.ndarray, y_cal: np.ndarray, seed: int, *, strictly_increasing: bool = False
) -> tuple[str, dict[str, float]]:
    """Brier of each method out of fold on the calibration slice; keep the best (none wins ties).

    ``strictly_increasing`` (refit mode): the calibrator is applied to a *refitted* model's scores, so it must
    keep their ranking: isotonic (steps fitted to the train-only model's scores, ties within a step) is left
    out, and a sigmoid only counts when its slope is positive in every fold and on the whole slice (a
    non-positive slope would flatten or reverse the refitted model's ranking).
    """
    folds = StratifiedKFold(n_splits=2, shuffle=True, random_state=seed)
    scores: dict[str, float] = {}
    methods = ("none", "sigmoid") if strictly_increasing else ("none", "sigmoid", "isotonic")
    for method in methods:
        errs = []
        for fit_idx, eval_idx in folds.split(p_cal, y_cal):
            cal = Calibrator(method).fit(p_cal[fit_idx], y_cal[fit_idx])  # type: ignore[arg-type]
            if strictly_increasing and method == "sigmoid" and not cal.increasing():
                errs.append(np.inf)
                continue
            errs.append(np.mean((cal.transform(p_cal[eval_idx]) - y_cal[eval_idx]) ** 2))
        scores[method] = float(np.mean(errs))
    if strictly_increasing and not Calibrator("sigmoid").fit(p_cal, y_cal).increasing():
        scores["sigmoid"] = float("inf")
    best = min(scores, key=lambda m: (scores[m] + (0 if m == "none" else 1e-5), m))
    return best, scores


def _choose_blend(
    p_tree: np.ndarray, p_logit: np.ndarray, y: np.ndarray, config: TrainConfig
) -> tuple[float, dict[str, Any]]:
    """LightGBM's share of the log-odds with the best calibration-slice ROC AUC (ties: the larger share).

    One share given is used as it is; a choice needs a calibration slice that can tell (``blend_min_rows``
    rows and 20 of each class), else LightGBM alone, and a gain of at least ``blend_min_gain`` over the
    largest share given (LightGBM alone by default), else that share.
    """
    from sklearn.metrics import roc_auc_score

    candidates = sorted({float(w) for w in config.blend_shares}, reverse=True)
    if not candidates or any(not 0.0 <= w <= 1.0 for w in candidates):
        raise SalesmlError(f"blend_shares must be one or more numbers in [0, 1], got {config.blend_shares}")
    if len(candidates) == 1:
        return candidates[0], {"lightgbm_share": candidates[0], "why": "fixed by blend_shares"}
    counts = np.bincount(y, minlength=2)
    if len(y) < config.blend_min_rows or counts.min() < 20:
        why = f"calibration slice too small to choose a blend ({len(y)} rows, {counts.min()} of the rarer class)"
        return 1.0, {"lightgbm_share": 1.0, "why": why}
    a, b = _logit(p_tree), _logit(p_logit)
    aucs = {w: float(roc_auc_score(y, w * a + (1.0 - w) * b)) for w in candidates}
    best, first = max(candidates, key=lambda w: (round(aucs[w], 10), w)), candidates[0]
    why = "best ROC AUC on the calibration slice"
    if best != first and aucs[best] - aucs[first] < config.blend_min_gain:
        why = (
            f"no share beats {first} by {config.blend_min_gain} ROC AUC on the calibration slice "
            f"(best {best}: {aucs[best] - aucs[first]:+.5f})"
        )
        best = first
    return best, {
        "lightgbm_share": best,
        "why": why,
        "calibration_auc": {str(w): round(v, 5) for w, v in aucs.items()},
    }


def _band_shares(config: TrainConfig) -> tuple[float, ...]:
    shares = config.band_shares or _default_shares(len(config.band_labels))
    if len(shares) != len(config.band_labels) or abs(sum(shares) - 1) > 1e-6:
        raise SalesmlError(f"band_shares {shares} must match band_labels {config.band_labels} and sum to 1")
    return shares


def _bands_at_own_shares(
    y: np.ndarray, p: np.ndarray, shares: tuple[float, ...], labels: Sequence[str]
) -> pd.DataFrame:
    """The band table of one slice with thresholds at the shares of the slice's own probabilities."""
    return band_table(y, p, ScoringModel.band_of(p, _band_thresholds(p, shares), labels), labels)


def _band_thresholds(p: np.ndarray, shares: tuple[float, ...]) -> list[float]:
    """Lower probability bounds of every band but the last, from the top share down."""
    cum = np.cumsum(shares)[:-1]
    return [float(np.quantile(p, 1 - c)) for c in cum]


def _rule_baseline(
    column: pd.Series,
    categorical: bool,
    pos: Mapping[str, np.ndarray],
    y_tr: np.ndarray,
    y_cal: np.ndarray,
    y_te: np.ndarray,
) -> tuple[np.ndarray, dict[str, float], dict[str, Any]]:
    """One column used as a score: test-slice probabilities, metrics and what was fitted.

    Numeric: the value, missing filled with the train-slice median, oriented on the train slice. Categorical
    (or any non-numeric column): the train-slice target rate of the value's level (missing is a level of its
    own; a level unseen in the train slice gets the train base rate). Either score is then isotonic-calibrated
    on the calibration slice; the rank metrics are those of the raw score (isotonic steps would create ties).
    """
    from sklearn.metrics import roc_auc_score

    if categorical or not pd.api.types.is_numeric_dtype(column):
        levels = column.astype("string").fillna("(missing)").astype(object).to_numpy()
        train = pd.Series(y_tr, index=levels[pos["train"]])
        rates = train.groupby(level=0).mean()
        base = float(y_tr.mean())
        s = pd.Series(levels).map(rates).fillna(base).to_numpy(dtype=float)
        sign = 1.0
        fitted: dict[str, Any] = {"column": column.name, "kind": "categorical", "base_rate": base}
        fitted["level_rates"] = {str(k): float(v) for k, v in rates.items()}
    else:
        score = pd.to_numeric(column, errors="coerce").astype(float)
        fill = float(score.iloc[pos["train"]].median())
        s = score.fillna(fill).to_numpy()
        sign = 1.0 if roc_auc_score(y_tr, s[pos["train"]]) >= 0.5 else -1.0
        fitted = {"column": column.name, "kind": "numeric", "sign": sign}
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(sign * s[pos["cal"]], y_cal)
    p = iso.predict(sign * s[pos["test"]])
    m = classification_metrics(y_te, p)
    raw = classification_metrics(y_te, sign * s[pos["test"]])
    m["roc_auc"], m["pr_auc"] = raw["roc_auc"], raw["pr_auc"]
    return p, m, fitted


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

    tr, cal, te, slices = _split(data, config)
    model_proto = ScoringModel(
        _lgbm_pipeline(data, {}, config),
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
    w_tr = _recency_weights(t_tr, config)
    search_rows = _search_rows(t_tr, frame[data.time_col].iloc[pos["cal"]].min(), config)
    if search_rows is None:
        best, seconds, n_trials = _search(data, config, X_tr, y_tr, X_cal, y_cal, w_tr)
    else:
        t_s = t_tr[search_rows]
        if len(np.unique(y_tr[search_rows])) < 2:
            raise SalesmlError(
                f"search_gap {config.search_gap}: the train rows it leaves ({t_s.min()} .. {t_s.max()}) hold "
                "only one class; choose a smaller gap or more history"
            )
        w_s = _recency_weights(t_s, config)
        best, seconds, n_trials = _search(
            data, config, X_tr[search_rows], y_tr[search_rows], X_cal, y_cal, w_s
        )
        slices["search_fit"] = f"{t_s.min()} .. {t_s.max()}"
        slices["search_gap"] = config.search_gap
    refit = config.refit == "train+calibration"
    X_fit = pd.concat([X_tr, X_cal]) if refit else X_tr
    y_fit = np.concatenate([y_tr, y_cal]) if refit else y_tr
    w_fit = _recency_weights(t_fit, config) if refit else w_tr
    pipe = _lgbm_pipeline(data, best, config).fit(X_tr, y_tr, model__sample_weight=w_tr)
    logit = _logistic_pipeline(data, config).fit(X_tr, y_tr, model__sample_weight=w_tr)
    p_logit_cal = logit.predict_proba(X_cal)[:, 1]
    # The blend share, calibrator and bands from the train-only fits' (out-of-sample) calibration-slice scores.
    raw_cal = pipe.predict_proba(X_cal)[:, 1]
    share, blend = _choose_blend(raw_cal, p_logit_cal, y_cal, config)
    linear = LinearPart(logit, data.numeric, data.categorical, X_tr) if share < 1.0 else None
    if linear is not None:
        raw_cal = ScoringModel(
            pipe, Calibrator("none"), data.numeric, data.categorical, config.band_labels, [], 3, linear, share
        ).predict_proba(X_cal)
    method, cal_scores = _choose_calibration(raw_cal, y_cal, config.random_state, strictly_increasing=refit)
    calibrator = Calibrator(method).fit(raw_cal, y_cal)  # type: ignore[arg-type]
    p_cal = calibrator.transform(raw_cal)
    logit_method, _ = _choose_calibration(p_logit_cal, y_cal, config.random_state, strictly_increasing=refit)
    logit_cal = Calibrator(logit_method).fit(p_logit_cal, y_cal)  # type: ignore[arg-type]
    if refit:  # the model and the logistic baseline alike, so the comparison stays fair
        pipe = _lgbm_pipeline(data, best, config).fit(X_fit, y_fit, model__sample_weight=w_fit)
        logit = _logistic_pipeline(data, config).fit(X_fit, y_fit, model__sample_weight=w_fit)
        if linear is not None:
            linear = LinearPart(logit, data.numeric, data.categorical, X_fit)
    shares = _band_shares(config)
    model = ScoringModel(
        pipe,
        calibrator,
        data.numeric,
        data.categorical,
        config.band_labels,
        _band_thresholds(p_cal, shares),
        linear=linear,
        lgbm_share=share,
    )
    if band_population is not None:
        model.band_thresholds = _band_thresholds(model.predict_proba(band_population), shares)

    p_te = model.predict_proba(X_te)
    metrics = {"model": classification_metrics(y_te, p_te)}
    predictions = {"model": p_te}
    baselines: dict[str, Any] = {}
    predictions["logistic"] = logit_cal.transform(logit.predict_proba(X_te)[:, 1])
    metrics["logistic"] = classification_metrics(y_te, predictions["logistic"])
    baselines["logistic"] = {"pipeline": logit, "calibration": logit_method}
    for name, col in data.rule_baselines.items():
        predictions[name], metrics[name], baselines[name] = _rule_baseline(
            frame[col], col in data.categorical, pos, y_tr, y_cal, y_te
        )

    if band_population is None:
        bands_cal = band_table(y_cal, p_cal, model.band(p_cal), config.band_labels)
        bands_test = band_table(y_te, p_te, model.band(p_te), config.band_labels)
    else:
        bands_cal = _bands_at_own_shares(y_cal, p_cal, shares, config.band_labels)
        bands_test = _bands_at_own_shares(y_te, p_te, shares, config.band_labels)
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


# --- reporting and MLflow ------------------------------------------------------------------------------------


def metrics_table(result: TrainedClassifier) -> pd.DataFrame:
    return pd.DataFrame(result.metrics).T.rename_axis("model").reset_index()


def plot_diagnostics(result: TrainedClassifier, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    tp = result.test_predictions
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    for name in [c.removeprefix("p_") for c in tp.columns if c.startswith("p_")]:
        rel = reliability_table(tp["label"], tp[f"p_{name}"])
        ax.plot(rel["predicted"], rel["observed"], marker="o", label=name)
    ax.set(xlabel="mean predicted probability", ylabel="observed rate", title="Reliability (test slice)")
    ax.legend()
    paths.append(folder / "reliability.png")
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name in [c.removeprefix("p_") for c in tp.columns if c.startswith("p_")]:
        order = np.argsort(-tp[f"p_{name}"].to_numpy(), kind="stable")
        gains = np.cumsum(tp["label"].to_numpy()[order]) / max(1, tp["label"].sum())
        ax.plot(np.arange(1, len(order) + 1) / len(order), gains, label=name)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set(
        xlabel="share of rows, highest score first",
        ylabel="share of positives captured",
        title="Cumulative gains (lift)",
    )
    ax.legend()
    paths.append(folder / "lift.png")
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)

    imp = result.importance.head(15).iloc[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(imp) + 1))
    ax.barh(imp["feature"], imp["mean_abs_contribution"])
    ax.set(xlabel="mean |contribution| (log-odds), test slice", title="Factor importance")
    paths.append(folder / "importance.png")
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)
    return paths


def decision_report(result: TrainedClassifier) -> str:
    """A short human-readable account of what was chosen and why."""
    m = result.metrics
    lines = [
        f"# {result.data.label_col} classifier",
        "",
        f"Split: {json.dumps(result.slices, default=str)}",
        f"Search: {result.slices.get('trials')} trials in {result.search_seconds:.1f}s; best {json.dumps(result.best_params)}",
        f"Calibration: {result.calibration_report['chosen']} (out-of-fold Brier on the calibration slice: "
        + ", ".join(
            f"{k.removeprefix('brier_')} {v:.4f}"
            for k, v in result.calibration_report.items()
            if k.startswith("brier_")
        )
        + ")",
        f"Blend: LightGBM share {result.blend.get('lightgbm_share', 1.0)} of the log-odds, the rest logistic "
        f"regression ({result.blend.get('why', 'LightGBM alone')}; calibration-slice ROC AUC by share: "
        f"{result.blend.get('calibration_auc', {})})",
        f"Band thresholds (lower bounds, shares of the {result.band_basis}): {dict(zip(result.config.band_labels, result.model.band_thresholds, strict=False))}",
        "",
        "Test slice:",
        metrics_table(result).to_string(index=False, float_format=lambda v: f"{v:.4f}"),
        "",
        "Bands on the test slice:",
        result.bands_test.to_string(index=False, float_format=lambda v: f"{v:.4f}"),
    ]
    best_base = max((k for k in m if k != "model"), key=lambda k: m[k]["roc_auc"], default=None)
    if best_base:
        lines.append(
            f"\nModel vs best baseline ({best_base}): ROC AUC {m['model']['roc_auc']:.4f} vs {m[best_base]['roc_auc']:.4f}, "
            f"Brier {m['model']['brier']:.4f} vs {m[best_base]['brier']:.4f}"
        )
    return "\n".join(lines)


def _pyfunc_class():
    import mlflow.pyfunc

    class _ScoringPyfunc(mlflow.pyfunc.PythonModel):
        def load_context(self, context) -> None:  # noqa: ANN001
            import joblib

            self.scoring = joblib.load(context.artifacts["scoring_model"])

        def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:  # noqa: ANN001
            return self.scoring.predict(model_input).reset_index(drop=True)

    return _ScoringPyfunc


def log_and_register(
    result: TrainedClassifier,
    registered_name: str,
    dataset: Any,
    *,
    promote: bool = False,
    data_cutoff: str | None = None,
    extra_artifacts: Mapping[str, pd.DataFrame | str | Path] | None = None,
    extra_metrics: Mapping[str, float] | None = None,
    extra_params: Mapping[str, Any] | None = None,
    run_name: str | None = None,
) -> tuple[str, Any]:
    """One MLflow run: params, spec + fingerprint, metrics of the model and every baseline, tables and plots as
    artifacts, the model as a pyfunc (signature + input example), registered under ``registered_name``.

    Returns the registered version and the gate decision (None when ``promote`` is False).
    """
    import joblib
    import mlflow
    from mlflow.models import infer_signature

    from training.registry import configure, eval_key, promote_if_better, tag_version

    configure(registered_name)
    spec = dataset.spec
    fingerprint = spec.fingerprint()
    key = eval_key(
        fingerprint,
        registered_name,
        result.config.split,
        result.config.random_state,
        json.dumps(result.slices, sort_keys=True, default=str),
    )
    with (
        mlflow.start_run(run_name=run_name or f"{registered_name}-{spec.name}") as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        folder = Path(tmp)
        mlflow.set_tags(
            {
                "salesml.model": registered_name,
                "salesml.dataset": spec.name,
                "salesml.spec_fingerprint": fingerprint,
            }
        )
        params = {
            "dataset": spec.name,
            "spec_fingerprint": fingerprint,
            "features_numeric": ",".join(result.data.numeric),
            "features_categorical": ",".join(result.data.categorical),
            "calibration": result.calibration_report["chosen"],
            "blend_lightgbm_share": result.blend.get("lightgbm_share", 1.0),
            "band_thresholds": json.dumps(result.model.band_thresholds),
            "band_basis": result.band_basis,
            **{f"config.{k}": v for k, v in asdict(result.config).items()},
            **{f"best.{k}": v for k, v in result.best_params.items()},
            **{f"slice.{k}": v for k, v in result.slices.items()},
            **(extra_params or {}),
        }
        mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})
        flat = {
            f"{model}_{metric}": value for model, ms in result.metrics.items() for metric, value in ms.items()
        }
        flat.update(result.headline)  # roc_auc, brier, ... of the model itself: the gated names
        flat.update(extra_metrics or {})
        mlflow.log_metrics({k: float(v) for k, v in flat.items() if v == v})
        mlflow.log_text(dataset.spec_path.read_text(), "spec.yaml")
        tables = {
            "metrics.csv": metrics_table(result),
            "bands_validation.csv": result.bands_validation,
            "bands_test.csv": result.bands_test,
            "importance.csv": result.importance,
            "test_predictions.parquet": result.test_predictions,
        }
        for name, value in (extra_artifacts or {}).items():
            if isinstance(value, pd.DataFrame):
                tables[name] = value
            else:
                mlflow.log_artifact(str(value))
        for name, table in tables.items():
            path = folder / name
            table.to_parquet(path, index=False) if name.endswith(".parquet") else table.to_csv(
                path, index=False
            )
            mlflow.log_artifact(str(path), artifact_path="tables")
        for path in plot_diagnostics(result, folder):
            mlflow.log_artifact(str(path), artifact_path="plots")
        mlflow.log_text(decision_report(result), "decision_report.md")

        joblib.dump(result.model, folder / "scoring_model.joblib")
        example = result.data.frame[result.model.features].head(5)
        example = result.model.prepare(example)
        signature = infer_signature(example, result.model.predict(example).reset_index(drop=True))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=_pyfunc_class()(),
            artifacts={"scoring_model": str(folder / "scoring_model.joblib")},
            signature=signature,
            input_example=example,
            registered_model_name=registered_name,
        )
        version = str(info.registered_model_version)
        run_id = run.info.run_id
    tag_version(
        registered_name,
        version,
        key,
        {k: result.headline[k] for k in ("roc_auc", "pr_auc", "brier", "ece", "lift_top_decile")},
        dataset=spec.name,
        dataset_spec=str(dataset.spec_path),
        spec_fingerprint=fingerprint,
        run_id=run_id,
        data_cutoff=data_cutoff or "",
    )
    decision = promote_if_better(registered_name, version) if promote else None
    return version, decision


def load_scoring_model(model_uri: str) -> ScoringModel:
    """The :class:`ScoringModel` inside a logged classifier (``models:/churn_risk@champion``, a run URI, ...).

    Call its ``predict`` with raw feature frames: it types the columns itself, so integer columns need no cast
    (MLflow's pyfunc schema enforcement would refuse int64 where the signature says double).
    """
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().scoring
