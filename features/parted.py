"""A partitioned transactions table read, checked and cut on a Dask cluster's workers.

Loaded for a cluster (``load_dataset(..., defer_parted=True)``), a transactions table stored as a folder or glob of
Parquet parts stays on disk (:class:`~features.load.PartedTable`). :func:`read_parts` then has the workers do what
:func:`~features.load.load_dataset` does in one process, one part per task, and cut each part's kept rows with a
``split`` of the caller's (:func:`shuffle_by_customer`: by customer, for the churn set; the forecast's series
sum each part instead, :func:`features.series.summed_facts`):

1. read the part's mapped columns (hive keys included) and check it with the rules of one process
   (:func:`~features.load.canonical_table`, rows numbered as in the whole table, lookup keys it must find; with a
   spec ``where``, the rows of a missing lookup key are numbered before the filter, one process numbers them
   after it);
2. keep the columns the pipeline asks for, events after ``as_of`` left out, and cut them into pieces (by customer:
   :func:`~features.distributed.entity_buckets`) that stay on the workers;
3. the unique key, which spans every part, is checked on hashes of the key split the same way, and only hashes
   seen twice are looked at again (exactly, with the rows' values).

Only each part's counts, date range and broken rules come back to this process. Broken rules are raised as one
:class:`~features.load.DataValidationError`: the same rule in several parts is one line with their rows added up
and the first part's examples. Then bucket ``p``'s pieces, in the parts' order, are one customer partition (a
customer's rows in the order one process reads them).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.distributed import entity_buckets, gather, n_workers
from features.load import (
    Dataset,
    DataValidationError,
    PartedTable,
    Violation,
    canonical_table,
    duplicate_violations,
    lookup_keys,
    orphan_violations,
    unique_key,
)
from features.sources import read_parquet_part
from features.spec import CUSTOMER_ID, TIME, DatasetSpec, TableSpec

__all__ = [
    "ROWS_PER_PARTITION",
    "Shuffled",
    "by_customer",
    "merge_violations",
    "read_parts",
    "rows_per_partition",
    "shuffle_by_customer",
]

# Order lines per customer partition, at most about (and at least 4 partitions per worker); fewer where the
# workers' memory limit over BYTES_PER_ROW says so (rows_per_partition).
ROWS_PER_PARTITION = 1_000_000
BYTES_PER_ROW = 4096
_NO_ROWS = "*"  # the column of canonical_table's "the table has no rows" rule


def rows_per_partition(client: Any) -> int:
    """Order lines per customer partition: :data:`ROWS_PER_PARTITION`, fewer for workers with little memory (a
    partition's build peaks at about 2 KiB per order line; this leaves room for twice that)."""
    limits = [w.get("memory_limit") or 0 for w in client.scheduler_info().get("workers", {}).values()]
    smallest = min((m for m in limits if m > 0), default=0)
    return max(1_000, min(ROWS_PER_PARTITION, smallest // BYTES_PER_ROW)) if smallest else ROWS_PER_PARTITION


@dataclass(frozen=True)
class Shuffled:
    """A partitioned table checked and split by customer on the cluster.

    Attributes:
        pieces: ``pieces[p]``: bucket ``p``'s piece of every part (futures on the workers), in the parts' order.
        text: the kept columns one process holds as Python text (they travel as Arrow strings: put them back
            with ``frame.astype(dict.fromkeys(text, object))``).
        rows: rows kept (after ``as_of``).
        first, last: the first and last event kept; ``last_any``: the last event before ``as_of`` applied.
    """

    pieces: list[list[Any]]
    text: tuple[str, ...]
    rows: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None
    last_any: pd.Timestamp | None


@dataclass(frozen=True)
class _PartInfo:
    rows: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None
    last_any: pd.Timestamp | None
    text: tuple[str, ...]
    violations: list[Violation]


@dataclass(frozen=True)
class _Part:
    """A part of the table: its file, the folder its hive keys are relative to, its first row's number."""

    file: Path
    base: Path
    offset: int


@dataclass(frozen=True)
class _Rules:
    """What a part is checked against: the table's name and spec, the data set's spec."""

    name: str
    table: TableSpec
    spec: DatasetSpec


def _checked_part(
    part: _Part, rules: _Rules, keys: dict[str, Any], keep_index: bool = False
) -> tuple[pd.DataFrame, list[Violation]]:
    """``keys``: the lookups' keys (:func:`~features.load.lookup_keys`), sent to each worker once."""
    violations: list[Violation] = []
    raw = read_parquet_part(part.file, part.base, rules.table, rules.name, mapped_only=True)
    frame = canonical_table(
        rules.name,
        rules.table,
        raw,
        violations,
        row_offset=part.offset,
        check_unique=False,
        keep_index=keep_index,
    )
    violations += orphan_violations(rules.spec, rules.name, frame, keys)
    return frame, violations


def _key_hashes(frame: pd.DataFrame, unique: list[str]) -> np.ndarray:
    return pd.util.hash_pandas_object(frame[unique], index=False).to_numpy()


def by_customer(kept: pd.DataFrame, n_buckets: int) -> list[pd.DataFrame]:
    """A part's kept rows split into ``n_buckets`` pieces by customer, each in the part's order."""
    bucket = entity_buckets(kept[CUSTOMER_ID], n_buckets)
    order = np.argsort(bucket, kind="stable")  # each bucket's rows together, in the part's order
    edges = np.searchsorted(bucket[order], np.arange(n_buckets + 1))
    kept = kept.take(order)
    return [kept.iloc[edges[p] : edges[p + 1]].reset_index(drop=True) for p in range(n_buckets)]


def _scan(
    part: _Part,
    rules: _Rules,
    keys: dict[str, Any],
    columns: Sequence[str],
    as_of: pd.Timestamp | None,
    n_key_buckets: int,
    split: Callable[[pd.DataFrame], list[pd.DataFrame]],
    n_pieces: int,
) -> tuple[_PartInfo, list[np.ndarray], list[pd.DataFrame]]:
    """One part on a worker: checked, its unique-key hashes by bucket and its kept rows as ``split`` cuts them
    (text as Arrow strings, compact while the pieces wait)."""
    frame, violations = _checked_part(part, rules, keys, keep_index=True)
    unique = unique_key(rules.table)
    hashes: list[np.ndarray] = [np.empty(0, np.uint64)] * n_key_buckets
    if unique and not frame.empty and all(c in frame.columns for c in unique):
        h = _key_hashes(frame, unique)
        bucket = (h % np.uint64(n_key_buckets)).astype(np.int64)
        hashes = [h[bucket == p] for p in range(n_key_buckets)]
    if violations or frame.empty:
        return _PartInfo(0, None, None, None, (), violations), hashes, [pd.DataFrame()] * n_pieces
    kept = frame[[c for c in columns if c in frame.columns]]
    last_any = kept[TIME].max()
    if as_of is not None:
        kept = kept[kept[TIME] < as_of + pd.Timedelta(days=1)]
    first = kept[TIME].min() if len(kept) else None
    last = kept[TIME].max() if len(kept) else None
    pieces = split(kept)
    text = tuple(dict.fromkeys(c for piece in pieces for c in piece.columns if piece[c].dtype == object))
    pieces = [
        piece.astype(dict.fromkeys([c for c in text if c in piece.columns], "string[pyarrow]"))
        for piece in pieces
    ]
    return _PartInfo(len(kept), first, last, last_any, text, []), hashes, pieces


def _whole(kept: pd.DataFrame) -> list[pd.DataFrame]:
    return [kept]


def _pick(result: tuple[Any, ...], i: int, p: int | None = None) -> Any:
    return result[i] if p is None else result[i][p]


def _seen_twice(*hashes: np.ndarray) -> np.ndarray:
    values, counts = np.unique(np.concatenate(hashes), return_counts=True)
    return values[counts > 1]


def _rows_with_hashes(part: _Part, rules: _Rules, keys: dict[str, Any], wanted: np.ndarray) -> pd.DataFrame:
    """A part's rows whose unique-key hash is in ``wanted``, indexed by their row number in the whole table."""
    frame, _ = _checked_part(part, rules, keys, keep_index=True)
    return frame[np.isin(_key_hashes(frame, unique_key(rules.table)), wanted)]


def merge_violations(per_part: Sequence[Sequence[Violation]]) -> list[Violation]:
    """One line per broken rule over all parts: rows added up, the first part's examples. A part with no rows is
    a problem only when every part has none."""
    merged: dict[tuple[str, str, str], Violation] = {}
    empty = [v for part in per_part for v in part if v.column == _NO_ROWS]
    for part in per_part:
        for v in part:
            if v.column == _NO_ROWS:
                continue
            key = (v.table, v.column, v.rule)
            merged[key] = replace(merged[key], n_rows=merged[key].n_rows + v.n_rows) if key in merged else v
    return ([empty[0]] if len(empty) == len(per_part) and empty else []) + list(merged.values())


def shuffle_by_customer(
    client: Any,
    dataset: Dataset,
    name: str,
    columns: Sequence[str],
    *,
    as_of: pd.Timestamp | None = None,
    n_buckets: int | None = None,
) -> Shuffled:
    """Read, check and split the partitioned table ``name`` by customer on the cluster (see the module).

    ``n_buckets`` defaults to four per worker, more when the table has more than :func:`rows_per_partition`
    order lines per bucket.

    Raises:
        DataValidationError: the parts break the table's rules (one message for all of them).
        SpecError: a part is not readable Parquet.
        SalesmlError: a worker kept dying.
    """
    if n_buckets is None:
        total = sum(dataset.parted[name].rows)
        n_buckets = max(4 * n_workers(client), math.ceil(total / rows_per_partition(client)))
    split = functools.partial(by_customer, n_buckets=n_buckets)
    return read_parts(client, dataset, name, columns, as_of=as_of, split=split, n_pieces=n_buckets)


def read_parts(
    client: Any,
    dataset: Dataset,
    name: str,
    columns: Sequence[str],
    *,
    as_of: pd.Timestamp | None = None,
    split: Callable[[pd.DataFrame], list[pd.DataFrame]] | None = None,
    n_pieces: int = 1,
) -> Shuffled:
    """Read and check the partitioned table ``name`` on the cluster, each part's kept rows cut by ``split``
    into ``n_pieces`` pieces that stay on the workers (default: the part whole); ``pieces[p]`` lists piece ``p``
    of every part.

    Raises:
        DataValidationError: the parts break the table's rules (one message for all of them).
        SpecError: a part is not readable Parquet.
        SalesmlError: a worker kept dying.
    """
    parted: PartedTable = dataset.parted[name]
    table, spec = dataset.spec.tables[name], dataset.spec
    n_key_buckets = 4 * n_workers(client)
    offsets = np.concatenate([[0], np.cumsum(parted.rows)[:-1]]).astype(int).tolist()
    files = [_Part(f, parted.base, off) for f, off in zip(parted.files, offsets, strict=True)]
    rules = _Rules(name, table, spec)
    keys = client.scatter(lookup_keys(spec, dataset.tables), broadcast=True)
    how = {"columns": list(columns), "as_of": as_of, "n_key_buckets": n_key_buckets, "n_pieces": n_pieces}
    scans = [client.submit(_scan, f, rules, keys, split=split or _whole, **how, pure=False) for f in files]
    infos = [client.submit(_pick, s, 0) for s in scans]
    hashes = [[client.submit(_pick, s, 1, p) for s in scans] for p in range(n_key_buckets)]
    pieces = [[client.submit(_pick, s, 2, p) for s in scans] for p in range(n_pieces)]
    del scans  # the pieces keep what they need; each part's whole result is let go
    seen = [client.submit(_seen_twice, *bucket) for bucket in hashes]
    parts: list[_PartInfo] = gather(client, infos)
    twice = np.concatenate(gather(client, seen))
    del hashes, seen
    violations = merge_violations([part.violations for part in parts])
    unique = unique_key(table)
    if len(twice):
        found = [client.submit(_rows_with_hashes, f, rules, keys, twice, pure=False) for f in files]
        violations.extend(duplicate_violations(name, pd.concat(gather(client, found)), unique))
    if violations:
        raise DataValidationError(spec.name, violations)
    kept = [part for part in parts if part.rows]
    stamps = [part.last_any for part in parts if part.last_any is not None]
    return Shuffled(
        pieces=pieces,
        text=tuple(dict.fromkeys(c for part in kept for c in part.text)),
        rows=sum(part.rows for part in kept),
        first=min(part.first for part in kept) if kept else None,
        last=max(part.last for part in kept) if kept else None,
        last_any=max(stamps) if stamps else None,
    )
