"""The leakage audit flags what looks like a leak, keeps the rest, and honours keep_despite_audit."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.audit import AuditThresholds, audit_leads, audit_table_rich
from features.leads import DECISION_TIME, LABEL, LeadSet, build_lead_set
from features.load import load_dataset


def _lead_set(n: int = 3000, seed: int = 0, time_kind: str = "none") -> LeadSet:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(float)
    useful = y * 0.8 + rng.normal(0, 1, n)  # honest signal, AUC about 0.7
    leak = np.where(rng.random(n) < 0.95, y, 1 - y)  # the outcome written back: AUC about 0.95
    # A field written mostly for converted leads (filled 70 % vs 20 %), informative where filled.
    filled = rng.random(n) < np.where(y == 1, 0.7, 0.2)
    assessment = np.where(filled, np.where(rng.random(n) < 0.5 + 0.3 * (2 * y - 1), "good", "bad"), None)
    frame = pd.DataFrame(
        {
            "lead_id": [f"L{i}" for i in range(n)],
            DECISION_TIME: np.arange(1, n + 1),
            LABEL: y,
            "useful": useful,
            "noise": rng.normal(0, 1, n),
            "leak": leak,
            "assessment": assessment,
            "colour": rng.choice(["red", "blue"], n),
        }
    )
    return LeadSet(
        frame=frame,
        numeric=["useful", "noise", "leak"],
        categorical=["assessment", "colour"],
        time_kind=time_kind,  # type: ignore[arg-type]
        excluded={"duration": "declared post_outcome in the spec: known only after the outcome"},
    )


def test_audit_flags_leaks_and_keeps_honest_features() -> None:
    result = audit_leads(_lead_set())
    table = result.table.set_index("feature")
    assert table.loc["leak", "auc"] >= 0.9
    assert set(result.flagged) == {"leak", "assessment"}, table[["status", "auc", "fill_ratio", "reason"]]
    assert table.loc["assessment", "fill_ratio"] > 2.5
    assert result.numeric == ["useful", "noise"] and result.categorical == ["colour"]
    assert 0.6 < table.loc["useful", "auc"] < 0.85
    assert abs(table.loc["noise", "auc"] - 0.5) < 0.05
    assert table.loc["duration", "status"] == "excluded"
    assert {"leak", "assessment", "duration"} <= set(result.excluded)
    assert audit_table_rich(result).row_count == len(table)


def test_keep_despite_audit_keeps_a_flagged_column() -> None:
    result = audit_leads(_lead_set(), keep_despite_audit=["leak"])
    table = result.table.set_index("feature")
    assert table.loc["leak", "status"] == "kept despite audit"
    assert "leak" in result.numeric and "leak" in result.flagged and "leak" not in result.excluded


def test_threshold_is_a_parameter_and_time_relation_is_measured() -> None:
    result = audit_leads(_lead_set(time_kind="row_order"), thresholds=AuditThresholds(auc=0.99))
    table = result.table.set_index("feature")
    assert "leak" not in result.flagged  # 0.95 < 0.99
    assert table.loc["useful", "time_corr"] == table.loc["useful", "time_corr"]  # measured (not NaN)


def test_audit_flags_activities_logged_after_the_outcome(small_synthetic_spec) -> None:
    lead_set = build_lead_set(load_dataset(small_synthetic_spec))
    result = audit_leads(lead_set)
    table = result.table.set_index("feature")
    assert "n_onboarding_call" in result.flagged
    assert table.loc["n_onboarding_call", "after_outcome"] == 1.0
    assert table.loc["n_meeting", "after_outcome"] == 0.0 and "n_meeting" in result.numeric
