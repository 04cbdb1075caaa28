"""The training profile logged with every churn and lead version: what ``salesml monitor`` measures drift against.

The features on the training rows (every labelled row the model learnt from) and the calibrated score on the
untouched test slice (out-of-sample, as the scores served later are), each binned once at training
(:class:`~training.monitor.drift.FeatureProfile`), so later samples are compared on the same bins.

A churn feature's percentile rank within its cutoff (``*_rank_in_cutoff``) is left out: it is uniform at every
cutoff by construction, and where its raw feature has ties (many customers with no purchase in 180 days) the tied
rank moves with the share of ties and crosses bin edges as a whole, which PSI reports as a large shift of a
feature that did not change in any way the raw one (which is profiled) does not already show.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from features.churn_columns import RANK_SUFFIX
from training.monitor.drift import profile_frame

__all__ = ["REFERENCE_ARTIFACT", "reference_profile"]

REFERENCE_ARTIFACT = "monitor/reference.json"


def reference_profile(frame: pd.DataFrame, features: Sequence[str], scores: np.ndarray) -> dict[str, Any]:
    """JSON-ready profiles of ``features`` of ``frame`` and of the probabilities ``scores``."""
    present = [f for f in features if f in frame.columns and not f.endswith(RANK_SUFFIX)]
    profiles = profile_frame(frame, present)
    score = profile_frame(pd.DataFrame({"probability": np.asarray(scores, dtype=float)}))["probability"]
    return {
        "features": {name: p.to_dict() for name, p in profiles.items()},
        "score": score.to_dict(),
        "rows": int(len(frame)),
    }
