"""What the classifier trainer is given: the examples (:class:`ClassifierData`) and how to train them
(:class:`TrainConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

__all__ = ["MIN_ROWS_PER_CLASS", "ClassifierData", "TrainConfig"]


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
