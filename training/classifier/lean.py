"""The LightGBM fast path: building the booster's input matrix directly (no pipeline), and how many threads a
prediction uses."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer

from features.settings import env_positive_int
from training.classifier.pipelines import ToCategory

__all__ = ["PARALLEL_ROWS", "LeanInput", "LeanLinear", "prediction_threads"]


# Below this many rows LightGBM predicts on one thread: an OpenMP team for a handful of rows costs more than it
# saves, and on a busy machine its barrier waits for a descheduled thread (measured: 0.03 ms for one row on one
# thread, ~40 ms with two threads under load).
PARALLEL_ROWS = 256


def prediction_threads(n_rows: int) -> int:
    """LightGBM ``num_threads`` for a prediction of ``n_rows``: one thread for small batches, else the cores
    divided among the service's worker processes (``SALESML_SERVE_WORKERS``, set by ``salesml serve
    --workers``; 1 outside the service), so that two workers do not each start a thread per core."""
    if n_rows < PARALLEL_ROWS:
        return 1
    return max(1, (os.cpu_count() or 1) // env_positive_int("SALESML_SERVE_WORKERS", 1))


@dataclass(frozen=True)
class LeanInput:
    """What :class:`~training.classifier.scoring.ScoringModel`'s lean path needs to reproduce the pipeline's input to LightGBM exactly."""

    booster: Any
    categories: list[pd.Index]  # ToCategory's categories per categorical column
    remap: list[np.ndarray]  # ToCategory code (plus -1 last) -> the booster's pandas category code, -1 = none
    code_of: list[dict[str, float]]  # per categorical column: text -> the booster's code (unseen: not a key)

    @classmethod
    def build(
        cls, model: Any, booster: Any
    ) -> LeanInput | None:  # model: a ScoringModel (scoring imports lean)
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
        code_of = [
            {str(c): float(code) for c, code in zip(cats, r[:-1], strict=True) if code >= 0}
            for cats, r in zip(categories, remap, strict=True)
        ]
        return cls(booster, categories, remap, code_of)


def _is_identity(transformer: Any) -> bool:
    """A fitted ``"passthrough"`` (scikit-learn stores it as an identity FunctionTransformer)."""
    from sklearn.preprocessing import FunctionTransformer

    if isinstance(transformer, str):
        return transformer == "passthrough"
    return isinstance(transformer, FunctionTransformer) and transformer.func is None


@dataclass(frozen=True)
class LeanLinear:
    """The logistic part's preparation (:func:`~training.classifier.pipelines.logistic_pipeline`: median imputer
    with missing indicators and a standard scaler on numbers; ``(missing)`` for missing text and a one-hot
    encoder with infrequent categories) done on arrays, giving the pipeline's columns bit for bit.

    A frame of a few rows costs scikit-learn's checks and conversions per call (~7 ms for one lead with a dozen
    features); this costs a look-up per text and a few array operations.
    """

    kept: np.ndarray  # numeric features the imputer keeps (it drops those without a value in the fitted rows)
    medians: np.ndarray  # their medians
    indicated: np.ndarray  # numeric features with a missing indicator column
    mean: np.ndarray  # the scaler's, over kept + indicator columns
    scale: np.ndarray
    onehot: list[dict[str, np.ndarray]]  # per categorical feature: text -> its one-hot columns
    unseen: list[np.ndarray]  # per categorical feature: the columns of a text the encoder never saw
    fill: str  # the text imputed for a missing value

    @classmethod
    def build(cls, prepare: Any, numeric: list[str], categorical: list[str]) -> LeanLinear | None:
        """From the fitted ``ColumnTransformer`` of the logistic pipeline, or None when it is not the usual one."""
        fitted = {name: (trans, list(cols)) for name, trans, cols in getattr(prepare, "transformers_", [])}
        if set(fitted) - {"num", "cat", "remainder"} or (fitted.get("remainder", ("drop", []))[0] != "drop"):
            return None
        names = [name for name, _, _ in prepare.transformers_ if name != "remainder"]
        if names != [n for n, cols in (("num", numeric), ("cat", categorical)) if cols]:
            return None
        kept = medians = indicated = np.zeros(0)
        mean = scale = np.zeros(0)
        if numeric:
            num, cols = fitted["num"]
            steps = getattr(num, "named_steps", {})
            imputer, scaler = steps.get("simpleimputer"), steps.get("standardscaler")
            if cols != numeric or list(steps) != ["simpleimputer", "standardscaler"]:
                return None
            if imputer.strategy != "median" or not (scaler.with_mean and scaler.with_std):
                return None
            stats = np.asarray(imputer.statistics_, dtype=np.float64)
            kept = np.flatnonzero(~np.isnan(stats))
            medians = stats[kept]
            indicated = (
                np.asarray(imputer.indicator_.features_, dtype=np.int64)
                if imputer.indicator_ is not None
                else np.zeros(0, dtype=np.int64)
            )
            mean, scale = np.asarray(scaler.mean_), np.asarray(scaler.scale_)
        onehot, unseen, fill = [], [], "(missing)"
        if categorical:
            cat, cols = fitted["cat"]
            steps = getattr(cat, "named_steps", {})
            if cols != categorical or list(steps) != ["simpleimputer", "onehotencoder"]:
                return None
            imputer, ohe = steps["simpleimputer"], steps["onehotencoder"]
            if imputer.strategy != "constant" or ohe.drop is not None:
                return None
            fill = imputer.fill_value
            # Each feature's columns for each of its categories (and for an unseen text), read off the encoder.
            cats = [list(c) for c in ohe.categories_]
            rows = max(len(c) for c in cats) + 1
            probe = np.empty((rows, len(cats)), dtype=object)
            for j, c in enumerate(cats):
                probe[:, j] = [*c, *[c[0]] * (rows - len(c) - 1), "\x00salesml-unseen\x00"]
            with warnings.catch_warnings():  # the unseen probe is unknown on purpose
                warnings.simplefilter("ignore")
                out = np.asarray(ohe.transform(probe), dtype=np.float64)
            start = 0
            infrequent = getattr(ohe, "infrequent_categories_", [None] * len(cats))
            for c, rare in zip(cats, infrequent, strict=True):
                width = len(c) - (len(rare) - 1 if rare is not None else 0)
                block = out[:, start : start + width]
                onehot.append({str(v): block[i].copy() for i, v in enumerate(c)})
                unseen.append(block[-1].copy())
                start += width
            if start != out.shape[1]:
                return None
        return cls(kept, medians, indicated, mean, scale, onehot, unseen, fill)

    def transform(self, numbers: np.ndarray, texts: np.ndarray) -> np.ndarray:
        """The pipeline's prepared columns for rows of numeric features (float, NaN missing) and texts (np.nan
        missing)."""
        blocks = []
        if len(self.mean):
            X = numbers[:, self.kept].copy()
            missing = np.isnan(X)
            X[missing] = np.broadcast_to(self.medians, X.shape)[missing]
            Z = np.hstack([X, np.isnan(numbers[:, self.indicated]).astype(np.float64)])
            Z -= self.mean
            Z /= self.scale
            blocks.append(Z)
        for j, (rows, at) in enumerate(self._tables):
            unseen = len(rows) - 1  # the last row: a text the encoder never saw
            pos = [at.get(self.fill if v is np.nan or v != v else str(v), unseen) for v in texts[:, j]]
            blocks.append(rows[np.asarray(pos, dtype=np.int64)])
        return np.hstack(blocks) if blocks else np.zeros((len(numbers), 0))

    @cached_property
    def _tables(self) -> list[tuple[np.ndarray, dict[str, int]]]:
        """Per categorical feature, its one-hot rows stacked (the unseen text's last) and text -> row: a batch's
        columns are then one take, not a stack of row vectors."""
        tables = []
        for table, unseen in zip(self.onehot, self.unseen, strict=True):
            texts = list(table)
            rows = np.vstack([*(table[t] for t in texts), unseen]) if texts else unseen[None, :]
            tables.append((rows, {t: i for i, t in enumerate(texts)}))
        return tables
