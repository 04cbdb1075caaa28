"""Dataset specs: where a source's tables are and which of its columns play which role.

A spec is a YAML file validated into :class:`DatasetSpec`. The pipelines only ever see the canonical names a
spec maps to (``time``, ``amount``, ``customer_id``, hierarchy level names, ...), never a source's own names.

Example (abridged)::

    name: walmart
    frequency: W-FRI
    tables:
      sales:
        role: transactions
        path: walmart_store_sales/train.csv.gz
        columns: {time: Date, amount: Weekly_Sales, store: Store, dept: Dept}
        unique: [store, dept, time]
      stores:
        role: lookup
        path: walmart_store_sales/stores.csv
        key: store
        columns: {store: Store, store_type: Type, store_size: Size}
    hierarchies:
      - [store_type, store, dept]
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from features.errors import SalesmlError

__all__ = [
    "BUILTIN_SPEC_DIR",
    "DatasetSpec",
    "ExogenousKind",
    "GeneratorSpec",
    "ReadOptions",
    "Role",
    "SpecError",
    "SqlSource",
    "TableSpec",
    "builtin_names",
    "load_spec",
    "resolve_spec_path",
]

BUILTIN_SPEC_DIR = Path(__file__).parent / "specs"

# Canonical column names with a fixed meaning. Any other canonical name is an attribute, hierarchy level or
# exogenous driver declared by the spec.
TIME, AMOUNT, QUANTITY = "time", "amount", "quantity"
CUSTOMER_ID, PRODUCT_ID, LEAD_ID, ENTITY_ID = "customer_id", "product_id", "lead_id", "entity_id"
OUTCOME, CREATED_AT, CLOSED_AT, OWNER = "outcome", "created_at", "closed_at", "owner"
CHURN_LABEL, CHURNED_AT, ACTIVITY_TYPE = "churn_label", "churned_at", "type"


class SpecError(SalesmlError):
    """A dataset spec is missing, unreadable or breaks a rule; the message names the key."""


class Role(StrEnum):
    transactions = "transactions"
    customers = "customers"
    leads = "leads"
    activities = "activities"
    lookup = "lookup"
    exogenous = "exogenous"


class ExogenousKind(StrEnum):
    known_ahead = "known_ahead"  # calendar, holidays, planned promotions: usable for future periods
    past_only = "past_only"  # observed only up to now: usable as lags only
    static = "static"  # one value per series (store size): usable everywhere


# Columns each role must map, and those it may map, with their type.
_REQUIRED: dict[Role, tuple[str, ...]] = {
    Role.transactions: (TIME, AMOUNT),
    Role.customers: (CUSTOMER_ID,),
    Role.leads: (LEAD_ID, OUTCOME),
    Role.activities: (ENTITY_ID, TIME, ACTIVITY_TYPE),
    Role.lookup: (),
    Role.exogenous: (TIME,),
}
DATE_COLUMNS = {TIME, CREATED_AT, CLOSED_AT, CHURNED_AT}
NUMERIC_COLUMNS = {AMOUNT, QUANTITY}
ID_COLUMNS = {CUSTOMER_ID, LEAD_ID, ENTITY_ID}
OUTCOME_CLASSES = ("won", "lost", "open")

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SqlSource(_Strict):
    """A table or a query behind a SQLAlchemy URL. ``${VAR}`` in the URL is read from the environment."""

    url: str
    table: str | None = None
    query: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> SqlSource:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of 'table' or 'query'")
        return self

    def resolved_url(self) -> str:
        def sub(match: re.Match[str]) -> str:
            var = match.group(1)
            if var not in os.environ:
                raise SpecError(f"sql.url refers to ${{{var}}} but the environment variable {var} is not set")
            return os.environ[var]

        return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", sub, self.url)


class ReadOptions(_Strict):
    """How to read a file; everything a source needs that is not a column mapping."""

    sep: str = ","
    encoding: str = "utf-8"
    decimal: str = "."
    na_values: list[str] = Field(
        default_factory=list, description="extra strings that mean missing, e.g. Select"
    )
    keep_default_na: bool = True
    drop_unnamed_columns: bool = Field(False, description="drop empty 'Unnamed: N' columns (trailing commas)")
    date_format: str | None = Field(None, description="strptime format for the date columns, e.g. %Y%m%d")
    dayfirst: bool = False
    strip_whitespace: bool = Field(
        False, description="strip spaces around text values; blank becomes missing"
    )
    dtype_str: list[str] = Field(
        default_factory=list, description="source columns read as text (zero-padded ids)"
    )


class TableSpec(_Strict):
    role: Role
    path: str | None = Field(None, description="CSV, CSV.gz or Parquet, relative to the data root")
    sql: SqlSource | None = None
    read: ReadOptions = Field(default_factory=ReadOptions)
    columns: dict[str, str] = Field(description="canonical name -> the source's column name")
    key: str | None = Field(None, description="lookup tables: the canonical column they are joined on")
    keys: list[str] = Field(default_factory=list, description="exogenous tables: series keys besides time")
    unique: list[str] = Field(
        default_factory=list, description="canonical columns that must be unique together"
    )
    id_from_row_number: str | None = Field(
        None, description="canonical id column to fill with the 1-based data row number (sources without ids)"
    )
    row_order_is_time: bool = Field(
        False, description="rows are in time order though no date column exists (a row number is the clock)"
    )
    period_columns: list[str] = Field(
        default_factory=list,
        description=(
            "row-ordered leads: columns whose change from one row to the next starts a new period (e.g. month and "
            "day_of_week: a calendar day); adds point-in-time context features (contacts per earlier period, the "
            "win rate of earlier periods, contacts so far in the period)"
        ),
    )
    # Roles with class labels.
    outcome_values: dict[Literal["won", "lost", "open"], list[str]] | None = Field(
        None, description="leads: source values meaning won/converted, lost, and still open"
    )
    label_values: dict[Literal["positive", "negative"], list[str]] | None = Field(
        None, description="customers: churn_label values meaning churned (positive) and stayed (negative)"
    )
    post_outcome: list[str] = Field(
        default_factory=list, description="canonical columns known only after the outcome; never features"
    )
    keep_despite_audit: list[str] = Field(
        default_factory=list, description="columns the leakage audit may flag but the owner keeps on purpose"
    )
    value_map: dict[str, dict[str | int | float, Any]] = Field(
        default_factory=dict, description="canonical column -> {source value: canonical value}"
    )
    types: dict[str, Literal["numeric", "date", "text", "bool"]] = Field(
        default_factory=dict, description="types of attribute columns beyond the fixed roles"
    )
    where: dict[str, list[Any]] = Field(
        default_factory=dict, description="keep only rows whose canonical column has one of these values"
    )
    multiply: dict[str, list[str]] = Field(
        default_factory=dict,
        description="canonical column computed as the product of mapped numeric columns, e.g. "
        "{amount: [quantity, unit_price]} for invoice lines",
    )

    @field_validator("columns")
    @classmethod
    def _names(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("map at least one column")
        for name in v:
            if not _NAME.match(name):
                raise ValueError(f"canonical name {name!r} must be lower_snake_case")
        sources = list(v.values())
        dup = {s for s in sources if sources.count(s) > 1}
        if dup:
            raise ValueError(f"source column(s) {sorted(dup)} mapped twice")
        return v

    @model_validator(mode="after")
    def _coherent(self) -> TableSpec:
        if (self.path is None) == (self.sql is None):
            raise ValueError("give exactly one of 'path' or 'sql'")
        for target, factors in self.multiply.items():
            if not _NAME.match(target) or target in self.columns:
                raise ValueError(
                    f"multiply: {target!r} must be a new lower_snake_case column, not a mapped one"
                )
            if len(factors) < 2 or any(f not in self.columns for f in factors):
                raise ValueError(
                    f"multiply: {target!r} needs two or more canonical columns of this table, got {factors}"
                )
        missing = [
            c
            for c in _REQUIRED[self.role]
            if c not in self.columns and c not in self.multiply and c != self.id_from_row_number
        ]
        if missing:
            raise ValueError(f"a {self.role.value} table must map the role(s) {missing} in 'columns'")
        if self.role is Role.lookup and (self.key is None or self.key not in self.columns):
            raise ValueError("a lookup table needs 'key', one of its canonical columns")
        if self.role is Role.leads and self.outcome_values is None:
            raise ValueError("a leads table needs 'outcome_values' (source values for won / lost / open)")
        if CHURN_LABEL in self.columns and self.label_values is None:
            raise ValueError("a mapped churn_label needs 'label_values' (positive / negative source values)")
        if self.period_columns and not self.row_order_is_time:
            raise ValueError("period_columns needs row_order_is_time: true (periods follow the row order)")
        for field_name in ("unique", "keys", "post_outcome", "keep_despite_audit", "period_columns"):
            for col in getattr(self, field_name):
                if col not in self.columns:
                    raise ValueError(f"{field_name}: {col!r} is not a canonical column of this table")
        for field_name in ("value_map", "types", "where"):
            for col in getattr(self, field_name):
                if col not in self.columns:
                    raise ValueError(f"{field_name}: {col!r} is not a canonical column of this table")
        return self

    def source_label(self) -> str:
        if self.path is not None:
            return self.path
        assert self.sql is not None
        return f"sql:{self.sql.table or 'query'}"


class GeneratorSpec(_Strict):
    """A data set made by a seeded generator instead of read from a data root."""

    name: Literal["synthetic"]
    seed: int = 7
    n_order_lines: int = Field(1_000_000, gt=0)
    start: str = "2022-01-01"
    end: str = "2025-11-14"

    @model_validator(mode="after")
    def _dates(self) -> GeneratorSpec:
        days = {}
        for key in ("start", "end"):
            try:
                days[key] = datetime.date.fromisoformat(getattr(self, key))
            except ValueError:
                raise ValueError(
                    f"{key} must be a date written YYYY-MM-DD, got {getattr(self, key)!r}"
                ) from None
        if days["end"] <= days["start"]:
            raise ValueError(f"end {self.end} must be after start {self.start}")
        return self


class ForecastSettings(_Strict):
    frequency: str = Field(description="pandas offset alias of the forecast grid: W-FRI, W-SUN, MS, ...")
    fill_gaps_with_zero: bool = Field(True, description="a period without sales is a real zero, not missing")
    season_length: int | None = Field(
        None, gt=1, description="periods per year (2 or more); derived from the frequency if unset"
    )

    @field_validator("frequency")
    @classmethod
    def _freq(cls, v: str) -> str:
        try:
            offset = pd.tseries.frequencies.to_offset(v)
        except ValueError as err:
            raise ValueError(f"frequency {v!r} is not a pandas offset alias (e.g. W-FRI, W-SUN, MS)") from err
        if offset.name.split("-")[0] not in {"W", "MS", "ME", "M", "D"}:
            raise ValueError(f"frequency {v!r}: salesml forecasts at day, week (W-XXX) or month (MS) grain")
        return v


class DatasetSpec(_Strict):
    name: str
    description: str = ""
    generator: GeneratorSpec | None = None
    tables: dict[str, TableSpec] = Field(min_length=1)
    hierarchies: list[list[str]] = Field(
        default_factory=list, description="ordered coarse to fine; each list is one hierarchy"
    )
    exogenous: dict[str, ExogenousKind] = Field(default_factory=dict)
    forecast: ForecastSettings | None = None
    churn_horizon_days: int = Field(90, description="churn = no purchase within this many days")

    @field_validator("churn_horizon_days")
    @classmethod
    def _horizon(cls, v: int) -> int:
        if v <= 0:
            raise ValueError(f"must be a positive number of days, got {v}")
        return v

    @model_validator(mode="after")
    def _coherent(self) -> DatasetSpec:
        known: set[str] = set()
        for table in self.tables.values():
            known |= set(table.columns)
        for i, levels in enumerate(self.hierarchies):
            if not levels:
                raise ValueError(f"hierarchies[{i}] is empty")
            for level in levels:
                if level not in known:
                    raise ValueError(
                        f"hierarchies[{i}]: level {level!r} is not a canonical column of any table"
                    )
        for col in self.exogenous:
            if col not in known:
                raise ValueError(f"exogenous: {col!r} is not a canonical column of any table")
        by_role = [t.role for t in self.tables.values()]
        for role in (Role.transactions, Role.customers, Role.leads):
            if by_role.count(role) > 1:
                raise ValueError(f"more than one {role.value} table; join them in SQL or split the spec")
        return self

    def table_of(self, role: Role) -> tuple[str, TableSpec] | None:
        for name, table in self.tables.items():
            if table.role is role:
                return name, table
        return None

    def fingerprint(self) -> str:
        """A short hash of the spec's content (not of the data): runs trained on the same spec share it."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()[:16]


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_SPEC_DIR.glob("*.yaml"))


