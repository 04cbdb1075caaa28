"""Choices made on the calibration slice: the calibration method, the LightGBM / logistic blend, the band
thresholds; and the rule baselines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import StratifiedKFold

from features.errors import SalesmlError
from training.classifier.calibration import Calibrator, logit
from training.classifier.config import TrainConfig
from training.classifier.scoring import ScoringModel
from training.metrics import band_table, classification_metrics

__all__ = [
    "bands_at_own_shares",
    "choose_blend",
    "choose_calibration",
    "resolved_band_shares",
    "rule_baseline",
    "thresholds_at_shares",
]


def _default_shares(n: int) -> tuple[float, ...]:
    return {2: (0.2, 0.8), 3: (0.1, 0.3, 0.6), 4: (0.1, 0.2, 0.3, 0.4)}.get(n, tuple([1.0 / n] * n))


def choose_calibration(
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


def choose_blend(
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
    a, b = logit(p_tree), logit(p_logit)
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


def resolved_band_shares(config: TrainConfig) -> tuple[float, ...]:
    shares = config.band_shares or _default_shares(len(config.band_labels))
    if len(shares) != len(config.band_labels) or abs(sum(shares) - 1) > 1e-6:
        raise SalesmlError(f"band_shares {shares} must match band_labels {config.band_labels} and sum to 1")
    return shares


def bands_at_own_shares(
    y: np.ndarray, p: np.ndarray, shares: tuple[float, ...], labels: Sequence[str]
) -> pd.DataFrame:
    """The band table of one slice with thresholds at the shares of the slice's own probabilities."""
    return band_table(y, p, ScoringModel.band_of(p, thresholds_at_shares(p, shares), labels), labels)


def thresholds_at_shares(p: np.ndarray, shares: tuple[float, ...]) -> list[float]:
    """Lower probability bounds of every band but the last, from the top share down."""
    cum = np.cumsum(shares)[:-1]
    return [float(np.quantile(p, 1 - c)) for c in cum]


def rule_baseline(
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
