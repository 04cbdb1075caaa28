"""No fitted row's label window overlaps the test period (nor, with policy ``both``, the calibration period),
for any cutoffs and horizon, through the trainer's own split (hypothesis)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.churn import CUTOFF, LABEL
from features.errors import SalesmlError
from training.churn import _sliced, plan_slices
from training.classifier import ClassifierData, TrainConfig
from training.classifier.split import split_slices

DAY0 = pd.Timestamp("2020-01-01")


def _data(cutoffs: list[pd.Timestamp], rows: list[int], horizon: int, seed: int) -> ClassifierData:
    rng = np.random.default_rng(seed)
    times = np.repeat(np.array(cutoffs, dtype="datetime64[ns]"), rows)
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(len(times))],
            CUTOFF: times,
            "x": rng.normal(size=len(times)),
            LABEL: np.tile([0.0, 1.0], len(times) // 2 + 1)[: len(times)],
        }
    )
    return ClassifierData(
        frame=frame,
        id_col="customer_id",
        time_col=CUTOFF,
        label_col=LABEL,
        numeric=["x"],
        categorical=[],
        purge=pd.Timedelta(days=horizon),
    )


@settings(max_examples=100, deadline=None)
@given(
    offsets=st.lists(st.integers(0, 900), min_size=1, max_size=24, unique=True),
    sizes=st.lists(st.integers(4, 60), min_size=24, max_size=24),
    horizon=st.integers(1, 365),
    seed=st.integers(0, 10),
)
def test_no_fitted_label_window_reaches_a_later_slice(
    offsets: list[int], sizes: list[int], horizon: int, seed: int
) -> None:
    cutoffs = sorted(DAY0 + pd.Timedelta(days=d) for d in offsets)
    try:
        plan = plan_slices(cutoffs, horizon)
    except SalesmlError as err:
        # Refused only when fewer than two cutoffs end their window before the latest one.
        assert sum(c + pd.Timedelta(days=horizon) < cutoffs[-1] for c in cutoffs) < 2, err
        return
    h = pd.Timedelta(days=horizon)
    assert plan.test == (cutoffs[-1],)
    assert plan.train and plan.calibration
    assert max(plan.train) < min(plan.calibration) and max(plan.calibration) + h < min(plan.test)
    if plan.policy == "both":
        assert max(plan.train) + h < min(plan.calibration)

    data, fractions = _sliced(_data(cutoffs, sizes[: len(cutoffs)], horizon, seed), plan)
    train, cal, test, info = split_slices(data, TrainConfig(fractions=fractions))
    times = data.frame[CUTOFF]
    got = {name: set(times.loc[ix]) for name, ix in (("train", train), ("cal", cal), ("test", test))}
    assert got == {"train": set(plan.train), "cal": set(plan.calibration), "test": set(plan.test)}
    # The label window (t, t + H] of every fitted row ends before the test slice's first cutoff ...
    fitted_end = times.loc[train.union(cal)].max() + h
    assert fitted_end < times.loc[test].min()
    # ... and, with policy "both", every training window ends before calibration: the trainer's purge finds
    # nothing left to drop.
    if plan.policy == "both":
        assert times.loc[train].max() + h < times.loc[cal].min()
        assert info["purged_rows"] == {"train": 0, "calibration": 0}


def test_short_history_uses_the_test_only_policy_like_cdnow() -> None:
    cutoffs = [pd.Timestamp(f"1997-{m:02d}-30") for m in range(4, 13)]
    plan = plan_slices(cutoffs, 180)
    assert plan.policy == "test"
    assert plan.test == (pd.Timestamp("1997-12-30"),)
    assert max(plan.calibration) <= pd.Timestamp("1997-07-02")


def test_long_history_gets_a_gap_between_every_slice() -> None:
    cutoffs = [DAY0 + pd.DateOffset(months=k) for k in range(18)]
    plan = plan_slices(cutoffs, 90)
    assert plan.policy == "both"
    assert len(plan.train) >= 8


def test_too_little_history_is_refused_with_a_reason() -> None:
    with pytest.raises(SalesmlError, match="fewer than two cutoffs"):
        plan_slices([DAY0, DAY0 + pd.Timedelta(days=30), DAY0 + pd.Timedelta(days=60)], 90)
