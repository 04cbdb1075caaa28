"""Lead / deal training sets: point-in-time win rates, activity counts before the decision, raw lead batches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import SalesmlError
from features.lead_context import (
    KnownContext,
    NextPeriod,
    activity_counts,
    period_context,
    point_in_time_rates,
)
from features.lead_records import leads_from_records
from features.leads import (
    DECISION_TIME,
    LABEL,
    build_lead_set,
    lead_features,
    outcome_labels,
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


def test_period_context_by_hand() -> None:
    # Periods: day A (3 rows), day B (2 rows), day A again (1 row: a new period, the weekday came back).
    frame = pd.DataFrame({"day": ["A", "A", "A", "B", "B", "A"], LABEL: [1.0, 0.0, 0.0, 1.0, np.nan, 0.0]})
    ctx = period_context(frame, ["day"], windows=(1, 2), prior_strength=2.0)
    assert np.allclose(np.expm1(ctx["log_contacts_so_far_in_period"]), [0, 1, 2, 0, 1, 0])
    assert ctx["log_contacts_prev1_periods"].iloc[:3].isna().all()
    assert np.allclose(np.expm1(ctx["log_contacts_prev1_periods"].iloc[3:]), [3, 3, 2])
    assert np.allclose(np.expm1(ctx["log_contacts_prev2_periods"].iloc[3:]), [3, 3, 2.5])
    rate = 1 / (1 + np.exp(-ctx["win_logit_prev1_periods"].to_numpy()))
    # Day B: 1 win in 3 rows, prior = 1/3 -> (1 + 2/3) / (3 + 2); the last day: day B's labelled row only (1 of 1),
    # prior = 2 wins / 4 labelled rows -> (1 + 2 * 0.5) / (1 + 2).
    assert np.allclose(rate[3:], [1 / 3, 1 / 3, 2 / 3])
    assert np.isnan(rate[:3]).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_period_context_uses_only_earlier_rows_and_earlier_periods_outcomes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 400
    frame = pd.DataFrame(
        {
            "month": np.repeat(["m1", "m2", "m3", "m4"], n // 4),
            "weekday": np.sort(rng.integers(0, 5, n).reshape(4, -1), axis=1).ravel().astype(str),
            LABEL: (rng.random(n) < 0.3).astype(float),
        }
    )
    base = period_context(frame, ["month", "weekday"])
    key = frame["month"] + frame["weekday"]
    starts = np.flatnonzero((key != key.shift()).to_numpy())
    cut = int(starts[len(starts) // 2])  # the first row of a period in the middle
    changed = frame.copy()
    changed.loc[cut:, LABEL] = 1.0 - changed.loc[cut:, LABEL]  # outcomes from this period on flip
    after = period_context(changed, ["month", "weekday"])
    period_end = int(starts[len(starts) // 2 + 1])
    pd.testing.assert_frame_equal(base.iloc[:period_end], after.iloc[:period_end])  # its own period too
    assert not base.iloc[period_end:].equals(after.iloc[period_end:])  # later periods do see them
    truncated = period_context(frame.iloc[: cut + 3], ["month", "weekday"])  # later rows do not exist yet
    pd.testing.assert_frame_equal(base.iloc[: cut + 3], truncated)


def _row_ordered_table_and_leads() -> tuple[TableSpec, pd.DataFrame]:
    table = TableSpec.model_validate(
        {
            "role": "leads",
            "path": "x.csv",
            "columns": {"lead_id": "id", "outcome": "y", "day": "day", "age": "age"},
            "outcome_values": {"won": ["1"], "lost": ["0"]},
            "row_order_is_time": True,
            "period_columns": ["day"],
        }
    )
    rng = np.random.default_rng(3)
    leads = pd.DataFrame(
        {
            "lead_id": [f"L{i}" for i in range(60)],
            "day": np.repeat(["mon", "tue", "wed", "thu"], 15),
            "age": rng.integers(20, 70, 60).astype(float),
            "outcome": pd.Categorical(rng.choice(["won", "lost"], 60), categories=["won", "lost", "open"]),
        }
    )
    return table, leads


PERIOD_COLS = [
    "log_contacts_so_far_in_period",
    *(f"{kind}_prev{k}_periods" for k in (1, 5, 20) for kind in ("log_contacts", "win_logit")),
]


def _scored_after(batch: pd.DataFrame, history: pd.DataFrame, table: TableSpec) -> pd.DataFrame:
    """Features of new leads scored after ``history`` (as score_lead_records builds them), by lead id."""
    labelled = history.assign(**{LABEL: outcome_labels(history["outcome"])})
    frame, _, _, _ = lead_features(
        batch.assign(**{DECISION_TIME: len(history) + np.arange(1, len(batch) + 1)}),
        table,
        time_kind="row_order",
        known=KnownContext(period=NextPeriod.after(labelled, table.period_columns)),
    )
    return frame.set_index("lead_id")[PERIOD_COLS]


def test_each_new_row_ordered_lead_gets_the_period_context_of_the_next_row_after_the_history() -> None:
    table, leads = _row_ordered_table_and_leads()
    whole, numeric, _, _ = lead_features(
        leads.assign(**{DECISION_TIME: np.arange(1, 61)}), table, time_kind="row_order"
    )
    assert set(PERIOD_COLS) <= set(numeric)
    # A batch of 10 after the first 50 rows (the last known day: thu, 5 rows), days mixed and unsorted.
    history = leads.iloc[:50]
    days = ["thu", "mon", "thu", "fri", "mon", "thu", "fri", "thu", "mon", "thu"]
    batch = leads.iloc[50:].assign(day=days)
    scored = _scored_after(batch, history, table)
    for i in range(len(batch)):  # each lead: exactly the features of the one row after the history
        alone = pd.concat([history, batch.iloc[[i]]], ignore_index=True)
        ref, _, _, _ = lead_features(
            alone.assign(**{DECISION_TIME: np.arange(1, 52)}), table, time_kind="row_order"
        )
        expected = ref[PERIOD_COLS].iloc[-1].to_numpy()
        assert np.allclose(scored.loc[batch["lead_id"].iloc[i]].to_numpy(), expected, equal_nan=True)
    # By hand: "thu" continues the history's last day (5 rows so far; the day before, wed, had 15 rows); any
    # other day starts a new one (0 so far; the day before is thu with 5 rows). Other batch rows never count.
    is_thu = np.array(days) == "thu"
    assert np.allclose(np.expm1(scored["log_contacts_so_far_in_period"]), np.where(is_thu, 5, 0))
    assert np.allclose(np.expm1(scored["log_contacts_prev1_periods"]), np.where(is_thu, 15, 5))
    # The training-time features (no history given) are unchanged: the table's own rows in order.
    train_ctx = period_context(whole.assign(day=leads["day"]), ["day"])
    pd.testing.assert_frame_equal(whole[PERIOD_COLS], train_ctx[PERIOD_COLS], check_dtype=False)


def test_new_lead_features_do_not_depend_on_the_rest_of_the_batch_or_its_order() -> None:
    table, leads = _row_ordered_table_and_leads()
    history = leads.iloc[:50]
    batch = leads.iloc[50:56].assign(day=["mon", "fri", "thu", "fri", None, "mon"])
    together = _scored_after(batch, history, table)
    reversed_ = _scored_after(batch.iloc[::-1], history, table)
    pd.testing.assert_frame_equal(together, reversed_.loc[together.index])
    for lead_id in batch["lead_id"]:
        alone = _scored_after(batch[batch["lead_id"] == lead_id], history, table)
        pd.testing.assert_frame_equal(together.loc[[lead_id]], alone)
    # The reviewer's case: a fri lead after a mon lead in the same batch is still the first row of its day.
    assert together.loc["L51", "log_contacts_so_far_in_period"] == 0.0
    assert np.isclose(np.expm1(together.loc["L51", "log_contacts_prev1_periods"]), 5)


def test_period_columns_need_row_order() -> None:
    with pytest.raises(ValueError, match="period_columns needs row_order_is_time"):
        TableSpec.model_validate(
            {
                "role": "leads",
                "path": "x.csv",
                "columns": {"lead_id": "id", "outcome": "y", "day": "day"},
                "outcome_values": {"won": ["1"], "lost": ["0"]},
                "period_columns": ["day"],
            }
        )
