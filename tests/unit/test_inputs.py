"""Both products' input checks (features.inputs): what the service answers for a bad item, word for word."""

from __future__ import annotations

import pytest

from features.inputs import churn_feature_problem, lead_record_errors
from features.spec import TableSpec

FEATURES = ["recency_days", "segment"]
NUMERIC = ["recency_days"]


@pytest.mark.parametrize(
    ("sent", "problem"),
    [
        ({"recency_days": 3, "segment": "a", "revenue_12m": "12.5"}, None),
        ({"recency_days": None, "segment": None}, None),
        ({"recency_days": True}, None),
        (
            {"colour": 1, "recency_days": 2},
            "unknown feature(s) ['colour']; expected some of ['recency_days', 'segment'] (and revenue_12m)",
        ),
        ({"recency_days": "soon"}, "feature 'recency_days' must be a number, got 'soon'"),
        ({"revenue_12m": float("inf")}, "feature 'revenue_12m' must be a finite number, got inf"),
        ({"segment": float("nan")}, "feature 'segment' must be a text (a category), got nan"),
    ],
)
def test_churn_feature_problem_names_the_feature(sent: dict, problem: str | None) -> None:
    assert churn_feature_problem(sent, FEATURES, NUMERIC) == problem


def test_lead_record_errors_by_position() -> None:
    table = TableSpec.model_validate(
        {
            "role": "leads",
            "path": "leads.csv",
            "columns": {"lead_id": "id", "outcome": "status", "score": "sc"},
            "types": {"score": "numeric"},
            "outcome_values": {"won": ["Won"], "lost": ["Lost"], "open": ["Open"]},
        }
    )
    errors = lead_record_errors(
        [{"lead_id": "a", "score": 1}, {"score": 2}, {"lead_id": "c", "score": "high"}, "x"], table
    )
    assert errors == {
        1: "lead #1: missing 'lead_id' (every lead in a batch needs an id)",
        2: "lead c: field 'score' must be a number, got 'high'",
        3: "lead #3: expected an object of attributes, got str",
    }