def resolve_spec_path(name_or_path: str | os.PathLike[str]) -> Path:
    """A built-in data set name (``walmart``) or a path to a YAML spec."""
    text = str(name_or_path)
    builtin = BUILTIN_SPEC_DIR / f"{text}.yaml"
    if "/" not in text and not text.endswith((".yaml", ".yml")):
        if builtin.exists():
            return builtin
        raise SpecError(
            f"unknown dataset {text!r}: expected one of {builtin_names()} or a path to a .yaml spec"
        )
    path = Path(text)
    if not path.exists():
        raise SpecError(f"spec file {path} does not exist")
    if not path.is_file():
        raise SpecError(f"spec {path} is not a file; give a data set name or a path to a .yaml spec")
    return path


def _format_validation_error(path: Path, err: ValidationError) -> str:
    lines = [f"invalid dataset spec {path}:"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"  - {where}: {msg}")
    return "\n".join(lines)


def load_spec(name_or_path: str | os.PathLike[str]) -> tuple[DatasetSpec, Path]:
    """Read and validate a spec; returns the spec and the file it came from."""
    path = resolve_spec_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise SpecError(f"spec {path} is not valid YAML: {err}") from err
    except (UnicodeDecodeError, OSError) as err:
        raise SpecError(f"cannot read spec {path} as UTF-8 text: {err}") from err
    if not isinstance(raw, dict):
        raise SpecError(f"spec {path} must be a YAML mapping with 'name' and 'tables'")
    try:
        return DatasetSpec.model_validate(raw), path
    except ValidationError as err:
        raise SpecError(_format_validation_error(path, err)) from None
