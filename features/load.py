"""Load a data set through its spec: read each table, rename to canonical names, type and validate it.

Loading never writes to a source. Every rule a table breaks is collected and raised as one
:class:`DataValidationError` that names the table, the column, the rule, the number of rows and a few of them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from features.errors import SalesmlError
from features.settings import Settings, get_settings
from features.sources import is_parted, parquet_parts, parquet_rows
from features.sources import read_source as _read_source
from features.spec import (
    AMOUNT,
    CHURN_LABEL,
    DATE_COLUMNS,
    ID_COLUMNS,
    NUMERIC_COLUMNS,
    OUTCOME,
    DatasetSpec,
    Role,
    SpecError,
    TableSpec,
    load_spec,
)

__all__ = [
    "DataValidationError",
    "Dataset",
    "PartedTable",
    "Violation",
    "canonical_table",
    "check_levels",
    "duplicate_violations",
    "join_lookups",
    "load_dataset",
    "lookup_keys",
    "lookups_only",
    "orphan_violations",
    "read_table",
    "sales_facts",
    "unique_key",
    "violation_examples",
]

_EXAMPLES = 5


@dataclass(frozen=True)
class Violation:
    table: str
    column: str
    source_column: str | None
    rule: str
    n_rows: int
    examples: str = ""

    def describe(self) -> str:
        src = f" (source column {self.source_column!r})" if self.source_column else ""
        head = f"table {self.table!r}, column {self.column!r}{src}: {self.rule}"
        if self.n_rows:
            head += f" [{self.n_rows} row(s)]"
        return head + (f"\n{self.examples}" if self.examples else "")


class DataValidationError(SalesmlError):
    """One or more tables break the rules of their roles."""

    def __init__(self, dataset: str, violations: list[Violation]):
        self.dataset = dataset
        self.violations = violations
        body = "\n".join(f"- {v.describe()}" for v in violations)
        super().__init__(f"data set {dataset!r} failed validation ({len(violations)} problem(s)):\n{body}")


@dataclass(frozen=True)
class PartedTable:
    """A transactions table left on disk for a Dask cluster's workers to read and check part by part.

    Attributes:
        base: the folder its hive keys (``key=value`` folders) are relative to.
        files: its Parquet parts, in path order (the order one process reads them in).
        rows: each part's row count (from the Parquet footers), so a part's rows are numbered as the table's.
    """

    base: Path
    files: tuple[Path, ...]
    rows: tuple[int, ...]


@dataclass
class Dataset:
    """A loaded, validated data set: canonical frames keyed by table name (and, loaded for a cluster, the
    partitioned transactions tables left on disk: ``parted``)."""

    spec: DatasetSpec
    spec_path: Path
    tables: dict[str, pd.DataFrame]
    root: Path
    meta: dict[str, object] = field(default_factory=dict)
    parted: dict[str, PartedTable] = field(default_factory=dict)

    def table(self, role: Role) -> pd.DataFrame | None:
        found = self.spec.table_of(role)
        if found is not None and found[0] in self.parted:
            raise SalesmlError(
                f"table {found[0]!r} of data set {self.name!r} is read part by part on the Dask cluster; this "
                "step needs it in one process: run it without --scheduler"
            )
        return None if found is None else self.tables[found[0]]

    def require(self, role: Role, purpose: str) -> pd.DataFrame:
        frame = self.table(role)
        if frame is None:
            raise SpecError(
                f"data set {self.spec.name!r} has no {role.value} table, which {purpose} needs; "
                f"add a table with role: {role.value} to {self.spec_path}"
            )
        return frame

    @property
    def name(self) -> str:
        return self.spec.name


def violation_examples(frame: pd.DataFrame, mask: np.ndarray | pd.Series, cols: list[str]) -> str:
    bad = frame.loc[np.asarray(mask), [c for c in cols if c in frame.columns]].head(_EXAMPLES)
    if bad.empty:
        return ""
    shown = bad.copy()
    shown.index = [f"row {i}" for i in shown.index]
    return "    " + shown.to_string(max_colwidth=40).replace("\n", "\n    ")


# What a source that cannot be read raises: I/O, decoding, a malformed CSV or Parquet file (pyarrow's
# ArrowInvalid is a ValueError), an unknown encoding (LookupError), a separator pandas rejects (ValueError, or a
# regular expression error for a multi-character one).
def canonical_table(
    name: str,
    table: TableSpec,
    raw: pd.DataFrame,
    violations: list[Violation],
    *,
    row_offset: int = 0,
    check_unique: bool = True,
    keep_index: bool = False,
) -> pd.DataFrame:
    """Rename, filter, map values and coerce types; record every broken rule.

    ``row_offset``: the table's row number of ``raw``'s first row (a part of a partitioned source), so examples
    and ``id_from_row_number`` count rows as the whole table does. ``check_unique=False`` leaves the unique-key
    rule to the caller (it spans every part).
    """
    missing = {c: s for c, s in table.columns.items() if s not in raw.columns}
    for canon, src in missing.items():
        violations.append(
            Violation(
                name, canon, src, f"required column missing; the source has {list(raw.columns)[:30]}", 0
            )
        )
    if missing:
        return pd.DataFrame()
    frame = raw[list(table.columns.values())].rename(columns={s: c for c, s in table.columns.items()})
    frame.index = pd.RangeIndex(row_offset, row_offset + len(frame))
    if table.id_from_row_number:
        frame.insert(0, table.id_from_row_number, (frame.index + 1).astype(str))
    opts = table.read

    for col, mapping in table.value_map.items():
        frame[col] = frame[col].replace({k: (np.nan if v is None else v) for k, v in mapping.items()})
    for col, allowed in table.where.items():
        frame = frame[frame[col].isin(allowed)]
    if frame.empty:
        where = f" after where {dict(table.where)}" if table.where else ""
        violations.append(
            Violation(name, "*", None, f"the table has no rows{where}; every table needs data", 0)
        )
        return frame

    types: dict[str, str] = dict(table.types)
    for col in frame.columns:
        if col in DATE_COLUMNS:
            types.setdefault(col, "date")
        elif col in NUMERIC_COLUMNS:
            types.setdefault(col, "numeric")
    for col, kind in types.items():
        original = frame[col]
        if kind == "date":
            if pd.api.types.is_datetime64_any_dtype(original):
                converted = original.dt.tz_localize(None) if original.dt.tz is not None else original
            else:
                try:
                    converted = pd.to_datetime(
                        original.astype("string"),
                        format=opts.date_format,
                        dayfirst=opts.dayfirst,
                        errors="coerce",
                    )
                except ValueError as err:  # errors="coerce" covers the values, not the format itself
                    raise SpecError(
                        f"table {name!r}: read.date_format {opts.date_format!r} is not a strftime format: {err}"
                    ) from err
            rule = f"date not parseable{f' with format {opts.date_format!r}' if opts.date_format else ''}"
        elif kind == "numeric":
            converted = pd.to_numeric(original, errors="coerce")
            rule = "not a number"
        elif kind == "bool":
            lowered = original.astype("string").str.strip().str.lower()
            converted = lowered.map(
                {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}
            )
            rule = "not a boolean (true/false, yes/no, 1/0)"
        else:
            converted = original.astype("string")
            rule = ""
        bad = converted.isna() & original.notna()
        if rule and bad.any():
            violations.append(
                Violation(
                    name,
                    col,
                    table.columns.get(col),
                    rule,
                    int(bad.sum()),
                    violation_examples(frame, bad, [col]),
                )
            )
        frame[col] = converted

    for target, factors in table.multiply.items():  # factors are numeric: NUMERIC_COLUMNS or types
        product = frame[factors[0]].astype("float64")
        for factor in factors[1:]:
            product = product * frame[factor].astype("float64")
        frame[target] = product

    not_null = [c for c in frame.columns if c in ID_COLUMNS or c in {"time", OUTCOME}]
    if table.role is Role.transactions:
        not_null.append(AMOUNT)
    if table.key:
        not_null.append(table.key)
    for col in dict.fromkeys(not_null):
        nulls = frame[col].isna()
        if nulls.any():
            violations.append(
                Violation(
                    name,
                    col,
                    table.columns.get(col, "+".join(table.multiply.get(col, []))),
                    "must not be empty",
                    int(nulls.sum()),
                    violation_examples(frame, nulls, list(frame.columns)[:6]),
                )
            )

    unique = unique_key(table)
    if check_unique and unique and all(c in frame.columns for c in unique):
        violations.extend(duplicate_violations(name, frame, unique))

    if table.role is Role.leads and table.outcome_values is not None:
        mapping = {str(v): k for k, values in table.outcome_values.items() for v in values}
        raw_outcome = frame[OUTCOME].astype("string")
        mapped = raw_outcome.map(mapping)
        unknown = mapped.isna() & raw_outcome.notna()
        if unknown.any():
            seen = sorted(raw_outcome[unknown].unique().tolist())[:10]
            violations.append(
                Violation(
                    name,
                    OUTCOME,
                    table.columns[OUTCOME],
                    f"unknown outcome value(s) {seen}; outcome_values declares {sorted(mapping)}",
                    int(unknown.sum()),
                    violation_examples(frame, unknown, [OUTCOME]),
                )
            )
        frame[OUTCOME] = mapped.astype("category").cat.set_categories(["won", "lost", "open"])
    if CHURN_LABEL in frame.columns and table.label_values is not None:
        mapping = {str(v): k for k, values in table.label_values.items() for v in values}
        raw_label = frame[CHURN_LABEL].astype("string")
        mapped = raw_label.map(mapping)
        unknown = mapped.isna() & raw_label.notna()
        if unknown.any():
            seen = sorted(raw_label[unknown].unique().tolist())[:10]
            violations.append(
                Violation(
                    name,
                    CHURN_LABEL,
                    table.columns[CHURN_LABEL],
                    f"label value(s) {seen} are neither positive {table.label_values.get('positive')} "
                    f"nor negative {table.label_values.get('negative')}",
                    int(unknown.sum()),
                    violation_examples(frame, unknown, [CHURN_LABEL]),
                )
            )
        frame[CHURN_LABEL] = mapped.map({"positive": 1, "negative": 0}).astype("Int8")
    return frame if keep_index else frame.reset_index(drop=True)


def unique_key(table: TableSpec) -> list[str]:
    """The columns whose values must be unique together: the spec's ``unique``, else the role's own key."""
    unique = list(table.unique)
    if not unique:
        unique = {Role.customers: ["customer_id"], Role.leads: ["lead_id"]}.get(table.role, [])
        if table.role is Role.lookup and table.key:
            unique = [table.key]
    return unique


def duplicate_violations(name: str, frame: pd.DataFrame, unique: list[str]) -> list[Violation]:
    """The rows of table ``name`` whose ``unique`` columns repeat another row's (all of them, with examples)."""
    dup = frame.duplicated(unique, keep=False)
    if not dup.any():
        return []
    examples = violation_examples(frame, dup, unique + list(frame.columns)[:4])
    return [Violation(name, "+".join(unique), None, f"duplicate key {unique}", int(dup.sum()), examples)]


