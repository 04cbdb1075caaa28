"""Train / calibration / test slices (time-ordered with purging, or stratified), recency weights and the
search's gap."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from features.errors import SalesmlError
from training.classifier.config import ClassifierData, TrainConfig

__all__ = ["recency_weights", "search_fit_rows", "split_slices"]


def split_slices(data: ClassifierData, config: TrainConfig) -> tuple[pd.Index, pd.Index, pd.Index, dict]:
    frame = data.frame
    y = frame[data.label_col]
    if config.split == "stratified":
        rest, test = train_test_split(
            frame.index, test_size=config.fractions[2], stratify=y, random_state=config.random_state
        )
        share = config.fractions[1] / (config.fractions[0] + config.fractions[1])
        train, calib = train_test_split(
            rest, test_size=share, stratify=y.loc[rest], random_state=config.random_state
        )
        info = {"split": "stratified", "seed": config.random_state}
        return pd.Index(train), pd.Index(calib), pd.Index(test), info
    times = frame[data.time_col]
    counts = times.value_counts().sort_index()
    cum = counts.cumsum() / counts.sum()
    f_train, f_cal = config.fractions[0], config.fractions[0] + config.fractions[1]
    uniq = counts.index
    if len(uniq) < 3:
        raise SalesmlError(
            f"a time split needs at least 3 distinct values of {data.time_col!r}; found {len(uniq)}"
        )
    # Each slice is a run of whole time values (all rows of one cutoff stay together).
    train_end = uniq[min(int(np.searchsorted(cum.to_numpy(), f_train)), len(uniq) - 3)]
    cal_end = uniq[
        min(max(int(np.searchsorted(cum.to_numpy(), f_cal)), uniq.get_loc(train_end) + 1), len(uniq) - 2)
    ]
    train_mask, cal_mask, test_mask = (
        times <= train_end,
        (times > train_end) & (times <= cal_end),
        times > cal_end,
    )
    cal_start, test_start = times[cal_mask].min(), times[test_mask].min()
    purged = {"train": 0, "calibration": 0}
    if data.purge is not None:
        # A training row's label window [t, t + purge] must end before the next slice begins.
        late_train = train_mask & (times + data.purge >= cal_start)
        late_cal = cal_mask & (times + data.purge >= test_start)
        purged = {"train": int(late_train.sum()), "calibration": int(late_cal.sum())}
        train_mask, cal_mask = train_mask & ~late_train, cal_mask & ~late_cal
    if data.label_time_col is not None:
        # The outcome must be known before the next slice begins (a deal closing later is not yet labelled).
        known = frame[data.label_time_col].where(frame[data.label_time_col].notna(), times)
        late_train = train_mask & (known >= cal_start)
        late_cal = cal_mask & (known >= test_start)
        purged["train"] += int(late_train.sum())
        purged["calibration"] += int(late_cal.sum())
        purged["train_by_label_time"] = int(late_train.sum())
        purged["calibration_by_label_time"] = int(late_cal.sum())
        train_mask, cal_mask = train_mask & ~late_train, cal_mask & ~late_cal
    info = {
        "split": "time",
        "time_col": data.time_col,
        "train": f"{times[train_mask].min()} .. {times[train_mask].max()}",
        "calibration": f"{times[cal_mask].min()} .. {times[cal_mask].max()}",
        "test": f"{times[test_mask].min()} .. {times[test_mask].max()}",
        "purged_rows": purged,
    }
    for name, mask in (("train", train_mask), ("calibration", cal_mask), ("test", test_mask)):
        if mask.sum() == 0 or y[mask].nunique() < 2:
            raise SalesmlError(
                f"the {name} slice ({info.get(name, '')}) has {int(mask.sum())} rows and not both classes; "
                "more history or other cutoffs are needed"
            )
    return frame.index[train_mask], frame.index[cal_mask], frame.index[test_mask], info


def recency_weights(times: pd.Series, config: TrainConfig) -> np.ndarray | None:
    """``0.5 ** (age / halflife)``, age back from the latest of ``times`` (days for dates); None when off."""
    if config.recency_halflife is None or config.split != "time":
        return None
    if config.recency_halflife <= 0:
        raise SalesmlError(f"recency_halflife must be positive, not {config.recency_halflife}")
    age = times.max() - times
    if pd.api.types.is_timedelta64_dtype(age):
        age = age.dt.total_seconds() / 86400.0
    return np.power(0.5, age.to_numpy(dtype=float) / config.recency_halflife)


def search_fit_rows(t_tr: pd.Series, cal_start: Any, config: TrainConfig) -> np.ndarray | None:
    """Which train rows the search fits on with ``config.search_gap`` (a boolean mask); None when off."""
    if config.search_gap is None or config.split != "time":
        return None
    if not config.search_gap > 0:
        raise SalesmlError(f"search_gap must be positive, not {config.search_gap}")
    gap = config.search_gap
    if pd.api.types.is_datetime64_any_dtype(t_tr):
        gap = pd.Timedelta(days=config.search_gap)
    keep = (t_tr <= cal_start - gap).to_numpy()
    if not keep.any():
        keep = (t_tr == t_tr.min()).to_numpy()
    return keep
