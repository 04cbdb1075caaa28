"""Checks of the churn options and labels, shared by the training-set builder and the partition kernel.

Each raises :class:`ChurnInputError` with a message that names the option or column and says what was expected.
"""

from __future__ import annotations

import datetime

import numpy as np
import pandas as pd

from features.errors import SalesmlError

__all__ = ["ChurnInputError", "check_horizon", "check_labels", "parse_as_of"]


class ChurnInputError(SalesmlError):
    """The data or options cannot give a churn training set; the message says what to change."""


def parse_as_of(value: pd.Timestamp | str | None) -> pd.Timestamp | None:
    """``--as-of`` as a day: a timestamp (normalised to its day) or a ``YYYY-MM-DD`` string; None stays None."""
    if value is None or isinstance(value, pd.Timestamp):
        return None if value is None else value.normalize()
    try:
        return pd.Timestamp(datetime.date.fromisoformat(str(value).strip()))
    except ValueError:
        raise ChurnInputError(f"--as-of must be a date written YYYY-MM-DD, got {value!r}") from None


def check_horizon(horizon_days: object) -> int:
    """``H`` must be a positive whole number of days."""
    if isinstance(horizon_days, bool) or not isinstance(horizon_days, int | np.integer) or horizon_days <= 0:
        raise ChurnInputError(
            f"churn horizon must be a positive whole number of days (churn_horizon_days / --horizon-days), "
            f"got {horizon_days!r}"
        )
    return int(horizon_days)


def check_labels(labels: pd.Series, *, where: str) -> pd.Series:
    """Known labels must be exactly the two classes 0 and 1, both present; returns them as float."""
    known = labels.dropna()
    values = pd.to_numeric(known, errors="coerce")
    bad = known[values.isna() | ~values.isin([0, 1])]
    if len(bad):
        raise ChurnInputError(
            f"{where}: the label must be 0 (stayed) or 1 (churned), found {sorted(map(str, bad.unique()))[:5]} "
            f"in {len(bad)} row(s); map the source values with label_values in the spec"
        )
    present = {int(v) for v in values.unique()}
    if present != {0, 1}:
        raise ChurnInputError(
            f"{where}: the label has only the class(es) {sorted(present)} among {len(values)} known row(s); "
            "a churn model needs both churned (1) and stayed (0) customers"
        )
    return pd.to_numeric(labels, errors="coerce").astype(float)
