"""A known shock in a data set's sales: what ``salesml monitor`` must find (tests, ``benchmarks/monitor_alerts.py``)."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from features.load import Dataset, join_lookups
from features.spec import AMOUNT, TIME, Role

__all__ = ["with_sales_shock"]


def with_sales_shock(
    dataset: Dataset, *, column: str, value: str, after: pd.Timestamp | str, factor: float
) -> Dataset:
    """A copy of ``dataset`` whose sales of one node (``column == value`` in the transactions joined with their
    lookups, e.g. ``region == "West"``) after day ``after`` are multiplied by ``factor`` (0.6: -40 %).

    The known shock ``salesml monitor`` must find (tests and ``benchmarks/monitor_alerts.py``).
    """
    name = dataset.spec.table_of(Role.transactions)[0]  # type: ignore[index]
    facts = dataset.tables[name]
    joined = join_lookups(facts, dataset)
    if column not in joined.columns:
        raise ValueError(f"no column {column!r} in the transactions or their lookups")
    hit = (joined[column].astype(str) == value).to_numpy() & (
        facts[TIME] >= pd.Timestamp(after) + pd.Timedelta(days=1)
    ).to_numpy()
    if not hit.any():
        raise ValueError(f"no sale of {column}={value!r} after {after}")
    shocked = facts.copy()
    shocked.loc[hit, AMOUNT] = shocked.loc[hit, AMOUNT] * factor
    return replace(dataset, tables={**dataset.tables, name: shocked})
