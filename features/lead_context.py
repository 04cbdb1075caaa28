"""A lead's point-in-time context, from what was known before its decision time.

* :func:`point_in_time_rates`: win rates and closed-deal counts per owner / product / ..., from deals closed
  strictly before the decision time;
* :func:`period_context`: for row-ordered leads, how busy the recent periods were and how they converted;
* :func:`activity_counts`: activity events per type strictly before the decision time.

Used by :func:`features.leads.lead_features` for training sets and for new leads alike.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from features.spec import CLOSED_AT, ENTITY_ID, LEAD_ID, TIME

__all__ = [
    "DECISION_TIME",
    "LABEL",
    "PERIOD_WINDOWS",
    "activity_counts",
    "period_context",
    "point_in_time_rates",
]

DECISION_TIME = "decision_time"
LABEL = "label"


def point_in_time_rates(
    partition: pd.DataFrame,
    history: pd.DataFrame,
    keys: Iterable[str],
    *,
    prior_strength: float = 10.0,
) -> pd.DataFrame:
    """Win rates and closed-deal counts per group, from deals closed strictly before each row's decision time.

    Args:
        partition: rows with ``decision_time`` (datetime) and the key columns.
        history: closed deals with ``closed_at``, ``label`` (1 won / 0 lost) and the key columns.
        keys: group columns (agent, manager, office, product, ...).
        prior_strength: a group's rate is ``(wins + m * prior) / (deals + m)`` with ``prior`` the overall
            rate of deals closed before the same moment; missing when nothing had closed yet. A row whose key is
            missing (or a group with no earlier closed deal) gets 0 deals and the overall rate, whether or not
            other rows of the partition have the key.

    Returns:
        A frame aligned with ``partition``: ``{key}_win_rate`` and ``{key}_closed_deals`` per key.
    """
    keys = list(keys)
    left = partition[[DECISION_TIME, *keys]].copy()
    left["_row"] = np.arange(len(left))
    left = left.sort_values(DECISION_TIME, kind="stable")
    hist = history[history[LABEL].notna() & history[CLOSED_AT].notna()]
    hist = hist.sort_values(CLOSED_AT, kind="stable")

    def cumulative(by: list[str]) -> pd.DataFrame:
        right = hist[[CLOSED_AT, *by, LABEL]].dropna(subset=by).copy()
        grouped = right.groupby(by, observed=True, sort=False) if by else None
        right["_n"] = grouped.cumcount() + 1 if grouped is not None else np.arange(1, len(right) + 1)
        right["_w"] = grouped[LABEL].cumsum() if grouped is not None else right[LABEL].cumsum()
        return right.drop(columns=LABEL)

    def asof(right: pd.DataFrame, by: list[str]) -> pd.DataFrame:
        lhs = left[[DECISION_TIME, "_row", *by]]
        merged = pd.merge_asof(
            lhs,
            right.rename(columns={CLOSED_AT: DECISION_TIME}),
            on=DECISION_TIME,
            by=by or None,
            allow_exact_matches=False,  # strictly before: a deal closing that very day is not yet known
            direction="backward",
        )
        return merged.set_index("_row").sort_index()

    total = asof(cumulative([]), [])
    n_all = total["_n"].fillna(0).to_numpy()
    prior = np.where(n_all > 0, total["_w"].fillna(0).to_numpy() / np.maximum(n_all, 1), np.nan)
    out = pd.DataFrame(index=pd.RangeIndex(len(partition)))
    for key in keys:
        if partition[key].isna().all():  # e.g. a batch whose one deal has an agent the teams table lacks
            n, w = np.zeros(len(partition)), np.zeros(len(partition))
        else:
            matched = asof(cumulative([key]), [key])
            n = matched["_n"].fillna(0).to_numpy()
            w = matched["_w"].fillna(0).to_numpy()
        out[f"{key}_win_rate"] = (w + prior_strength * prior) / (n + prior_strength)
        out[f"{key}_closed_deals"] = n
    out.index = partition.index
    return out


PERIOD_WINDOWS = (1, 5, 20)


def period_context(
    frame: pd.DataFrame,
    period_columns: Iterable[str],
    *,
    windows: Iterable[int] = PERIOD_WINDOWS,
    prior_strength: float = 10.0,
) -> pd.DataFrame:
    """Point-in-time context of row-ordered leads: how busy the recent periods were and how they converted.

    A new period starts where any of ``period_columns`` changes from one row to the next (``month`` and
    ``day_of_week`` give calendar days). Per row, from earlier rows only:

    * ``log_contacts_so_far_in_period``: log(1 + rows earlier in the row's own period);
    * ``log_contacts_prev{k}_periods``: log(1 + mean rows per period over the ``k`` periods before the row's);
    * ``win_logit_prev{k}_periods``: the log-odds of the win rate of the labelled rows of those ``k`` periods,
      pulled toward the rate of every earlier period with ``prior_strength`` pseudo-rows; missing before any
      outcome is known. Outcomes of the row's own period are never used (they may not be known yet).

    Args:
        frame: rows in time order with ``label`` (1 / 0, missing for open leads) and the period columns.
        period_columns: the columns whose change starts a period.
        windows: the numbers of earlier periods to summarise.
        prior_strength: pseudo-count of the smoothing.

    Returns:
        A frame aligned with ``frame``.
    """
    cols = list(period_columns)
    starts = np.zeros(len(frame), dtype=bool)
    starts[:1] = True
    for col in cols:  # a period starts where any column's value (missing counts as a value) changes
        codes, _ = pd.factorize(frame[col].astype("string").fillna("<missing>"))
        starts[1:] |= codes[1:] != codes[:-1]
    period = np.cumsum(starts)
    label = frame[LABEL].astype(float)
    per = pd.DataFrame({"p": period, "n": 1.0, "w": label.fillna(0.0), "k": label.notna().astype(float)})
    per = per.groupby("p", sort=True)[["n", "w", "k"]].sum()
    cum_w, cum_k = per["w"].cumsum().shift(1), per["k"].cumsum().shift(1)
    prior = (cum_w / cum_k).where(cum_k > 0)
    out = pd.DataFrame(index=frame.index)
    so_far = pd.Series(1.0, index=frame.index).groupby(period).cumsum() - 1.0
    out["log_contacts_so_far_in_period"] = np.log1p(so_far.to_numpy())
    at = pd.Index(per.index).get_indexer(period)
    for k in windows:
        n_prev = per["n"].shift(1).rolling(k, min_periods=1).mean()
        w_prev = per["w"].shift(1).rolling(k, min_periods=1).sum()
        k_prev = per["k"].shift(1).rolling(k, min_periods=1).sum()
        rate = (w_prev + prior_strength * prior) / (k_prev + prior_strength)
        rate = rate.clip(1e-4, 1 - 1e-4)
        out[f"log_contacts_prev{k}_periods"] = np.log1p(n_prev.to_numpy())[at]
        out[f"win_logit_prev{k}_periods"] = np.log(rate / (1 - rate)).to_numpy()[at]
    return out


def activity_counts(
    partition: pd.DataFrame, activities: pd.DataFrame, types: Iterable[str] | None = None
) -> pd.DataFrame:
    """Per lead and activity type, the number of events strictly before the lead's decision time.

    Args:
        partition: rows with ``lead_id`` and ``decision_time`` (datetime).
        activities: ``entity_id``, ``time``, ``type``.
        types: the types to count (all types in ``activities`` when omitted).

    Returns:
        A frame aligned with ``partition`` with one ``n_{type}`` column per type.
    """
    types = sorted(activities["type"].dropna().astype(str).unique()) if types is None else list(types)
    ev = activities[activities[ENTITY_ID].isin(partition[LEAD_ID])]
    ev = ev.merge(
        partition[[LEAD_ID, DECISION_TIME]].rename(columns={LEAD_ID: ENTITY_ID}), on=ENTITY_ID, how="inner"
    )
    ev = ev[ev[TIME] < ev[DECISION_TIME]]
    counts = pd.crosstab(ev[ENTITY_ID], ev["type"].astype(str)) if len(ev) else pd.DataFrame()
    out = pd.DataFrame(index=partition.index)
    for t in types:
        col = counts[t] if t in counts.columns else pd.Series(dtype=float)
        out[f"n_{t}"] = partition[LEAD_ID].map(col).fillna(0).astype(float).to_numpy()
    return out
