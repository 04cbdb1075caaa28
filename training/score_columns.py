"""The fixed names of a churn or lead score, written once: the Parquet / CSV files, the SQL table, the HTTP answers
and the notebooks all use these, and :func:`reason_lists` is the one place that turns the model's reason arrays
into the published reasons.

============== =====================================================================================================
name           meaning
============== =====================================================================================================
customer_id    churn: the customer (the key); leads: ``lead_id``
probability    churn: no purchase within ``horizon_days``; leads: the lead or deal converts (0..1, calibrated)
band           churn: risk tier ``high`` / ``medium`` / ``low``; leads: grade ``A`` .. ``D``
reasons        the top 3 signed contributions: ``[{"feature", "contribution" (log-odds), "value"}, ...]``; JSON
               text in files and SQL, a list in HTTP answers
value          what the entity is worth: churn, the trailing 12-month revenue; leads, the deal's value (empty
               when the data set has none)
expected_value ``probability x value``: churn, the revenue expected to be lost; leads, the value expected to be won
as_of          the time of the data the score was computed from (the feature cut-off / the decision time)
horizon_days   churn only: the window ``probability`` looks ahead
dataset        the data set the model was trained on (and the score computed from)
model_name     the registered model (``churn_risk.<dataset>``, ``lead_score.<dataset>``)
model_version  the registered version that made the score
scored_at      SQL only: when the batch was written (UTC)
============== =====================================================================================================
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "AS_OF",
    "BAND",
    "DATASET",
    "EXPECTED_VALUE",
    "HORIZON_DAYS",
    "MODEL_NAME",
    "MODEL_VERSION",
    "PROBABILITY",
    "REASONS",
    "SCORED_AT",
    "SCORE_COLUMNS",
    "VALUE",
    "reason_lists",
    "reasons_from_json",
    "reasons_json",
]

PROBABILITY = "probability"
BAND = "band"
REASONS = "reasons"
VALUE = "value"
EXPECTED_VALUE = "expected_value"
AS_OF = "as_of"
HORIZON_DAYS = "horizon_days"
DATASET = "dataset"
MODEL_NAME = "model_name"
MODEL_VERSION = "model_version"
SCORED_AT = "scored_at"
# The published columns after the key, in order (``horizon_days`` for churn only).
SCORE_COLUMNS = (PROBABILITY, BAND, REASONS, VALUE, EXPECTED_VALUE, AS_OF, DATASET, MODEL_NAME, MODEL_VERSION)

Reason = dict[str, Any]  # {"feature": str, "contribution": float, "value": str}


def reason_lists(scored: Mapping[str, Any], n: int) -> list[list[Reason]]:
    """Per row, the reasons of :meth:`~training.classifier.ScoringModel.score`'s arrays (``reason_k``,
    ``reason_k_contribution``, ``reason_k_value``, k = 1, 2, ...), strongest first."""
    columns = []
    k = 1
    while f"reason_{k}" in scored:
        columns.append(
            (
                [str(v) for v in scored[f"reason_{k}"]],
                np.asarray(scored[f"reason_{k}_contribution"], dtype=float).tolist(),
                [str(v) for v in scored[f"reason_{k}_value"]],
            )
        )
        k += 1
    return [[{"feature": f[j], "contribution": c[j], "value": v[j]} for f, c, v in columns] for j in range(n)]


def reasons_json(reasons: Sequence[Sequence[Reason]]) -> list[str]:
    """The reasons of each row as JSON text (files and SQL); contributions rounded to 1e-6."""
    return [
        json.dumps([{**r, "contribution": round(float(r["contribution"]), 6)} for r in row])
        for row in reasons
    ]


def reasons_from_json(text: str | None) -> list[Reason]:
    """A ``reasons`` cell of a file or table back as a list (empty for a missing cell)."""
    if text is None or (isinstance(text, float) and text != text) or text == "":
        return []
    return list(json.loads(text))
