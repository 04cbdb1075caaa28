"""The training profile logged with every churn and lead version: what ``salesml monitor`` measures drift against.

The features on the training rows (every labelled row the model learnt from) and the calibrated score on the
untouched test slice (out-of-sample, as the scores served later are), each binned once at training
(:class:`~training.monitor.drift.FeatureProfile`), so later samples are compared on the same bins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from training.monitor.drift import profile_frame

__all__ = ["REFERENCE_ARTIFACT", "reference_profile"]

REFERENCE_ARTIFACT = "monitor/reference.json"


def reference_profile(frame: pd.DataFrame, features: Sequence[str], scores: np.ndarray) -> dict[str, Any]:
    """JSON-ready profiles of ``features`` of ``frame`` and of the probabilities ``scores``."""
    present = [f for f in features if f in frame.columns]
    profiles = profile_frame(frame, present)
    score = profile_frame(pd.DataFrame({"probability": np.asarray(scores, dtype=float)}))["probability"]
    return {
        "features": {name: p.to_dict() for name, p in profiles.items()},
        "score": score.to_dict(),
        "rows": int(len(frame)),
    }
