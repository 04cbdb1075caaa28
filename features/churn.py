"""Churn training sets: one row per (customer, cutoff) from purchase history, or one per customer from a snapshot.

Transaction data (any spec whose transactions map ``customer_id``, ``time`` and ``amount``): at each cutoff
(monthly, aligned to the end of the data) every customer with a purchase in the look-back window gets one row of
features computed **only from events at or before the cutoff** (recency, frequency and revenue over several
windows, inter-purchase gaps and their regularity, trends, tenure, product breadth, customer attributes) and the
label ``1`` = no purchase in the next ``H`` days (``H = spec.churn_horizon_days``), unknown where the label
window runs past the end of the data. The last cutoff (the end of the data) gives the rows to score.

Snapshot data (a customers table with ``churn_label``, e.g. telco): one row per customer, the attributes as
features and the label as given.

The stages live in their own modules: the option and label checks in :mod:`features.churn_checks`, the
point-in-time kernel (:func:`~features.churn_history.churn_partition`, a pure function of one partition of
customers plus the cutoffs, the unit a Dask map runs) in :mod:`features.churn_history`. This module picks the
cutoffs and builds the set of a loaded :class:`~features.load.Dataset` (it loads nothing itself); it re-exports the
names callers use, so ``features.churn`` stays the one entry point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from features.churn_checks import ChurnInputError, check_horizon, check_labels, parse_as_of
from features.churn_history import (
    CUTOFF,
    DEFAULT_LOOKBACK_DAYS,
    DEFAULT_WINDOWS,
    LABEL,
    REVENUE_12M,
    attribute_columns,
    churn_features,
    churn_labels,
    churn_partition,
)
from features.distributed import entity_buckets, gather, map_partitions, n_workers
from features.load import Dataset, join_lookups
from features.spec import AMOUNT, CHURN_LABEL, CUSTOMER_ID, PRODUCT_ID, QUANTITY, TIME, Role

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
    "parse_as_of",
]

DEFAULT_N_CUTOFFS = 12
MIN_HISTORY_DAYS = 90  # the first cutoff leaves at least this much history before it


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


def _transaction_name(dataset: Dataset) -> str | None:
    """The transactions table's name if it maps customer_id, time and amount; None if there is none."""
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
    return name


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


# --- data set entry point -----------------------------------------------------------------------------------


def _breadth_lookup(dataset: Dataset, tx_columns: Sequence[str]) -> tuple[pd.DataFrame | None, list[str]]:
    """The text columns of product lookups to join to the transactions (``product_id`` first), and the breadth
    columns to count."""
    if PRODUCT_ID not in tx_columns:
        return None, []
    right: pd.DataFrame | None = None
    for name, spec in dataset.spec.tables.items():
        if spec.role is Role.lookup and spec.key == PRODUCT_ID:
            lookup = dataset.tables[name]
            have = set(tx_columns) | set(() if right is None else right.columns)
            text = [
                c
                for c in lookup.columns
                if c != PRODUCT_ID
                and c not in have
                and not pd.api.types.is_numeric_dtype(lookup[c])
                and lookup[c].nunique() < lookup[PRODUCT_ID].nunique()
            ]
            if text:
                more = lookup[[PRODUCT_ID, *text]]
                right = more if right is None else right.merge(more, on=PRODUCT_ID, how="outer")
    return right, [PRODUCT_ID, *([] if right is None else [c for c in right.columns if c != PRODUCT_ID])]


def _with_breadth(tx: pd.DataFrame, right: pd.DataFrame | None) -> pd.DataFrame:
    if right is None:
        return tx
    right = right.astype({PRODUCT_ID: tx[PRODUCT_ID].dtype})
    return tx.merge(right, on=PRODUCT_ID, how="left", validate="many_to_one")


def _churn_partition(
    transactions: pd.DataFrame, cutoffs: Sequence[pd.Timestamp], customers: pd.DataFrame | None, **kw: Any
) -> pd.DataFrame:
    return churn_partition(transactions, cutoffs, customers=customers, **kw)


