"""A lead's point-in-time context, from what was known before its decision time.

* :func:`point_in_time_rates`: win rates and closed-deal counts per owner / product / ..., from deals closed
  strictly before the decision time;
* :func:`period_context`: for row-ordered leads, how busy the recent periods were and how they converted;
* :func:`activity_counts`: activity events per type strictly before the decision time.

Used by :func:`features.leads.lead_features` for training sets. New leads are all decided at one moment (the end
of the data; row-ordered data: right after its last row), so what the history says about them is fixed for a
loaded data set: :class:`RatesAsOf`, :class:`ActivitiesAsOf` and :class:`NextPeriod` (bundled as
:class:`KnownContext`) count it once, when a model is loaded, and a request only looks its rows up. Each gives
exactly what the function above it gives for rows decided at that moment (tests/unit/test_lead_context_asof.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from features.spec import CLOSED_AT, ENTITY_ID, LEAD_ID, TIME

__all__ = [
    "DECISION_TIME",
    "LABEL",
    "PERIOD_WINDOWS",
    "ActivitiesAsOf",
    "KnownContext",
    "NextPeriod",
    "RatesAsOf",
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
        out[f"{key}_win_rate"] = _smoothed(w, n, prior, prior_strength)
        out[f"{key}_closed_deals"] = n
    out.index = partition.index
    return out


def _smoothed(wins: np.ndarray, deals: np.ndarray, prior: np.ndarray | float, strength: float) -> np.ndarray:
    """A group's win rate pulled toward ``prior`` by ``strength`` pseudo-deals (one formula for both paths)."""
    return (wins + strength * prior) / (deals + strength)


PERIOD_WINDOWS = (1, 5, 20)
_MISSING = "<missing>"  # a missing period key counts as a value of its own


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
        codes, _ = pd.factorize(frame[col].astype("string").fillna(_MISSING))
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


# --- the same context for rows all decided at one moment, counted once ------------------------------------


