"""Lead / deal training sets: point-in-time win rates, activity counts before the decision, raw lead batches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import SalesmlError
from features.leads import (
    DECISION_TIME,
    LABEL,
    activity_counts,
    build_lead_set,
    leads_from_records,
    point_in_time_rates,
)
from features.load import load_dataset
from features.spec import TableSpec

KEYS = ["agent", "product"]


def _deals(n: int, seed: int) -> pd.DataFrame:
    """Random deals: engage dates over a year, closing 1-120 days later (ties on purpose: whole days)."""
    rng = np.random.default_rng(seed)
    engage = pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D")
    close = engage + pd.to_timedelta(rng.integers(1, 120, n), unit="D")
    won = rng.random(n) < 0.6
    return pd.DataFrame(
        {
            "lead_id": [f"D{i:04d}" for i in range(n)],
            "agent": rng.choice(["a", "b", "c", "d"], n),
            "product": rng.choice(["p", "q", "r"], n),
            DECISION_TIME: engage,
            "closed_at": close,
            LABEL: won.astype(float),
        }
    )


def _reference_rates(deals: pd.DataFrame, history: pd.DataFrame, m: float) -> pd.DataFrame:
    """Slow, obviously correct: for each deal, filter the history by hand."""
    rows = []
    for _, deal in deals.iterrows():
        before = history[history["closed_at"] < deal[DECISION_TIME]]
        prior = before[LABEL].mean() if len(before) else np.nan
        row = {}
        for key in KEYS:
            mine = before[before[key] == deal[key]]
            row[f"{key}_closed_deals"] = float(len(mine))
            row[f"{key}_win_rate"] = (mine[LABEL].sum() + m * prior) / (len(mine) + m)
        rows.append(row)
    return pd.DataFrame(rows)


def test_point_in_time_rates_match_a_slow_reference() -> None:
    deals = _deals(300, seed=1)
    fast = point_in_time_rates(deals, deals, KEYS, prior_strength=5.0)
    slow = _reference_rates(deals, deals, 5.0)
    pd.testing.assert_frame_equal(
        fast[slow.columns].reset_index(drop=True), slow, check_dtype=False, check_exact=False, rtol=1e-9
    )


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_changing_outcomes_after_the_decision_time_changes_no_feature(seed: int) -> None:
    deals = _deals(400, seed=seed)
    cutoff = pd.Timestamp("2021-07-01")
    before = point_in_time_rates(deals, deals, KEYS)
    altered = deals.copy()
    later = altered["closed_at"] >= cutoff
    rng = np.random.default_rng(seed)
    altered.loc[later, LABEL] = 1.0 - altered.loc[later, LABEL]  # flip every later outcome
    altered.loc[later, "agent"] = rng.choice(["a", "b", "z"], int(later.sum()))  # and reshuffle its owner
    # The deals being featurised keep their own attributes; only the history they may look at changes.
    after = point_in_time_rates(deals, altered, KEYS)
    known = (deals[DECISION_TIME] <= cutoff).to_numpy()
    assert known.sum() > 50 and later.sum() > 50
    pd.testing.assert_frame_equal(before[known], after[known])
    # ...while the later deals do see the change (the test can fail).
    assert not before[~known].equals(after[~known])


def test_deal_closing_on_the_decision_day_is_not_yet_known() -> None:
    deals = pd.DataFrame(
        {
            "lead_id": ["x", "y"],
            "agent": ["a", "a"],
            "product": ["p", "p"],
            DECISION_TIME: pd.to_datetime(["2021-01-01", "2021-02-01"]),
            "closed_at": pd.to_datetime(["2021-02-01", "2021-03-01"]),
            LABEL: [1.0, 0.0],
        }
    )
    rates = point_in_time_rates(deals, deals, ["agent"])
    assert rates["agent_closed_deals"].tolist() == [0.0, 0.0]


def test_activity_counts_only_before_the_decision() -> None:
    part = pd.DataFrame(
        {"lead_id": ["l1", "l2"], DECISION_TIME: pd.to_datetime(["2021-01-10", "2021-01-20"])}
    )
    acts = pd.DataFrame(
        {
            "entity_id": ["l1", "l1", "l1", "l2", "l2"],
            "time": pd.to_datetime(["2021-01-01", "2021-01-10", "2021-01-15", "2021-01-02", "2021-01-03"]),
            "type": ["email", "meeting", "onboarding_call", "meeting", "meeting"],
        }
    )
    counts = activity_counts(part, acts)
    assert counts.to_dict("list") == {
        "n_email": [1.0, 0.0],
        "n_meeting": [0.0, 2.0],  # l1's meeting on the decision day itself is not "before"
        "n_onboarding_call": [0.0, 0.0],
    }


def test_synthetic_leads_never_count_activities_after_the_decision(small_synthetic_spec) -> None:
    ds = load_dataset(small_synthetic_spec)
    lead_set = build_lead_set(ds)
    frame = lead_set.frame.set_index("lead_id")
    acts = ds.tables["activities"]
    # Slow reference: count by hand for every lead.
    merged = acts.merge(frame[[DECISION_TIME]], left_on="entity_id", right_index=True)
    ref = (
        merged[merged["time"] < merged[DECISION_TIME]]
        .groupby(["entity_id", "type"])
        .size()
        .unstack(fill_value=0)
    )
    for t in ("email", "meeting"):
        expected = ref[t].reindex(frame.index, fill_value=0).astype(float)
        pd.testing.assert_series_equal(frame[f"n_{t}"], expected, check_names=False)
    closed = frame[frame[LABEL].notna()]
    assert (closed["n_onboarding_call"] == 0).all()
    assert lead_set.activity_timing["onboarding_call"] == 1.0
    # post-outcome columns never leave the feature builder
    assert "lost_reason" not in frame.columns and "lost_reason" in lead_set.excluded
    assert "closed_at" not in lead_set.features


def test_leads_from_records_rejects_a_missing_id() -> None:
    table = TableSpec.model_validate(
        {
            "role": "leads",
            "path": "x.csv",
            "columns": {"lead_id": "id", "outcome": "y", "source": "src"},
            "outcome_values": {"won": ["1"], "lost": ["0"]},
        }
    )
    frame = leads_from_records([{"lead_id": "a", "source": "web"}, {"lead_id": "b"}], table)
    assert frame["lead_id"].tolist() == ["a", "b"] and (frame["outcome"] == "open").all()
    with pytest.raises(SalesmlError, match=r"lead #1: missing 'lead_id'"):
        leads_from_records([{"lead_id": "a"}, {"source": "web"}], table)
    with pytest.raises(SalesmlError, match="lead #0: missing 'lead_id'"):
        leads_from_records([{"lead_id": " ", "source": "web"}], table)
    with pytest.raises(SalesmlError, match="unknown field"):
        leads_from_records([{"lead_id": "a", "colour": "red"}], table)
    with pytest.raises(SalesmlError, match="unique"):
        leads_from_records([{"lead_id": "a"}, {"lead_id": "a"}], table)
