"""Churn training sets: one row per (customer, cutoff) from purchase history, or one per customer from a snapshot.

Transaction data (any spec whose transactions map ``customer_id``, ``time`` and ``amount``): at each cutoff
(monthly, aligned to the end of the data) every customer with a purchase in the look-back window gets one row of
features computed **only from events at or before the cutoff** (recency, frequency and revenue over several
windows, inter-purchase gaps and their regularity, trends, tenure, product breadth, customer attributes) and the
label ``1`` = no purchase in the next ``H`` days (``H = spec.churn_horizon_days``), unknown where the label
window runs past the end of the data. The last cutoff (the end of the data) gives the rows to score.

Snapshot data (a customers table with ``churn_label``, e.g. telco): one row per customer, the attributes as
features and the label as given.

The work is done by :func:`churn_partition`, a pure function of one partition of customers (their transactions
and attributes) plus the cutoffs, so the same function can later be mapped over Dask partitions;
:func:`build_churn_set` loads nothing itself: it takes a loaded :class:`~features.load.Dataset`.
Everything is vectorised with sorted ``(customer, day)`` keys and ``searchsorted`` (no per-customer loops).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from features.errors import SalesmlError
from features.load import Dataset, join_lookups
from features.spec import AMOUNT, CHURN_LABEL, CHURNED_AT, CUSTOMER_ID, PRODUCT_ID, QUANTITY, TIME, Role

__all__ = [
    "CUTOFF",
    "DEFAULT_LOOKBACK_DAYS",
    "DEFAULT_N_CUTOFFS",
    "DEFAULT_WINDOWS",
    "LABEL",
    "REVENUE_12M",
    "ChurnInputError",
    "ChurnSet",
    "build_churn_set",
    "check_horizon",
    "check_labels",
    "churn_cutoffs",
    "churn_features",
    "churn_labels",
    "churn_partition",
]

CUTOFF = "cutoff"
LABEL = "label"
REVENUE_12M = "revenue_12m"  # trailing 12-month revenue at the cutoff (revenue at risk = probability x this)
DEFAULT_WINDOWS = (30, 90, 180, 365)
DEFAULT_LOOKBACK_DAYS = 365
DEFAULT_N_CUTOFFS = 12
MIN_HISTORY_DAYS = 90  # the first cutoff leaves at least this much history before it
_MAX_CATEGORIES = (
    50  # text attributes with more distinct values than this (and mostly unique) are ids, not features
)


class ChurnInputError(SalesmlError):
    """The data or options cannot give a churn training set; the message says what to change."""


@dataclass(frozen=True)
class ChurnSet:
    """A churn training set with its feature lists and the cutoffs it was built at.

    Attributes:
        frame: ``customer_id``, ``cutoff``, the feature columns, ``revenue_12m`` and ``label`` (float: 1.0
            churned, 0.0 stayed, NaN unknown: the rows to score).
        numeric: numeric feature columns.
        categorical: categorical feature columns.
        horizon_days: ``H``; label = no purchase in ``(cutoff, cutoff + H]``.
        kind: ``transactions`` (cutoff series) or ``snapshot`` (one labelled row per customer, no dates).
        label_cutoffs: the cutoffs with known labels, oldest first (empty for snapshots).
        score_cutoff: the last cutoff, whose rows are scored (None for snapshots).
        dataset: the data set name.
    """

    frame: pd.DataFrame
    numeric: list[str]
    categorical: list[str]
    horizon_days: int
    kind: Literal["transactions", "snapshot"]
    label_cutoffs: tuple[pd.Timestamp, ...] = ()
    score_cutoff: pd.Timestamp | None = None
    dataset: str = ""
    rule_baselines: dict[str, str] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def labeled(self) -> pd.DataFrame:
        """Rows whose label is known (training, calibration and test data)."""
        return self.frame[self.frame[LABEL].notna()].reset_index(drop=True)

    def to_score(self) -> pd.DataFrame:
        """The rows to score: every active customer at the last cutoff (snapshots: every customer)."""
        if self.kind == "snapshot":
            return self.frame.reset_index(drop=True)
        return self.frame[self.frame[CUTOFF] == self.score_cutoff].reset_index(drop=True)


# --- checks -------------------------------------------------------------------------------------------------


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


def _transaction_roles(dataset: Dataset) -> pd.DataFrame | None:
    """The transactions table if it maps customer_id, time and amount; None if there is none."""
    found = dataset.spec.table_of(Role.transactions)
    if found is None:
        return None
    name, spec = found
    missing = [c for c in (CUSTOMER_ID, TIME, AMOUNT) if c not in spec.columns]
    if missing:
        raise ChurnInputError(
            f"data set {dataset.name!r}: churn from purchase history needs the transactions table {name!r} to map "
            f"customer_id, time and amount; it does not map {missing} (spec {dataset.spec_path}). "
            "Add them under 'columns', or give a customers table with churn_label for snapshot data."
        )
    return dataset.tables[name]


# --- cutoffs ------------------------------------------------------------------------------------------------


def churn_cutoffs(
    data_start: pd.Timestamp,
    data_end: pd.Timestamp,
    *,
    horizon_days: int,
    n_cutoffs: int | None = DEFAULT_N_CUTOFFS,
    months_between: int = 1,
    min_history_days: int = MIN_HISTORY_DAYS,
) -> tuple[list[pd.Timestamp], pd.Timestamp]:
    """Monthly cutoffs aligned to the end of the data: the labelled ones and the one to score.

    A cutoff ``c`` is labelled when ``c + H`` is still inside the data (``c + H <= data_end``) and leaves
    ``min_history_days`` of history before it. The latest ``n_cutoffs`` labelled cutoffs are kept (all if None).

    Returns:
        (labelled cutoffs oldest first, the scoring cutoff = ``data_end``)
    """
    horizon_days = check_horizon(horizon_days)
    data_start, data_end = pd.Timestamp(data_start).normalize(), pd.Timestamp(data_end).normalize()
    last_labelled = data_end - pd.Timedelta(days=horizon_days)
    earliest = data_start + pd.Timedelta(days=min_history_days)
    cutoffs: list[pd.Timestamp] = []
    k = 1
    while True:
        c = data_end - pd.DateOffset(months=k * months_between)
        if c < earliest:
            break
        if c <= last_labelled:
            cutoffs.append(pd.Timestamp(c))
        k += 1
    cutoffs = sorted(cutoffs)
    if n_cutoffs is not None:
        cutoffs = cutoffs[-n_cutoffs:]
    if not cutoffs:
        raise ChurnInputError(
            f"the purchase history runs {data_start:%Y-%m-%d} .. {data_end:%Y-%m-%d}: too short for labels with "
            f"H = {horizon_days} days after {min_history_days} days of history; a labelled cutoff needs "
            f"{min_history_days + horizon_days} days of data (or choose a shorter horizon)"
        )
    return cutoffs, data_end


# --- the vectorised kernel ----------------------------------------------------------------------------------


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


def _attribute_columns(customers: pd.DataFrame) -> tuple[list[str], list[str], list[str]]:
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
    numeric, categorical, dates = _attribute_columns(customers)
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


# --- data set entry point -----------------------------------------------------------------------------------


def _breadth_frame(dataset: Dataset, tx: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Transactions with the text columns of product lookups joined, and the breadth columns to count."""
    if PRODUCT_ID not in tx.columns:
        return tx, []
    cols = [PRODUCT_ID]
    for name, spec in dataset.spec.tables.items():
        if spec.role is Role.lookup and spec.key == PRODUCT_ID:
            lookup = dataset.tables[name]
            text = [
                c
                for c in lookup.columns
                if c != PRODUCT_ID
                and c not in tx.columns
                and not pd.api.types.is_numeric_dtype(lookup[c])
                and lookup[c].nunique() < lookup[PRODUCT_ID].nunique()
            ]
            if text:
                right = lookup[[PRODUCT_ID, *text]].astype({PRODUCT_ID: tx[PRODUCT_ID].dtype})
                tx = tx.merge(right, on=PRODUCT_ID, how="left", validate="many_to_one")
                cols += text
    return tx, cols


