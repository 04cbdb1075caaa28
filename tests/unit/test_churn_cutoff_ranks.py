"""Within-cutoff rank features (features.churn_columns.with_cutoff_ranks): correct ranks, point in time, per cutoff."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.churn import CUTOFF, ChurnSet, churn_partition
from features.churn_columns import RANKED_COLUMNS, with_cutoff_ranks

DAY0 = pd.Timestamp("2024-01-01")
END = pd.Timestamp("2025-06-01")


def _tx(events: list[tuple[str, int, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [e[0] for e in events],
            "time": [DAY0 + pd.Timedelta(days=e[1]) for e in events],
            "amount": [e[2] for e in events],
        }
    )


def _ranked(tx: pd.DataFrame, cutoffs: list[pd.Timestamp]) -> pd.DataFrame:
    frame = churn_partition(tx, cutoffs, horizon_days=30, data_end=END)
    numeric = [c for c in frame.columns if c not in ("customer_id", CUTOFF, "label", "revenue_12m")]
    churn_set = ChurnSet(frame=frame, numeric=numeric, categorical=[], horizon_days=30, kind="transactions")
    out = with_cutoff_ranks(churn_set)
    names = [f"{c}_rank_in_cutoff" for c in RANKED_COLUMNS]
    assert out.numeric[-len(names) :] == names
    return out.frame


def test_ranks_are_percentiles_among_the_rows_of_the_same_cutoff() -> None:
    rng = np.random.default_rng(3)
    events = [
        (f"c{rng.integers(0, 12)}", int(rng.integers(0, 300)), float(rng.integers(1, 90))) for _ in range(150)
    ]
    cutoffs = [DAY0 + pd.Timedelta(days=d) for d in (150, 240, 300)]
    frame = _ranked(_tx(events), cutoffs)
    for cutoff, rows in frame.groupby(CUTOFF):
        for col in RANKED_COLUMNS:
            got = rows[f"{col}_rank_in_cutoff"]
            values = rows[col]
            # The slow definition: share of the cutoff's (non-missing) rows at or below the value, ties averaged.
            n = values.notna().sum()
            want = [
                np.nan if pd.isna(v) else ((values < v).sum() + ((values == v).sum() + 1) / 2) / n
                for v in values
            ]
            np.testing.assert_allclose(
                got.to_numpy(float), np.asarray(want, float), err_msg=f"{col} @ {cutoff}"
            )
    # The latest cutoff's tenures are larger, but their ranks span the same range as at the first cutoff.
    first, last = frame[frame[CUTOFF] == cutoffs[0]], frame[frame[CUTOFF] == cutoffs[-1]]
    assert last["tenure_days"].max() > first["tenure_days"].max()
    assert last["tenure_days_rank_in_cutoff"].max() == first["tenure_days_rank_in_cutoff"].max() == 1.0


def test_snapshot_sets_are_returned_unchanged() -> None:
    frame = pd.DataFrame({"customer_id": ["a", "b"], CUTOFF: pd.NaT, "x": [1.0, 2.0], "label": [0.0, 1.0]})
    churn_set = ChurnSet(frame=frame, numeric=["x"], categorical=[], horizon_days=30, kind="snapshot")
    assert with_cutoff_ranks(churn_set) is churn_set


_event = st.tuples(st.sampled_from(["a", "b", "c", "d", "e"]), st.integers(0, 200), st.floats(0.0, 500.0))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    before=st.lists(_event, min_size=1, max_size=40),
    after=st.lists(_event, max_size=30),
    cutoff_day=st.integers(0, 200),
    scale=st.floats(0.0, 5.0),
)
def test_events_after_the_cutoff_change_no_rank_at_the_cutoff(
    before: list, after: list, cutoff_day: int, scale: float
) -> None:
    """Alter and add events after the cutoff (including customers first seen later): the cutoff's ranks stay."""
    cutoff = DAY0 + pd.Timedelta(days=cutoff_day)
    past = [e for e in before if e[1] <= cutoff_day]
    future = [(e[0], cutoff_day + 1 + e[1], e[2]) for e in after]
    changed = [("new" if i % 2 else e[0], e[1] + 3, e[2] * scale) for i, e in enumerate(future)]
    want = _ranked(_tx(past + future), [cutoff])
    got = _ranked(_tx(past + changed), [cutoff])
    cols = ["customer_id", *(f"{c}_rank_in_cutoff" for c in RANKED_COLUMNS)]
    pd.testing.assert_frame_equal(got[cols].reset_index(drop=True), want[cols].reset_index(drop=True))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    reference=st.lists(st.integers(0, 20), min_size=1, max_size=30),
    value=st.integers(-2, 22),
)
def test_ranks_filled_for_sent_features_match_joining_the_cutoff(reference: list[int], value: int) -> None:
    # A client sends raw values only: its rank is the one the row would get as one more customer at the cutoff.
    from features.churn_columns import cutoff_rank_reference, fill_cutoff_ranks

    snapshot = pd.DataFrame({c: np.asarray(reference, dtype=float) for c in RANKED_COLUMNS})
    snapshot[CUTOFF] = END
    sent = pd.DataFrame({c: [float(value)] for c in RANKED_COLUMNS})
    filled = fill_cutoff_ranks(sent, snapshot)
    # the service's form: the snapshot's sorted values computed once, ranked against per request
    pd.testing.assert_frame_equal(fill_cutoff_ranks(sent, cutoff_rank_reference(snapshot)), filled)

    joined = pd.concat([snapshot, sent.assign(**{CUTOFF: END})], ignore_index=True)
    churn_set = ChurnSet(
        frame=joined, numeric=list(RANKED_COLUMNS), categorical=[], horizon_days=30, kind="transactions"
    )
    expected = with_cutoff_ranks(churn_set).frame.iloc[-1]
    for c in RANKED_COLUMNS:
        assert filled.loc[0, f"{c}_rank_in_cutoff"] == expected[f"{c}_rank_in_cutoff"]


def test_sent_ranks_are_kept_and_missing_values_stay_missing() -> None:
    from features.churn_columns import fill_cutoff_ranks

    snapshot = pd.DataFrame({"recency_days": [1.0, 5.0, 9.0]})
    sent = pd.DataFrame(
        {"recency_days": [5.0, np.nan, 9.0], "recency_days_rank_in_cutoff": [0.1, np.nan, np.nan]}
    )
    out = fill_cutoff_ranks(sent, snapshot)["recency_days_rank_in_cutoff"].tolist()
    assert out[0] == 0.1  # sent: kept
    assert np.isnan(out[1])  # no raw value: nothing to rank
    assert out[2] == 3.5 / 4  # ties with 9.0: positions 3 and 4 of 4, averaged
    assert "tenure_days_rank_in_cutoff" not in fill_cutoff_ranks(sent, snapshot).columns