def lookup_keys(spec: DatasetSpec, tables: dict[str, pd.DataFrame]) -> dict[str, tuple[str, set[str]]]:
    """Each loaded, non-empty lookup table: its key column and the key's values (as text)."""
    return {
        lname: (lspec.key, set(tables[lname][lspec.key].dropna().astype(str)))
        for lname, lspec in spec.tables.items()
        if lspec.role is Role.lookup and lspec.key and lname in tables and not tables[lname].empty
    }


def orphan_violations(
    spec: DatasetSpec, tname: str, frame: pd.DataFrame, keys: dict[str, tuple[str, set[str]]]
) -> list[Violation]:
    """Values in table ``tname`` of a lookup's key (``keys``: :func:`lookup_keys`) that the lookup lacks."""
    found = []
    for lname, (key, known) in keys.items():
        if tname == lname or frame.empty or key not in frame.columns:
            continue
        values = frame[key].astype("string")
        orphan = values.notna() & ~values.isin(known)
        if orphan.any():
            seen = sorted(values[orphan].unique().tolist())[:5]
            found.append(
                Violation(
                    tname,
                    key,
                    spec.tables[tname].columns.get(key),
                    f"value(s) {seen} not found in lookup table {lname!r}; map them with value_map",
                    int(orphan.sum()),
                    violation_examples(frame, orphan, [key]),
                )
            )
    return found