def _shuffled_partition(
    cutoffs: Sequence[pd.Timestamp],
    customers: pd.DataFrame | None,
    lookup: pd.DataFrame | None,
    text: Sequence[str],
    *pieces: pd.DataFrame,
    **kw: Any,
) -> pd.DataFrame:
    """One customer partition from its pieces of every part (:func:`features.parted.shuffle_by_customer`)."""
    pieces = tuple(piece for piece in pieces if len(piece)) or pieces[:1]
    tx = pd.concat(pieces, ignore_index=True) if len(pieces) > 1 else pieces[0]
    tx = _with_breadth(tx.astype(dict.fromkeys(text, object)), lookup)
    if customers is not None:
        customers = customers[customers[CUSTOMER_ID].isin(tx[CUSTOMER_ID].unique())]
    return churn_partition(tx, cutoffs, customers=customers, **kw)


_COLUMNS = (CUSTOMER_ID, TIME, AMOUNT, QUANTITY, PRODUCT_ID)  # what the features read of a transaction


def _no_rows_before(as_of: pd.Timestamp) -> ChurnInputError:
    return ChurnInputError(f"no transaction at or before --as-of {as_of:%Y-%m-%d}")


def _in_process(
    dataset: Dataset,
    tx_name: str,
    customers: pd.DataFrame | None,
    as_of: pd.Timestamp | None,
    client: Any | None,
    n_partitions: int,
    *,
    horizon: int,
    n_cutoffs: int | None,
    **kw: Any,
) -> tuple[list[pd.DataFrame], list[pd.Timestamp], pd.Timestamp, pd.Timestamp]:
    """The partitions built from the transactions in this process's memory (here, or sent to ``client``)."""
    tx = dataset.tables[tx_name]
    tx = tx[[c for c in tx.columns if c in _COLUMNS]]
    last_purchase = tx[TIME].max()
    if as_of is not None:
        tx = tx[tx[TIME] < as_of + pd.Timedelta(days=1)]
        if tx.empty:
            raise _no_rows_before(as_of)
    lookup, breadth = _breadth_lookup(dataset, list(tx.columns))
    tx = _with_breadth(tx, lookup)
    data_end = pd.Timestamp(as_of) if as_of is not None else tx[TIME].max().normalize()
    label_cutoffs, score_cutoff = churn_cutoffs(
        tx[TIME].min(), data_end, horizon_days=horizon, n_cutoffs=n_cutoffs
    )
    cutoffs = [*label_cutoffs, score_cutoff]
    if client is not None:
        n_partitions = max(n_partitions, 4 * n_workers(client))
    inputs = []
    part_of = entity_buckets(tx[CUSTOMER_ID], n_partitions)
    for p in range(n_partitions):
        tx_p = tx[part_of == p] if n_partitions > 1 else tx
        cust_p = customers
        if customers is not None and n_partitions > 1:
            cust_p = customers[customers[CUSTOMER_ID].isin(tx_p[CUSTOMER_ID].unique())]
        inputs.append((tx_p, cutoffs, cust_p))
    parts = map_partitions(
        client, _churn_partition, inputs, horizon_days=horizon, data_end=data_end, breadth=breadth, **kw
    )
    return parts, label_cutoffs, score_cutoff, last_purchase


