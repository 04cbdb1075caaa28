"""The two scikit-learn pipelines (LightGBM on native categoricals; the logistic baseline) and the logistic
pipeline read as per-feature log-odds contributions (:class:`LinearPart`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from features.errors import SalesmlError
from training.classifier.config import ClassifierData, TrainConfig

__all__ = ["LinearPart", "ToCategory", "lgbm_pipeline", "logistic_pipeline"]


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


def lgbm_pipeline(data: ClassifierData, params: Mapping[str, Any], config: TrainConfig) -> Pipeline:
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


def logistic_pipeline(data: ClassifierData, config: TrainConfig) -> Pipeline:
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


class LinearPart:
    """A fitted :func:`logistic_pipeline` as per-feature log-odds contributions that add up to its log-odds.

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
        return self.from_prepared(np.asarray(self.pipeline.named_steps["prepare"].transform(X), dtype=float))

    def from_prepared(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`margin_and_contributions` of columns already prepared (:class:`~training.classifier.lean.LeanLinear`)."""
        C = (Z - self.center) * self.coef
        return self.base + C.sum(axis=1), C @ self.assign


def _column_owners(prepare: ColumnTransformer, numeric: list[str], categorical: list[str]) -> np.ndarray:
    """For each column :func:`logistic_pipeline` prepares, the index (into numeric + categorical) of its feature.

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
