"""Columns added to a churn set once it is built: the BG/NBD columns and the within-cutoff ranks.

* :func:`with_bgnbd` adds ``bgnbd_p_alive`` and ``bgnbd_p_no_purchase`` (:mod:`features.bgnbd`, fitted per
  cutoff) as features and ``bgnbd`` as a rule baseline.
* :func:`with_cutoff_ranks` adds ``<column>_rank_in_cutoff`` for the features that grow with a customer's age.
* :func:`fill_cutoff_ranks` gives rows sent by a client (feature values, no cutoff peers) the ranks they would
  have among the customers of the scored cutoff; :func:`cutoff_rank_reference` is what it ranks against.

Training, batch scoring and the service call these, so a score is built from the same columns everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import pandas as pd

from features.bgnbd import bgnbd_columns
from features.churn import CUTOFF, ChurnSet

__all__ = [
    "BGNBD_COLUMNS",
    "RANKED_COLUMNS",
    "RANK_SUFFIX",
    "cutoff_rank_reference",
    "fill_cutoff_ranks",
    "with_bgnbd",
    "with_cutoff_ranks",
]

BGNBD_COLUMNS = ("bgnbd_p_alive", "bgnbd_p_no_purchase")


def with_bgnbd(churn_set: ChurnSet) -> ChurnSet:
    """Add the BG/NBD columns (fitted per cutoff, point in time) as features and ``bgnbd`` as a rule baseline.

    Transaction data only; a snapshot is returned unchanged.
    """
    if churn_set.kind != "transactions":
        return churn_set
    frame = churn_set.frame.drop(columns=list(BGNBD_COLUMNS), errors="ignore")
    frame = pd.concat([frame, bgnbd_columns(frame, horizon_days=churn_set.horizon_days)], axis=1)
    numeric = [c for c in churn_set.numeric if c not in BGNBD_COLUMNS] + list(BGNBD_COLUMNS)
    return replace(
        churn_set,
        frame=frame,
        numeric=numeric,
        rule_baselines={**churn_set.rule_baselines, "bgnbd": "bgnbd_p_no_purchase"},
    )


# Features that grow with the customer's age (every cutoff adds days and purchases). A cohort's values at a later
# cutoff lie outside the range the trees were fitted on (cdnow: 1-6 months of tenure fitted, 9-12 scored), so each
# also enters as its percentile rank among the customers active at the same cutoff, which keeps its range.
RANKED_COLUMNS = (
    "recency_days",
    "tenure_days",
    "purchases_total",
    "revenue_total",
    "purchases_180d",
    "revenue_180d",
    "purchases_365d",
    "revenue_365d",
    "mean_gap_days",
    "std_gap_days",
    "last_gap_days",
)
RANK_SUFFIX = "_rank_in_cutoff"


def with_cutoff_ranks(churn_set: ChurnSet) -> ChurnSet:
    """Add ``<column>_rank_in_cutoff``: each of :data:`RANKED_COLUMNS`' percentile rank (0-1] among the rows of
    the same cutoff (missing values stay missing).

    Point in time: a rank only compares feature values at one cutoff, each computed from events at or before it.
    The rows of a cutoff must all be present (ranks are computed on the whole set, after any partitioning).
    Transaction data only; a snapshot is returned unchanged.
    """
    if churn_set.kind != "transactions":
        return churn_set
    columns = [c for c in RANKED_COLUMNS if c in churn_set.frame.columns]
    names = [f"{c}{RANK_SUFFIX}" for c in columns]
    frame = churn_set.frame.drop(columns=names, errors="ignore")
    ranks = frame.groupby(CUTOFF, sort=False)[columns].rank(pct=True)
    ranks.columns = names
    frame = pd.concat([frame, ranks.astype(float)], axis=1)
    numeric = [c for c in churn_set.numeric if c not in names] + names
    return replace(churn_set, frame=frame, numeric=numeric)


def cutoff_rank_reference(reference: pd.DataFrame) -> dict[str, np.ndarray]:
    """The sorted known values of each ranked column of ``reference`` (the snapshot at the cutoff).

    What :func:`fill_cutoff_ranks` ranks against; computed once by a caller that fills ranks for many requests
    against the same snapshot (the service, at load), instead of sorting the snapshot per request.
    """
    return {
        col: np.sort(pd.to_numeric(reference[col], errors="coerce").dropna().to_numpy(dtype=float))
        for col in RANKED_COLUMNS
        if col in reference.columns
    }


def fill_cutoff_ranks(
    frame: pd.DataFrame, reference: pd.DataFrame | Mapping[str, np.ndarray]
) -> pd.DataFrame:
    """Rank columns a caller could not compute, filled against the customers of the same cutoff.

    A client scoring a customer by its feature values knows its ``recency_days`` but not where that lies among
    all customers at the cutoff. For each ``<column>_rank_in_cutoff`` that is missing (absent or NaN) where
    ``<column>`` is given, the rank is what :func:`with_cutoff_ranks` would give the row had it been one of the
    ``reference`` rows (the feature snapshot at the cutoff): the average-tie percentile rank among them and the
    row itself. Rank values that were sent are kept; rows without the raw value keep a missing rank.

    Args:
        frame: rows of feature values (one customer each).
        reference: the snapshot the model scores at (every active customer at the cutoff), or its
            :func:`cutoff_rank_reference`.

    Returns:
        A copy of ``frame`` with the rank columns filled where possible.
    """
    known_by_col = cutoff_rank_reference(reference) if isinstance(reference, pd.DataFrame) else reference
    out = frame.copy()
    for col, known in known_by_col.items():
        name = f"{col}{RANK_SUFFIX}"
        if col not in out.columns:
            continue
        values = pd.to_numeric(out[col], errors="coerce").to_numpy(dtype=float)
        below = np.searchsorted(known, values, side="left")
        at_or_below = np.searchsorted(known, values, side="right")
        # the row itself joins the ties: positions below+1 .. at_or_below+1, averaged; n + 1 rows in all
        rank = ((below + 1) + (at_or_below + 1)) / 2.0 / (len(known) + 1)
        rank = np.where(np.isnan(values), np.nan, rank)
        given = (
            pd.to_numeric(out[name], errors="coerce").to_numpy(dtype=float)
            if name in out.columns
            else np.full(len(out), np.nan)
        )
        out[name] = np.where(np.isnan(given), rank, given)
    return out
