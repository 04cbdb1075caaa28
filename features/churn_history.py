"""Point-in-time churn features and labels of one partition of customers, from their purchase history.

:func:`churn_partition` is the unit of work: a pure function of one partition of customers (their transactions and
attributes) plus the cutoffs, so the same function can be mapped over Dask partitions. Every value at a cutoff uses
only transactions with ``time <= cutoff`` (whole days), and a label only the ``H`` days after it. Everything is
vectorised with sorted ``(customer, day)`` keys and ``searchsorted`` (no per-customer loops): :class:`_History`
holds a partition's purchase days with per-customer prefix sums, and each window is two look-ups.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.churn_checks import check_horizon
from features.spec import AMOUNT, CHURN_LABEL, CHURNED_AT, CUSTOMER_ID, QUANTITY, TIME

__all__ = [
    "CUTOFF",
    "DEFAULT_LOOKBACK_DAYS",
    "DEFAULT_WINDOWS",
    "LABEL",
    "REVENUE_12M",
    "attribute_columns",
    "churn_features",
    "churn_labels",
    "churn_partition",
]

CUTOFF = "cutoff"
LABEL = "label"
REVENUE_12M = "revenue_12m"  # trailing 12-month revenue at the cutoff (revenue at risk = probability x this)
DEFAULT_WINDOWS = (30, 90, 180, 365)
DEFAULT_LOOKBACK_DAYS = 365
_MAX_CATEGORIES = (
    50  # text attributes with more distinct values than this (and mostly unique) are ids, not features
)


# --- the history arrays ----------------------------------------------------------------------------------


def _days(values: pd.Series | np.ndarray | Sequence[pd.Timestamp]) -> np.ndarray:
    """Whole days since 1970-01-01 (int64)."""
    return (
        np.asarray(pd.to_datetime(np.asarray(values)), dtype="datetime64[ns]")
        .astype("datetime64[D]")
        .astype(np.int64)
    )


@dataclass(frozen=True)
class _History:
    """Purchase days of one partition, sorted by (customer code, day), with prefix sums for window queries.

    The prefix sums restart at each customer (``cum_*[i]`` = the customer's total from its first purchase day
    through day ``i``), so a window sum at a cutoff adds exactly the customer's own days up to the cutoff, in the
    same order, whatever happens later or to other customers: a global running sum would carry their later
    amounts in its rounding, and ranks of equal totals would then depend on events after the cutoff.
    """

    ids: pd.Index  # customer id per code
    code: np.ndarray  # per purchase day
    day: np.ndarray
    key: np.ndarray  # code * shift + (day - origin), sorted
    origin: int
    shift: int
    start: np.ndarray  # first purchase-day index of each code
    cum_amount: np.ndarray  # per-customer running sums, one per purchase day (see :meth:`window`)
    cum_lines: np.ndarray
    cum_quantity: np.ndarray | None
    cum_gap_sq: np.ndarray  # squared gaps to the previous purchase day of the same customer
    gap: np.ndarray
    row_code: np.ndarray  # customer code of each transaction row
    row_day: np.ndarray  # day of each transaction row

    @classmethod
    def build(cls, tx: pd.DataFrame) -> _History:
        codes, ids = pd.factorize(tx[CUSTOMER_ID], sort=True)
        day = _days(tx[TIME])
        origin = int(day.min()) - 1 if len(day) else 0
        shift = int(day.max() - origin) + 2 if len(day) else 2
        raw_key = codes.astype(np.int64) * shift + (day - origin)
        key, inverse = np.unique(raw_key, return_inverse=True)
        amount = np.bincount(inverse, weights=tx[AMOUNT].to_numpy(dtype=float), minlength=len(key))
        lines = np.bincount(inverse, minlength=len(key)).astype(float)
        quantity = None
        if QUANTITY in tx.columns:
            quantity = np.bincount(inverse, weights=tx[QUANTITY].to_numpy(dtype=float), minlength=len(key))
        code = key // shift
        pday = key % shift + origin
        start = np.searchsorted(code, np.arange(len(ids)), side="left")
        gap = np.diff(pday, prepend=pday[:1] if len(pday) else pday).astype(float)
        gap[start[start < len(gap)]] = 0.0

        def cum(a: np.ndarray) -> np.ndarray:
            return pd.Series(a, dtype=float).groupby(code, sort=False).cumsum().to_numpy()

        return cls(
            ids=pd.Index(ids),
            code=code,
            day=pday,
            key=key,
            origin=origin,
            shift=shift,
            start=start,
            cum_amount=cum(amount),
            cum_lines=cum(lines),
            cum_quantity=None if quantity is None else cum(quantity),
            cum_gap_sq=cum(gap**2),
            gap=gap,
            row_code=codes.astype(np.int64),
            row_day=day,
        )

    def window(self, cum: np.ndarray, s: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Sum over purchase days ``lo .. hi - 1`` of customers whose first day index is ``s`` (``s <= lo <= hi``)."""
        upper = np.where(hi > s, cum[np.maximum(hi - 1, 0)], 0.0) if len(cum) else np.zeros(len(hi))
        lower = np.where(lo > s, cum[np.maximum(lo - 1, 0)], 0.0) if len(cum) else np.zeros(len(lo))
        return upper - lower

    def upto(self, code: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Index one past the last purchase day of ``code`` at or before ``day``."""
        offset = np.clip(day - self.origin, 0, self.shift - 1)
        return np.searchsorted(self.key, code * self.shift + offset, side="right")


def _distinct_upto(values: np.ndarray, hist: _History, code: np.ndarray, day: np.ndarray) -> np.ndarray:
    """How many distinct ``values`` (one per transaction row) each customer had bought at or before ``day``."""
    value, _ = pd.factorize(values)  # missing -> -1
    valid = value >= 0
    n_values = int(value.max()) + 1 if valid.any() else 1
    pair = hist.row_code[valid] * n_values + value[valid]
    combined = np.unique(pair * hist.shift + (hist.row_day[valid] - hist.origin))
    pairs = combined // hist.shift
    first = np.r_[True, pairs[1:] != pairs[:-1]] if len(pairs) else np.zeros(0, bool)
    key = np.sort((pairs[first] // n_values) * hist.shift + combined[first] % hist.shift)
    offset = np.clip(day - hist.origin, 0, hist.shift - 1)
    hi = np.searchsorted(key, code * hist.shift + offset, side="right")
    lo = np.searchsorted(key, code * hist.shift, side="left")
    return (hi - lo).astype(float)


def churn_features(
    transactions: pd.DataFrame,
    cutoffs: Sequence[pd.Timestamp],
    *,
    customers: pd.DataFrame | None = None,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    lookback_days: int = DEFAULT_LOOKBACK_DAYS,
    breadth: Sequence[str] = (),
    horizon_days: int | None = None,
    _hist: _History | None = None,
) -> pd.DataFrame:
    """Point-in-time features of every customer active at each cutoff (one partition of customers).

    A customer is active at a cutoff when they bought in ``(cutoff - lookback_days, cutoff]``. Every value uses
    only transactions with ``time <= cutoff`` (whole days); nothing after a cutoff can change a row.

    Args:
        transactions: canonical columns ``customer_id``, ``time``, ``amount`` (``quantity`` and the ``breadth``
            columns optional).
        cutoffs: the cutoff dates.
        customers: optional attributes, one row per ``customer_id``; date columns become ages in days at the
            cutoff, ``churn_label`` / ``churned_at`` are never features.
        windows: trailing windows (days) for purchase counts and revenue; 365 is always computed.
        lookback_days: activity window that decides who gets a row.
        breadth: columns whose distinct values bought so far are counted (product_id, product series, ...).
        horizon_days: H; adds ``purchases_same_window_last_year``, the purchase days in the H days that
            followed the cutoff's date one year earlier (seasonal propensity, still in the past).

    Returns:
        ``customer_id``, ``cutoff``, the feature columns and ``revenue_12m``, sorted by cutoff and customer.
    """
    hist = _hist if _hist is not None else _History.build(transactions)
    return _features(hist, transactions, cutoffs, customers, windows, lookback_days, breadth, horizon_days)[0]


def _features(
    hist: _History,
    transactions: pd.DataFrame,
    cutoffs: Sequence[pd.Timestamp],
    customers: pd.DataFrame | None,
    windows: Sequence[int],
    lookback_days: int,
    breadth: Sequence[str],
    horizon_days: int | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The features and each row's customer code."""
    windows = sorted({*windows, 365, 90, 180})
    cut_days = _days(list(cutoffs))
    n_cust = len(hist.ids)
    code = np.tile(np.arange(n_cust, dtype=np.int64), len(cut_days))
    t = np.repeat(cut_days, n_cust)
    hi = hist.upto(code, t)
    lo_active = hist.upto(code, t - lookback_days)
    active = hi > lo_active
    code, t, hi = code[active], t[active], hi[active]
    s = hist.start[code]
    n = (hi - s).astype(float)
    last = hist.day[hi - 1]
    first = hist.day[s]
    out: dict[str, np.ndarray] = {
        "recency_days": (t - last).astype(float),
        "tenure_days": (t - first).astype(float),
        "purchases_total": n,
        "revenue_total": hist.window(hist.cum_amount, s, s, hi),
    }
    lo_w: dict[int, np.ndarray] = {}
    for w in windows:
        lo_w[w] = hist.upto(code, t - w)
        out[f"purchases_{w}d"] = (hi - lo_w[w]).astype(float)
        out[f"revenue_{w}d"] = hist.window(hist.cum_amount, s, lo_w[w], hi)
    prev90 = (lo_w[90] - lo_w[180]).astype(float)
    if horizon_days is not None and horizon_days < 365:
        out["purchases_same_window_last_year"] = (hist.upto(code, t - 365 + horizon_days) - lo_w[365]).astype(
            float
        )
    prev90_rev = hist.window(hist.cum_amount, s, lo_w[180], lo_w[90])
    with np.errstate(divide="ignore", invalid="ignore"):
        multi = n >= 2
        mean_gap = np.where(multi, (last - first) / np.maximum(n - 1, 1), np.nan)
        sq = hist.window(hist.cum_gap_sq, s, s, hi)
        var = np.where(multi, sq / np.maximum(n - 1, 1) - mean_gap**2, np.nan)
        std_gap = np.sqrt(np.clip(var, 0, None))
        out["mean_gap_days"] = mean_gap
        out["std_gap_days"] = std_gap
        out["gap_cv"] = std_gap / mean_gap
        out["last_gap_days"] = np.where(multi, hist.gap[hi - 1], np.nan)
        out["recency_over_mean_gap"] = out["recency_days"] / mean_gap
        # Share of the customer's life spent since the last purchase: the BG/NBD "t_x / T" idea, stable across
        # cutoffs where raw recency and tenure keep growing.
        out["recency_over_tenure"] = out["recency_days"] / np.maximum(out["tenure_days"], 1.0)
        out["purchases_per_30d"] = n * 30.0 / np.maximum(out["tenure_days"], 30.0)
        out["recent_share_90d"] = out["purchases_90d"] / n
        out["trend_purchases_90d"] = np.log((out["purchases_90d"] + 1.0) / (prev90 + 1.0))
        out["trend_revenue_90d"] = np.log1p(np.clip(out["revenue_90d"], 0, None)) - np.log1p(
            np.clip(prev90_rev, 0, None)
        )
        out["avg_purchase_value"] = out["revenue_total"] / n
        out["lines_per_purchase"] = hist.window(hist.cum_lines, s, s, hi) / n
        if hist.cum_quantity is not None:
            out["quantity_per_purchase"] = hist.window(hist.cum_quantity, s, s, hi) / n
    for col in breadth:
        if col in transactions.columns:
            out[f"distinct_{col}"] = _distinct_upto(transactions[col].to_numpy(), hist, code, t)
    out[REVENUE_12M] = out["revenue_365d"].copy()
    frame = pd.DataFrame(out)
    frame.insert(0, CUTOFF, t.astype("datetime64[D]").astype("datetime64[ns]"))
    frame.insert(0, CUSTOMER_ID, np.asarray(hist.ids, dtype=object)[code])
    if customers is not None:
        frame = _with_attributes(frame, customers, hist.ids, code)
    return frame, code


def attribute_columns(customers: pd.DataFrame) -> tuple[list[str], list[str], list[str]]:
    """(numeric, categorical, date) attribute columns of a customers table; ids and labels excluded."""
    numeric, categorical, dates = [], [], []
    for col in customers.columns:
        if col in (CUSTOMER_ID, CHURN_LABEL, CHURNED_AT):
            continue
        s = customers[col]
        if pd.api.types.is_datetime64_any_dtype(s):
            dates.append(col)
        elif pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            numeric.append(col)
        else:
            n_distinct = s.nunique(dropna=True)
            if n_distinct > _MAX_CATEGORIES and n_distinct > 0.5 * len(s):
                continue  # free text or an id: not a feature
            categorical.append(col)
    return numeric, categorical, dates


def _with_attributes(
    frame: pd.DataFrame, customers: pd.DataFrame, ids: pd.Index, code: np.ndarray
) -> pd.DataFrame:
    """Attach attributes by customer code (``ids[code]`` is each row's customer); dates become ages in days."""
    numeric, categorical, dates = attribute_columns(customers)
    attrs = customers[[CUSTOMER_ID, *numeric, *categorical, *dates]].drop_duplicates(CUSTOMER_ID)
    attrs = attrs.set_index(CUSTOMER_ID).reindex(ids).iloc[code].reset_index(drop=True)
    attrs.index = frame.index
    for col in numeric:
        frame[col] = attrs[col].astype(float)
    for col in categorical:
        frame[col] = attrs[col].astype("string")
    for col in dates:
        age = (frame[CUTOFF] - attrs[col]).dt.days.astype(float)
        frame[f"{col}_age_days"] = age.where(age >= 0)  # a date after the cutoff is not known at the cutoff
    return frame


def churn_labels(
    transactions: pd.DataFrame,
    keys: pd.DataFrame,
    *,
    horizon_days: int,
    data_end: pd.Timestamp,
    _hist: _History | None = None,
    _codes: np.ndarray | None = None,
) -> pd.Series:
    """Label per ``(customer_id, cutoff)`` row: 1.0 = no purchase in ``(cutoff, cutoff + H]``, NaN if unknown.

    A label is known only when ``cutoff + H <= data_end`` (the whole window is inside the data).
    """
    horizon_days = check_horizon(horizon_days)
    hist = _hist if _hist is not None else _History.build(transactions)
    code = (
        _codes if _codes is not None else hist.ids.get_indexer(keys[CUSTOMER_ID].to_numpy()).astype(np.int64)
    )
    t = _days(keys[CUTOFF])
    nxt = hist.upto(code, t)
    in_range = nxt < len(hist.key)
    nxt_c = np.minimum(nxt, len(hist.key) - 1)
    bought = in_range & (code >= 0) & (hist.code[nxt_c] == code) & (hist.day[nxt_c] <= t + horizon_days)
    label = np.where(bought, 0.0, 1.0)
    known = t + horizon_days <= _days([data_end])[0]
    return pd.Series(np.where(known, label, np.nan), index=keys.index, name=LABEL)


def churn_partition(
    transactions: pd.DataFrame,
    cutoffs: Sequence[pd.Timestamp],
    *,
    horizon_days: int,
    data_end: pd.Timestamp,
    customers: pd.DataFrame | None = None,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    lookback_days: int = DEFAULT_LOOKBACK_DAYS,
    breadth: Sequence[str] = (),
) -> pd.DataFrame:
    """Features and labels of one partition of customers at the given cutoffs (the unit a Dask map would run).

    ``data_end`` is the end of the whole data set (labels after it are unknown), not of this partition.
    """
    hist = _History.build(transactions)
    frame, code = _features(
        hist, transactions, cutoffs, customers, windows, lookback_days, breadth, horizon_days
    )
    frame[LABEL] = churn_labels(
        transactions, frame, horizon_days=horizon_days, data_end=data_end, _hist=hist, _codes=code
    )
    return frame
