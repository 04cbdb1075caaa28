"""A new lead's context counted once (RatesAsOf, ActivitiesAsOf, NextPeriod) equals the per-row functions.

The reference is the function training uses on the raw history (point_in_time_rates, activity_counts, and
period_context over the history with the one new row after it), run for each new row alone; the fast path is
asked for whole batches in random orders. Equal to 1e-12 (in practice bit for bit).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from features.lead_context import (
    DECISION_TIME,
    LABEL,
    ActivitiesAsOf,
    NextPeriod,
    RatesAsOf,
    activity_counts,
    period_context,
    point_in_time_rates,
)

KEYS = ["agent", "product"]
CASES = settings(max_examples=8, deadline=None)  # each example runs the reference once per row


def _history(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Closed deals over a year in whole days (ties with the scoring moment on purpose), some open, some keyless."""
    engage = pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D")
    close = engage + pd.to_timedelta(rng.integers(1, 120, n), unit="D")
    label = np.where(rng.random(n) < 0.6, 1.0, 0.0)
    label[rng.random(n) < 0.1] = np.nan  # still open
    agent = rng.choice(np.array(["a", "b", "c", "d", None], dtype=object), n)
    return pd.DataFrame(
        {"agent": agent, "product": rng.choice(["p", "q", "r"], n), "closed_at": close, LABEL: label}
    )


def _batch(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """New rows: known keys, a key no deal has, a missing key."""
    return pd.DataFrame(
        {
            "lead_id": [f"N{i}" for i in range(n)],
            "agent": rng.choice(np.array(["a", "b", "zz", None], dtype=object), n),
            "product": rng.choice(np.array(["p", "r", "s"], dtype=object), n),
        }
    )


def _alone(batch: pd.DataFrame, one: callable) -> pd.DataFrame:
    """The reference for each row of ``batch`` computed with that row alone, stacked in batch order."""
    return pd.concat([one(batch.iloc[[i]]) for i in range(len(batch))]).reset_index(drop=True)


def _same(fast: pd.DataFrame, slow: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(
        fast.reset_index(drop=True)[slow.columns].astype(float),
        slow.astype(float),
        check_exact=False,
        rtol=0,
        atol=1e-12,
    )


def _same_in_any_order(
    fast: callable, batch: pd.DataFrame, slow: pd.DataFrame, rng: np.random.Generator
) -> None:
    """``fast`` on the whole batch, and on the batch shuffled, equals the rows scored alone (``slow``)."""
    _same(fast(batch), slow)
    order = rng.permutation(len(batch))
    _same(fast(batch.iloc[order]), slow.iloc[order].reset_index(drop=True))


@CASES
@given(seed=st.integers(0, 2**31), n=st.integers(0, 300), size=st.integers(1, 6))
def test_rates_as_of_equal_point_in_time_rates_alone_in_a_batch_and_in_any_order(
    seed: int, n: int, size: int
) -> None:
    rng = np.random.default_rng(seed)
    history, batch = _history(rng, n), _batch(rng, size)
    at = pd.Timestamp("2021-06-01") + pd.Timedelta(days=int(rng.integers(0, 300)))
    rates = RatesAsOf.count(history, KEYS, at, prior_strength=5.0)
    slow = _alone(
        batch,
        lambda one: point_in_time_rates(one.assign(**{DECISION_TIME: at}), history, KEYS, prior_strength=5.0),
    )
    _same_in_any_order(lambda rows: rates(rows, KEYS), batch, slow, rng)


@CASES
@given(seed=st.integers(0, 2**31), n=st.integers(0, 300), size=st.integers(1, 6))
def test_activities_as_of_equal_activity_counts(seed: int, n: int, size: int) -> None:
    rng = np.random.default_rng(seed)
    events = pd.DataFrame(
        {
            "entity_id": rng.choice([f"N{i}" for i in range(8)], n),
            "time": pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 60, n), unit="D"),
            "type": rng.choice(["call", "email", "meeting"], n),
        }
    )
    at = pd.Timestamp("2021-01-01") + pd.Timedelta(days=int(rng.integers(0, 70)))
    types = ["call", "email", "meeting", "webinar"]  # a type with no event at all still gets its column
    counted = ActivitiesAsOf.count(events, at, types)
    batch = _batch(rng, size)
    slow = _alone(batch, lambda one: activity_counts(one.assign(**{DECISION_TIME: at}), events, types))
    _same_in_any_order(counted, batch, slow, rng)


@CASES
@given(seed=st.integers(0, 2**31), n=st.integers(0, 200), size=st.integers(1, 6))
def test_next_period_equals_period_context_of_the_one_row_after_the_data(
    seed: int, n: int, size: int
) -> None:
    rng = np.random.default_rng(seed)
    # Runs of days within months, as a contact log in time order; some outcomes unknown.
    month = np.repeat(rng.choice(["may", "jun", "jul"], max(1, n // 20 + 1)), 20)[:n]
    day = np.repeat(rng.choice(["mon", "tue", "wed"], max(1, n // 4 + 1)), 4)[:n]
    label = np.where(rng.random(n) < 0.3, 1.0, 0.0)
    label[rng.random(n) < 0.1] = np.nan
    history = pd.DataFrame({"month": month, "day": day, LABEL: label})
    last = [history["month"].iloc[-1], history["day"].iloc[-1]] if n else ["may", "mon"]
    # New rows: many continuing the last period, others not, one with a missing key.
    choices = [last, last, ["may", "tue"], ["jul", last[1]], [None, last[1]]]
    picked = [choices[i] for i in rng.integers(0, len(choices), size)]
    batch = pd.DataFrame(picked, columns=["month", "day"]).astype(object)
    nxt = NextPeriod.after(history, ["month", "day"])

    def one_after(row: pd.DataFrame) -> pd.DataFrame:
        rows = pd.concat([history, row.assign(**{LABEL: np.nan})], ignore_index=True)
        return period_context(rows, ["month", "day"]).iloc[[-1]]

    slow = _alone(batch, one_after)
    _same_in_any_order(nxt, batch, slow, rng)