def _referential(spec: DatasetSpec, tables: dict[str, pd.DataFrame], violations: list[Violation]) -> None:
    """Values of a lookup's key used in other tables must exist in the lookup."""
    keys = lookup_keys(spec, tables)
    for lname in keys:
        for tname, frame in tables.items():
            violations.extend(orphan_violations(spec, tname, frame, {lname: keys[lname]}))


def read_table(spec: DatasetSpec, name: str, root: Path) -> pd.DataFrame:
    """One canonical table, validated on its own (no cross-table checks)."""
    violations: list[Violation] = []
    frame = canonical_table(name, spec.tables[name], _read_source(spec.tables[name], root, name), violations)
    if violations:
        raise DataValidationError(spec.name, violations)
    return frame


def load_dataset(
    name_or_path: str | os.PathLike[str],
    *,
    settings: Settings | None = None,
    root: Path | None = None,
    defer_parted: bool = False,
) -> Dataset:
    """Load and validate every table of a data set (a built-in name or a spec path).

    ``defer_parted``: leave a transactions table stored as a folder or glob of Parquet parts on disk
    (``Dataset.parted``) for a cluster to read, check and split by customer (:mod:`features.parted`); only its
    parts are listed here.
    """
    settings = settings or get_settings()
    spec, spec_path = load_spec(name_or_path)
    meta: dict[str, object] = {}
    if root is None:
        if spec.generator is not None:
            from features.synthetic import ensure_generated

            root, meta = ensure_generated(spec.generator, settings)
        else:
            root = settings.data_root()
    violations: list[Violation] = []
    tables: dict[str, pd.DataFrame] = {}
    parted: dict[str, PartedTable] = {}
    for name, table in spec.tables.items():
        if defer_parted and table.role is Role.transactions and is_parted(table, root):
            base, files = parquet_parts(table, root, name)
            parted[name] = PartedTable(base, tuple(files), tuple(parquet_rows(f, name) for f in files))
            continue
        tables[name] = canonical_table(name, table, _read_source(table, root, name), violations)
    _referential(spec, tables, violations)
    if violations:
        raise DataValidationError(spec.name, violations)
    return Dataset(spec=spec, spec_path=spec_path, tables=tables, root=root, meta=meta, parted=parted)