def _on_cluster(
    dataset: Dataset,
    tx_name: str,
    customers: pd.DataFrame | None,
    as_of: pd.Timestamp | None,
    client: Any,
    n_partitions: int,
    *,
    horizon: int,
    n_cutoffs: int | None,
    **kw: Any,
) -> tuple[list[pd.DataFrame], list[pd.Timestamp], pd.Timestamp, pd.Timestamp]:
    """The partitions built on the workers from the parts they read and split by customer themselves
    (:func:`features.parted.shuffle_by_customer`); only the partitions' rows come back."""
    from features.parted import shuffle_by_customer

    table = dataset.spec.tables[tx_name]
    canonical = [c for c in _COLUMNS if c in table.columns or c in table.multiply]
    lookup, breadth = _breadth_lookup(dataset, canonical)
    shuffled = shuffle_by_customer(
        client, dataset, tx_name, _COLUMNS, as_of=as_of, n_buckets=n_partitions if n_partitions > 1 else None
    )
    if shuffled.rows == 0 or shuffled.first is None or shuffled.last is None or shuffled.last_any is None:
        raise (
            _no_rows_before(as_of) if as_of is not None else ChurnInputError(f"table {tx_name!r} has no rows")
        )
    data_end = pd.Timestamp(as_of) if as_of is not None else shuffled.last.normalize()
    label_cutoffs, score_cutoff = churn_cutoffs(
        shuffled.first, data_end, horizon_days=horizon, n_cutoffs=n_cutoffs
    )
    cutoffs = [*label_cutoffs, score_cutoff]
    n = len(shuffled.pieces)
    cust_of = None if customers is None else entity_buckets(customers[CUSTOMER_ID], n)
    shared = client.scatter(lookup, broadcast=True) if lookup is not None else None
    futures = []
    for p, pieces in enumerate(shuffled.pieces):
        cust_p = None if customers is None else client.scatter(customers[cust_of == p])
        futures.append(
            client.submit(
                _shuffled_partition,
                cutoffs,
                cust_p,
                shared,
                shuffled.text,
                *pieces,
                horizon_days=horizon,
                data_end=data_end,
                breadth=breadth,
                **kw,
                pure=False,
            )
        )
    last_purchase = shuffled.last_any
    del shuffled, pieces  # each piece is let go once its partition is built
    return gather(client, futures), label_cutoffs, score_cutoff, last_purchase


def build_churn_set(
    dataset: Dataset,
    *,
    horizon_days: int | None = None,
    n_cutoffs: int | None = DEFAULT_N_CUTOFFS,
    as_of: pd.Timestamp | str | None = None,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    lookback_days: int = DEFAULT_LOOKBACK_DAYS,
    n_partitions: int = 1,
    client: Any | None = None,
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
        client: a ``distributed.Client`` (:func:`features.distributed.scheduler_client`): the partitions are
            built on its workers (four per worker unless ``n_partitions`` says more) and only their rows come back.

    Raises:
        ChurnInputError: missing roles, a non-positive horizon, too little history, no active customer at the
            last cutoff, or labels that are not two classes.
    """
    horizon = check_horizon(dataset.spec.churn_horizon_days if horizon_days is None else horizon_days)
    as_of = parse_as_of(as_of)
    tx_name = _transaction_name(dataset)
    customers = dataset.table(Role.customers)
    if tx_name is None:
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
    how = {"horizon": horizon, "n_cutoffs": n_cutoffs, "windows": windows, "lookback_days": lookback_days}
    if tx_name in dataset.parted:  # left on disk for the cluster's workers (load_dataset(defer_parted=True))
        if client is None:
            raise ChurnInputError(
                f"table {tx_name!r} of data set {dataset.name!r} was loaded for a Dask cluster; pass its client"
            )
        built = _on_cluster(dataset, tx_name, customers, as_of, client, n_partitions, **how)
    else:
        built = _in_process(dataset, tx_name, customers, as_of, client, n_partitions, **how)
    parts, label_cutoffs, score_cutoff, last_purchase = built
    del built
    parts = [part for part in parts if len(part)] or parts[:1]  # a partition may hold no active customer
    frame = parts[0]  # one partition: already ordered by cutoff, then customer id
    if len(parts) > 1:
        frame = pd.concat(parts, ignore_index=True)
        del parts  # one copy at a time (at 50 M lines the rows take ~3 GiB)
        frame = frame.sort_values([CUTOFF, CUSTOMER_ID], kind="stable", ignore_index=True)
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
    attr_num, attr_cat, _ = attribute_columns(customers) if customers is not None else ([], [], [])
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
    numeric, categorical, dates = attribute_columns(customers)
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