def _partitions(ids: pd.Series, n_partitions: int) -> np.ndarray:
    return (pd.util.hash_array(ids.astype(str).to_numpy()) % np.uint64(n_partitions)).astype(np.int64)


def build_churn_set(
    dataset: Dataset,
    *,
    horizon_days: int | None = None,
    n_cutoffs: int | None = DEFAULT_N_CUTOFFS,
    as_of: pd.Timestamp | str | None = None,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    lookback_days: int = DEFAULT_LOOKBACK_DAYS,
    n_partitions: int = 1,
) -> ChurnSet:
    """The churn training set of a loaded data set (transactions at cutoffs, or a labelled snapshot).

    Args:
        dataset: a loaded data set.
        horizon_days: ``H``; defaults to ``spec.churn_horizon_days``.
        n_cutoffs: how many of the latest labelled monthly cutoffs to build (None: all).
        as_of: the scoring cutoff; defaults to the last transaction date. Events after it are ignored.
        windows: trailing windows (days) for counts and revenue.
        lookback_days: a customer is scored / trained on at a cutoff if they bought within this many days.
        n_partitions: split customers into this many hash partitions and build each on its own (the result is
            the same; this is the shape a distributed run takes).

    Raises:
        ChurnInputError: missing roles, a non-positive horizon, too little history, no active customer at the
            last cutoff, or labels that are not two classes.
    """
    horizon = check_horizon(dataset.spec.churn_horizon_days if horizon_days is None else horizon_days)
    as_of = parse_as_of(as_of)
    tx = _transaction_roles(dataset)
    customers = dataset.table(Role.customers)
    if tx is None:
        if customers is not None and CHURN_LABEL in customers.columns:
            if as_of is not None:
                raise ChurnInputError(
                    f"--as-of applies to purchase history; data set {dataset.name!r} is a snapshot (one labelled "
                    "row per customer, no dates): leave --as-of out"
                )
            return _snapshot_set(dataset, customers, horizon)
        raise ChurnInputError(
            f"data set {dataset.name!r} has neither a transactions table (customer_id, time, amount) nor a "
            f"customers table with churn_label; churn needs one of them (spec {dataset.spec_path})"
        )
    if customers is not None:
        customers = join_lookups(customers, dataset)
    tx = tx[[c for c in tx.columns if c in (CUSTOMER_ID, TIME, AMOUNT, QUANTITY, PRODUCT_ID)]]
    last_purchase = tx[TIME].max()
    if as_of is not None:
        tx = tx[tx[TIME] < as_of + pd.Timedelta(days=1)]
        if tx.empty:
            raise ChurnInputError(f"no transaction at or before --as-of {as_of:%Y-%m-%d}")
    tx, breadth = _breadth_frame(dataset, tx)
    data_end = pd.Timestamp(as_of) if as_of is not None else tx[TIME].max().normalize()
    label_cutoffs, score_cutoff = churn_cutoffs(
        tx[TIME].min(), data_end, horizon_days=horizon, n_cutoffs=n_cutoffs
    )
    cutoffs = [*label_cutoffs, score_cutoff]
    parts = []
    part_of = _partitions(tx[CUSTOMER_ID], n_partitions) if n_partitions > 1 else np.zeros(len(tx), np.int64)
    for p in range(n_partitions):
        tx_p = tx[part_of == p] if n_partitions > 1 else tx
        cust_p = customers
        if customers is not None and n_partitions > 1:
            cust_p = customers[customers[CUSTOMER_ID].isin(tx_p[CUSTOMER_ID].unique())]
        parts.append(
            churn_partition(
                tx_p,
                cutoffs,
                horizon_days=horizon,
                data_end=data_end,
                customers=cust_p,
                windows=windows,
                lookback_days=lookback_days,
                breadth=breadth,
            )
        )
    frame = parts[0]  # one partition: already ordered by cutoff, then customer id
    if len(parts) > 1:
        frame = pd.concat(parts, ignore_index=True).sort_values([CUTOFF, CUSTOMER_ID], kind="stable")
        frame = frame.reset_index(drop=True)
    n_score = int((frame[CUTOFF] == score_cutoff).sum())
    if n_score == 0:
        raise ChurnInputError(
            f"no active customer at the last cutoff {score_cutoff:%Y-%m-%d}: nobody bought in the "
            f"{lookback_days} days before it, so there is nothing to score (the last purchase in the data is on "
            f"{last_purchase:%Y-%m-%d}; choose an --as-of within {lookback_days} days after a purchase, or check "
            "the transactions' dates)"
        )
    check_labels(frame[LABEL], where=f"data set {dataset.name!r}, labels at {len(label_cutoffs)} cutoff(s)")
    keys = {CUSTOMER_ID, CUTOFF, LABEL, REVENUE_12M}
    attr_num, attr_cat, _ = _attribute_columns(customers) if customers is not None else ([], [], [])
    categorical = [c for c in attr_cat if c in frame.columns]
    numeric = [c for c in frame.columns if c not in keys and c not in categorical]
    return ChurnSet(
        frame=frame,
        numeric=numeric,
        categorical=categorical,
        horizon_days=horizon,
        kind="transactions",
        label_cutoffs=tuple(label_cutoffs),
        score_cutoff=score_cutoff,
        dataset=dataset.name,
        rule_baselines={"recency_rule": "recency_days"},
    )


def _snapshot_set(dataset: Dataset, customers: pd.DataFrame, horizon: int) -> ChurnSet:
    """One row per customer: attributes as features and the given churn_label."""
    customers = join_lookups(customers, dataset)
    numeric, categorical, dates = _attribute_columns(customers)
    frame = customers[[CUSTOMER_ID, *numeric, *categorical]].copy()
    frame = frame.astype({c: float for c in numeric} | {c: "string" for c in categorical})
    frame.insert(1, CUTOFF, pd.NaT)
    frame[CUTOFF] = frame[CUTOFF].astype("datetime64[ns]")
    frame[LABEL] = check_labels(
        customers[CHURN_LABEL], where=f"data set {dataset.name!r}, column churn_label"
    )
    if frame[LABEL].isna().any():
        raise ChurnInputError(
            f"data set {dataset.name!r}: churn_label is empty for {int(frame[LABEL].isna().sum())} customer(s); "
            "snapshot data needs a label on every row"
        )
    return ChurnSet(
        frame=frame,
        numeric=numeric,
        categorical=categorical,
        horizon_days=horizon,
        kind="snapshot",
        dataset=dataset.name,
    )
