"""Churn features: equal to a slow, obviously-correct reference, and point in time (hypothesis)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.churn import (
    CUTOFF,
    LABEL,
    ChurnInputError,
    check_horizon,
    check_labels,
    churn_cutoffs,
    churn_features,
    churn_labels,
    churn_partition,
)

DAY0 = pd.Timestamp("2024-01-01")
WINDOWS = (30, 90, 180, 365)


def _panel(
    rng: np.random.Generator, n_customers: int = 6, n_events: int = 80, span: int = 400
) -> pd.DataFrame:
    """Random order lines, several per day for some customers, with a product and its series."""
    cust = rng.choice([f"c{i}" for i in range(n_customers)], n_events)
    day = rng.integers(0, span, n_events)
    product = rng.choice(["p1", "p2", "p3", "p4"], n_events)
    return pd.DataFrame(
        {
            "customer_id": cust,
            "time": DAY0
            + pd.to_timedelta(day, unit="D")
            + pd.to_timedelta(rng.integers(0, 20, n_events), "h"),
            "amount": rng.integers(1, 500, n_events).astype(float),
            "quantity": rng.integers(1, 5, n_events),
            "product_id": product,
            "series": np.where(np.isin(product, ["p1", "p2"]), "A", "B"),
        }
    )


def _customers(ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ids,
            "segment": ["smb", "mid"] * (len(ids) // 2) + ["smb"] * (len(ids) % 2),
            "tickets": np.arange(len(ids), dtype=float),
            "has_contract": [i % 3 == 0 for i in range(len(ids))],
            "signup_date": [DAY0 + pd.Timedelta(days=30 * i) for i in range(len(ids))],
            "churned_at": [DAY0 + pd.Timedelta(days=999)] * len(ids),  # the future: never a feature
        }
    )


def _reference(tx: pd.DataFrame, cutoffs: list[pd.Timestamp], lookback: int) -> pd.DataFrame:
    """The features, one customer and cutoff at a time, straight from their definitions."""
    rows = []
    tx = tx.assign(day=tx["time"].dt.normalize())
    for c in cutoffs:
        for cust, g in sorted(tx.groupby("customer_id"), key=lambda kv: kv[0]):
            past = g[g["day"] <= c]
            if not (past["day"] > c - pd.Timedelta(days=lookback)).any():
                continue
            days = sorted(past["day"].unique())
            n = len(days)
            gaps = np.diff([d.value // 86_400_000_000_000 for d in days]).astype(float)
            row = {
                "customer_id": cust,
                CUTOFF: c,
                "recency_days": float((c - days[-1]).days),
                "tenure_days": float((c - days[0]).days),
                "purchases_total": float(n),
                "revenue_total": float(past["amount"].sum()),
            }
            for w in WINDOWS:
                inside = past[past["day"] > c - pd.Timedelta(days=w)]
                row[f"purchases_{w}d"] = float(inside["day"].nunique())
                row[f"revenue_{w}d"] = float(inside["amount"].sum())
            prev = past[
                (past["day"] > c - pd.Timedelta(days=180)) & (past["day"] <= c - pd.Timedelta(days=90))
            ]
            mean_gap = gaps.mean() if n >= 2 else np.nan
            std_gap = gaps.std() if n >= 2 else np.nan
            row |= {
                "mean_gap_days": mean_gap,
                "std_gap_days": std_gap,
                "gap_cv": std_gap / mean_gap,
                "last_gap_days": gaps[-1] if n >= 2 else np.nan,
                "recency_over_mean_gap": row["recency_days"] / mean_gap,
                "recency_over_tenure": row["recency_days"] / max(row["tenure_days"], 1.0),
                "purchases_per_30d": n * 30.0 / max(row["tenure_days"], 30.0),
                "recent_share_90d": row["purchases_90d"] / n,
                "trend_purchases_90d": np.log((row["purchases_90d"] + 1) / (prev["day"].nunique() + 1)),
                "trend_revenue_90d": np.log1p(row["revenue_90d"]) - np.log1p(prev["amount"].sum()),
                "avg_purchase_value": row["revenue_total"] / n,
                "lines_per_purchase": len(past) / n,
                "quantity_per_purchase": past["quantity"].sum() / n,
                "distinct_product_id": float(past["product_id"].nunique()),
                "distinct_series": float(past["series"].nunique()),
                "revenue_12m": row["revenue_365d"],
                "purchases_same_window_last_year": float(
                    past.loc[
                        (past["day"] > c - pd.Timedelta(days=365))
                        & (past["day"] <= c - pd.Timedelta(days=365 - 60)),
                        "day",
                    ].nunique()
                ),
            }
            rows.append(row)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_features_equal_the_slow_reference(seed: int) -> None:
    tx = _panel(np.random.default_rng(seed))
    cutoffs = [DAY0 + pd.Timedelta(days=d) for d in (45, 120, 250, 399, 420)]
    got = churn_features(tx, cutoffs, lookback_days=200, breadth=["product_id", "series"], horizon_days=60)
    want = _reference(tx, cutoffs, lookback=200)
    assert len(got) > 10
    pd.testing.assert_frame_equal(
        got[want.columns].reset_index(drop=True), want, check_dtype=False, rtol=1e-9
    )


def test_attributes_are_joined_and_dates_become_ages_known_at_the_cutoff() -> None:
    tx = _panel(np.random.default_rng(5))
    customers = _customers(sorted(tx["customer_id"].unique()))
    cutoff = DAY0 + pd.Timedelta(days=100)
    got = churn_features(tx, [cutoff], customers=customers).set_index("customer_id")
    assert "churned_at" not in got.columns and "churned_at_age_days" not in got.columns
    assert {"segment", "tickets", "has_contract", "signup_date_age_days"} <= set(got.columns)
    for cust, row in got.iterrows():
        signup = customers.set_index("customer_id").loc[cust, "signup_date"]
        expected = (cutoff - signup).days
        assert (np.isnan(row["signup_date_age_days"]) and expected < 0) or row[
            "signup_date_age_days"
        ] == expected


def test_labels_equal_the_reference_and_are_unknown_past_the_data() -> None:
    tx = _panel(np.random.default_rng(3))
    keys = churn_features(tx, [DAY0 + pd.Timedelta(days=d) for d in (60, 200, 330)])
    end = pd.Timestamp(tx["time"].max().normalize())
    got = churn_labels(tx, keys, horizon_days=60, data_end=end)
    day = tx["time"].dt.normalize()
    for i, row in keys.iterrows():
        c = row[CUTOFF]
        if c + pd.Timedelta(days=60) > end:
            assert np.isnan(got[i])
            continue
        bought = (
            (tx["customer_id"] == row["customer_id"]) & (day > c) & (day <= c + pd.Timedelta(days=60))
        ).any()
        assert got[i] == (0.0 if bought else 1.0)
    assert got.notna().sum() > 5 and set(got.dropna().unique()) == {0.0, 1.0}


# --- point in time (hypothesis) ------------------------------------------------------------------------------

_event = st.tuples(
    st.sampled_from(["a", "b", "c", "d"]),
    st.integers(0, 300),
    st.floats(0.0, 1000.0, allow_nan=False),
    st.sampled_from(["p1", "p2", "p3"]),
)


def _frame(events: list[tuple[str, int, float, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [e[0] for e in events],
            "time": [DAY0 + pd.Timedelta(days=e[1], hours=e[1] % 7) for e in events],
            "amount": [e[2] for e in events],
            "quantity": [1 + e[1] % 3 for e in events],
            "product_id": [e[3] for e in events],
        }
    )


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    before=st.lists(_event, min_size=1, max_size=40),
    after=st.lists(_event, max_size=30),
    extra=st.lists(_event, max_size=15),
    cutoff_day=st.integers(0, 300),
    drop=st.lists(st.booleans(), min_size=30, max_size=30),
    scale=st.floats(0.0, 5.0, allow_nan=False),
    shift_days=st.integers(0, 60),
)
def test_changing_events_after_the_cutoff_changes_no_feature_at_the_cutoff(
    before: list, after: list, extra: list, cutoff_day: int, drop: list, scale: float, shift_days: int
) -> None:
    """Alter, add and delete events after the cutoff (and add customers who appear only later): same rows."""
    cutoff = DAY0 + pd.Timedelta(days=cutoff_day)
    past = [e for e in before if e[1] <= cutoff_day]
    future = [(e[0], cutoff_day + 1 + e[1], e[2], e[3]) for e in after]
    original = _frame(past + future)
    kept = [e for e, d in zip(future, drop, strict=False) if not d]
    altered = [(e[0], e[1] + shift_days, e[2] * scale, "p9") for e in kept]
    added = [("new" if i % 2 else e[0], cutoff_day + 1 + e[1], e[2], e[3]) for i, e in enumerate(extra)]
    changed = _frame(past + altered + added)
    customers = _customers(["a", "b", "c", "d", "new"])
    kwargs = {"customers": customers, "breadth": ["product_id"], "lookback_days": 120, "horizon_days": 45}
    got = churn_features(changed, [cutoff], **kwargs)
    want = churn_features(original, [cutoff], **kwargs)
    pd.testing.assert_frame_equal(got, want)
    active = {e[0] for e in past if e[1] > cutoff_day - 120}
    assert set(want["customer_id"]) == active


def test_partition_results_are_the_same_as_one_piece() -> None:
    tx = _panel(np.random.default_rng(11), n_customers=40, n_events=600)
    cutoffs = [DAY0 + pd.Timedelta(days=d) for d in (120, 200, 300)]
    end = pd.Timestamp("2025-02-01")
    whole = churn_partition(tx, cutoffs, horizon_days=60, data_end=end, breadth=["product_id"])
    halves = [
        churn_partition(
            tx[tx["customer_id"].isin(ids)], cutoffs, horizon_days=60, data_end=end, breadth=["product_id"]
        )
        for ids in ([f"c{i}" for i in range(0, 40, 2)], [f"c{i}" for i in range(1, 40, 2)])
    ]
    joined = pd.concat(halves).sort_values([CUTOFF, "customer_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(joined, whole.sort_values([CUTOFF, "customer_id"]).reset_index(drop=True))
    assert whole[LABEL].notna().all()


def test_cutoffs_are_monthly_from_the_end_and_labelled_only_when_the_window_fits() -> None:
    labelled, score = churn_cutoffs(
        pd.Timestamp("1997-01-01"), pd.Timestamp("1998-06-30"), horizon_days=180, n_cutoffs=None
    )
    assert score == pd.Timestamp("1998-06-30")
    assert labelled[-1] == pd.Timestamp("1997-12-30") and labelled[0] == pd.Timestamp("1997-04-30")
    assert all(c + pd.Timedelta(days=180) <= score for c in labelled)
    assert (
        len(churn_cutoffs(pd.Timestamp("2020-01-01"), pd.Timestamp("2023-01-01"), horizon_days=90)[0]) == 12
    )


@pytest.mark.parametrize("bad", [0, -30, 1.5, "90", True, None])
def test_horizon_must_be_a_positive_number_of_days(bad: object) -> None:
    with pytest.raises(ChurnInputError, match="positive whole number of days"):
        check_horizon(bad)


def test_history_shorter_than_the_horizon_is_refused() -> None:
    with pytest.raises(ChurnInputError, match="too short"):
        churn_cutoffs(pd.Timestamp("2024-01-01"), pd.Timestamp("2024-05-01"), horizon_days=90)


@pytest.mark.parametrize(
    ("values", "match"),
    [([0, 1, 2, 1], "must be 0 .stayed. or 1"), (["yes", "no"], "must be 0"), ([1, 1, 1], "only the class")],
)
def test_labels_must_be_two_classes(values: list, match: str) -> None:
    with pytest.raises(ChurnInputError, match=match):
        check_labels(pd.Series(values), where="test")
