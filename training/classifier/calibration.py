"""Probability calibration (none / sigmoid / isotonic) and the log-odds helpers."""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import special
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

__all__ = ["Calibrator", "logit", "sigmoid"]


_EPS = 1e-6


class Calibrator:
    """Maps raw probabilities to calibrated ones: ``none``, ``sigmoid`` (Platt on the logit) or ``isotonic``."""

    def __init__(self, method: Literal["none", "sigmoid", "isotonic"]):
        self.method = method

    def fit(self, p: np.ndarray, y: np.ndarray) -> Calibrator:
        if self.method == "sigmoid":
            self.model_ = LogisticRegression(C=1e6, max_iter=1000).fit(logit(p)[:, None], y)
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
            # LogisticRegression.predict_proba's own arithmetic (scikit-learn 1.9: expit(X @ coef.T + intercept)
            # for two classes) without its input validation, ~0.5 ms a call (tests/unit/test_classifier.py)
            model = self.model_
            return special.expit(logit(p)[:, None] @ model.coef_.T + model.intercept_).reshape(-1)
        if self.method == "isotonic":
            return np.clip(self.model_.predict(p), 0.0, 1.0)
        return np.asarray(p)


def sigmoid(margin: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-margin))


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))