@dataclass(frozen=True)
class RatesAsOf:
    """:func:`point_in_time_rates` of rows all decided at ``at``, from per-group counts made once.

    Attributes:
        at: the decision time of every row scored (new leads: the end of the data).
        deals, wins: deals closed strictly before ``at``, and how many were won (all groups).
        groups: key -> (its values, closed deals per value, wins per value).
        prior_strength: see :func:`point_in_time_rates`.
    """

    at: pd.Timestamp
    deals: float
    wins: float
    groups: dict[str, tuple[pd.Index, np.ndarray, np.ndarray]]
    prior_strength: float = 10.0

    @classmethod
    def count(
        cls, history: pd.DataFrame, keys: Iterable[str], at: pd.Timestamp, *, prior_strength: float = 10.0
    ) -> RatesAsOf:
        """Count ``history`` (closed deals with ``closed_at``, ``label``, the keys) before ``at``, per key."""
        hist = history[history[LABEL].notna() & history[CLOSED_AT].notna()]
        hist = hist[hist[CLOSED_AT] < at]  # strictly before, as point_in_time_rates' as-of join
        groups = {}
        for key in keys:
            per = hist[[key, LABEL]].dropna(subset=[key]).groupby(key, observed=True, sort=False)[LABEL]
            sums = per.agg(["size", "sum"])
            values = pd.Index(sums.index.to_numpy(dtype=object), dtype=object)
            groups[key] = (values, sums["size"].to_numpy(dtype=float), sums["sum"].to_numpy(dtype=float))
        return cls(at, float(len(hist)), float(hist[LABEL].sum()), groups, prior_strength)

    def __call__(self, partition: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
        """``{key}_win_rate`` and ``{key}_closed_deals`` per key, aligned with ``partition`` (look-ups only)."""
        values = {key: partition[key].to_numpy(dtype=object) for key in keys}
        return pd.DataFrame(self.look_up(values, len(partition)), index=partition.index)

    @cached_property
    def _positions(self) -> dict[str, dict[Any, int]]:
        """key -> value -> its position in ``groups[key]`` (made once, on first use)."""
        return {key: {v: i for i, v in enumerate(values)} for key, (values, _, _) in self.groups.items()}

    def look_up(self, values: Mapping[str, Sequence[Any]], n: int) -> dict[str, np.ndarray]:
        """The columns of :meth:`__call__` for ``n`` rows given each key's values (missing or unknown: none)."""
        prior = self.wins / max(self.deals, 1.0) if self.deals > 0 else np.nan
        out: dict[str, np.ndarray] = {}
        for key, column in values.items():
            _, deals, wins = self.groups[key]
            at = self._positions[key]
            pos = np.fromiter((at.get(v, -1) for v in column), dtype=np.int64, count=n)  # as get_indexer
            n_deals = np.where(pos >= 0, deals[pos], 0.0) if len(deals) else np.zeros(n)
            n_wins = np.where(pos >= 0, wins[pos], 0.0) if len(deals) else np.zeros(n)
            out[f"{key}_win_rate"] = _smoothed(n_wins, n_deals, prior, self.prior_strength)
            out[f"{key}_closed_deals"] = n_deals
        return out


@dataclass(frozen=True)
class ActivitiesAsOf:
    """:func:`activity_counts` of rows all decided at ``at``: events per entity and type before it, counted once.

    Attributes:
        types: the types counted (``n_{type}`` columns), fixed by the data set.
        counts: entity id -> events strictly before ``at``, one float column per type.
    """

    types: list[str]
    counts: pd.DataFrame

    @classmethod
    def count(
        cls, activities: pd.DataFrame, at: pd.Timestamp, types: Iterable[str] | None = None
    ) -> ActivitiesAsOf:
        """Count ``activities`` (``entity_id``, ``time``, ``type``) before ``at`` (every type present by default)."""
        types = sorted(activities["type"].dropna().astype(str).unique()) if types is None else list(types)
        ev = activities[activities[TIME] < at]
        counts = pd.crosstab(ev[ENTITY_ID], ev["type"].astype(str)) if len(ev) else pd.DataFrame()
        counts = counts.reindex(columns=types, fill_value=0).astype(float)
        counts.index = pd.Index(counts.index.to_numpy(dtype=object), dtype=object)
        return cls(types, counts)

    def __call__(self, partition: pd.DataFrame) -> pd.DataFrame:
        """One ``n_{type}`` column per type, aligned with ``partition`` (by ``lead_id``; 0 for unknown ids)."""
        return pd.DataFrame(self.look_up(partition[LEAD_ID].to_numpy(dtype=object)), index=partition.index)

    @cached_property
    def _positions(self) -> dict[Any, int]:
        return {v: i for i, v in enumerate(self.counts.index)}

    def look_up(self, lead_ids: Sequence[Any]) -> dict[str, np.ndarray]:
        """The columns of :meth:`__call__` for the given lead ids."""
        pos = np.fromiter((self._positions.get(v, -1) for v in lead_ids), dtype=np.int64, count=len(lead_ids))
        out = {}
        for t in self.types:
            col = self.counts[t].to_numpy()
            out[f"n_{t}"] = np.where(pos >= 0, col[pos], 0.0) if len(col) else np.zeros(len(pos))
        return out


_NEW_PERIOD = "<a period after the data>"


@dataclass(frozen=True)
class NextPeriod:
    """:func:`period_context` of a new row right after the data, for both rows such a row can be.

    A period starts where the period columns change from one row to the next, and nothing else about the key
    matters; so a new row either continues the data's last period (its period columns read as the last row's)
    or starts a new one, whatever its key. Both contexts are computed once, with the new row's own outcome
    unknown, and each row of a batch gets one of them: never dependent on the rest of the batch or its order.

    Attributes:
        period_columns: the columns whose change starts a period.
        last: the data's last row, its period columns (empty without rows).
        continued: the context of a row continuing the last period (None without rows).
        started: the context of a row starting a new period.
    """

    period_columns: list[str]
    last: pd.DataFrame
    continued: pd.Series | None
    started: pd.Series

    @classmethod
    def after(
        cls, history: pd.DataFrame, period_columns: Sequence[str], *, prior_strength: float = 10.0
    ) -> NextPeriod:
        """From ``history``: the data's rows in time order with the period columns and ``label``."""
        cols = list(period_columns)
        history = history[[*cols, LABEL]].reset_index(drop=True)
        last = history[cols].iloc[-1:]

        def next_row(key: pd.DataFrame) -> pd.Series:
            row = key.reset_index(drop=True).assign(**{LABEL: np.nan})
            rows = pd.concat([history, row], ignore_index=True)
            return period_context(rows, cols, prior_strength=prior_strength).iloc[-1]

        new_key = pd.DataFrame({c: [_NEW_PERIOD] for c in cols})
        continued = next_row(last) if len(history) else None
        return cls(cols, last, continued, next_row(new_key))

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The context of each row of ``frame`` as the single next row after the data, aligned with ``frame``."""
        goes_on = np.zeros(len(frame), dtype=bool)
        if self.continued is not None:
            # The normalisation period_context compares keys with, on the last row and the batch together.
            keys = pd.concat([self.last, frame[self.period_columns]], ignore_index=True)
            goes_on[:] = True
            for col in self.period_columns:
                text = keys[col].astype("string").fillna(_MISSING).to_numpy(dtype=object)
                goes_on &= text[1:] == text[0]
        return pd.DataFrame(self.rows(goes_on), index=frame.index, columns=self.started.index)

    @cached_property
    def last_text(self) -> tuple[str, ...] | None:
        """The last row's period columns as :meth:`__call__` compares them with a batch of texts (missing:
        a value of its own); None without rows."""
        if self.continued is None:
            return None
        probe = pd.DataFrame({c: ["text"] for c in self.period_columns}, dtype=object)
        keys = pd.concat([self.last, probe], ignore_index=True)
        return tuple(keys[c].astype("string").fillna(_MISSING).iloc[0] for c in self.period_columns)

    def goes_on(self, texts: Sequence[Sequence[str | None]]) -> np.ndarray:
        """Per row, whether it continues the last period, from its period columns as texts (None: missing)."""
        last = self.last_text
        if last is None:
            return np.zeros(len(texts), dtype=bool)
        return np.array(
            [
                all((v if v is not None else _MISSING) == t for v, t in zip(row, last, strict=True))
                for row in texts
            ],
            dtype=bool,
        )

    def rows(self, goes_on: np.ndarray) -> np.ndarray:
        """The context (one row per entry, the columns of ``started``) of rows that do or do not go on."""
        started = self.started.to_numpy(dtype=float)
        continued = started if self.continued is None else self.continued.to_numpy(dtype=float)
        return np.where(goes_on[:, None], continued[None, :], started[None, :])


@dataclass(frozen=True)
class KnownContext:
    """What the loaded data says about any new lead, computed once per loaded model (each part None when the
    data set has no such context)."""

    rates: RatesAsOf | None = None
    activities: ActivitiesAsOf | None = None
    period: NextPeriod | None = None