def lookups_only(dataset: Dataset) -> Dataset:
    """The data set with only its lookup tables (what :func:`join_lookups` reads), light to send to workers."""
    tables = {n: t for n, t in dataset.tables.items() if dataset.spec.tables[n].role is Role.lookup}
    return replace(dataset, tables=tables)


def join_lookups(frame: pd.DataFrame, dataset: Dataset) -> pd.DataFrame:
    """Add the columns of every lookup table reachable through keys present in ``frame`` (left joins)."""
    out = frame
    pending = {n: t for n, t in dataset.spec.tables.items() if t.role is Role.lookup}
    progress = True
    while pending and progress:
        progress = False
        for lname, lspec in list(pending.items()):
            if lspec.key in out.columns:
                lookup = dataset.tables[lname]
                extra = [c for c in lookup.columns if c not in out.columns]
                if extra:
                    right = lookup[[lspec.key, *extra]]
                    if out[lspec.key].dtype != right[lspec.key].dtype:
                        right = right.astype({lspec.key: out[lspec.key].dtype})
                    out = out.merge(right, on=lspec.key, how="left", validate="many_to_one")
                del pending[lname]
                progress = True
    return out


def sales_facts(dataset: Dataset) -> pd.DataFrame:
    """The transactions table joined with its lookups; every hierarchy level must be present and non-empty."""
    facts = join_lookups(dataset.require(Role.transactions, "sales forecasting"), dataset)
    check_levels(facts, dataset)
    return facts


def check_levels(facts: pd.DataFrame, dataset: Dataset, rows: pd.Series | None = None) -> None:
    """Every hierarchy level must be a column of the sales facts and never empty. ``rows``: the order lines
    behind each row of facts summed on a cluster (the count of a broken rule is of lines, not of rows).

    Raises:
        DataValidationError: a level missing or empty.
    """
    violations = []
    name = dataset.spec.table_of(Role.transactions)[0]  # type: ignore[index]
    for i, levels in enumerate(dataset.spec.hierarchies):
        for level in levels:
            if level not in facts.columns:
                violations.append(
                    Violation(
                        name,
                        level,
                        None,
                        f"hierarchies[{i}] level is not in the transactions table "
                        "nor in a lookup joined to it",
                        0,
                    )
                )
            elif facts[level].isna().any():
                bad = facts[level].isna()
                violations.append(
                    Violation(
                        name,
                        level,
                        None,
                        f"hierarchies[{i}] level is empty after joining the lookups",
                        int(bad.sum() if rows is None else rows[bad].sum()),
                        violation_examples(facts, bad, ["time", level]),
                    )
                )
    if violations:
        raise DataValidationError(dataset.name, violations)
