"""The LightGBM fast path: building the booster's input matrix directly (no pipeline), and how many threads a
prediction uses."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer

from features.settings import env_positive_int
from training.classifier.pipelines import ToCategory

__all__ = ["PARALLEL_ROWS", "LeanInput", "prediction_threads"]


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
        return cls(booster, categories, remap)


def _is_identity(transformer: Any) -> bool:
    """A fitted ``"passthrough"`` (scikit-learn stores it as an identity FunctionTransformer)."""
    from sklearn.preprocessing import FunctionTransformer

    if isinstance(transformer, str):
        return transformer == "passthrough"
    return isinstance(transformer, FunctionTransformer) and transformer.func is None
