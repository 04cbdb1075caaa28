"""Lead and deal training sets: each lead as of its decision time, with only what was known then.

One row per lead: ``lead_id``, ``decision_time``, ``label`` (1 won / converted, 0 lost, missing for open leads)
and the candidate features. Which moment is the decision time depends on what the data holds:

* rows in time order without dates (bank-marketing, ``row_order_is_time``): the row number is the clock;
* no time at all (x-education): the row number is kept only as an index, and splits must be stratified;
* dated leads without activities (crm deals): the engage date (``created_at``); the point-in-time win rates of
  the agent, manager, office and product use only deals **closed strictly before** it;
* dated leads with activities (synthetic): the decision itself (``closed_at``); activity counts use only events
  **strictly before** it, so the onboarding calls logged after a win are never counted.

Open leads are featurised as of the end of the data (``as_of``). Columns the spec declares ``post_outcome``, the
role columns (``outcome``, ``created_at``, ``closed_at``) and identifier-like text columns never become features.

Everything below is a function of one partition of leads plus the reference tables it needs (the closed-deal
history, the activities, the lookups), with no global state, so it can be mapped over partitions later.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from features.distributed import entity_buckets, map_partitions, n_workers
from features.errors import SalesmlError
from features.lead_context import (
    DECISION_TIME,
    LABEL,
    KnownContext,
    activity_counts,
    period_context,
    point_in_time_rates,
)
from features.load import Dataset, join_lookups, lookups_only
from features.spec import (
    AMOUNT,
    CLOSED_AT,
    CREATED_AT,
    ENTITY_ID,
    LEAD_ID,
    OUTCOME,
    OWNER,
    TIME,
    Role,
    TableSpec,
)

__all__ = [
    "DECISION_TIME",
    "LABEL",
    "LeadSet",
    "LeadSetOptions",
    "build_lead_set",
    "data_end",
    "leads_as_of",
    "lead_exclusions",
    "lead_features",
    "outcome_labels",
    "rate_keys",
    "time_kind_of",
    "value_column",
]

ROLE_COLUMNS = {LEAD_ID, OUTCOME, CREATED_AT, CLOSED_AT}
_PRICE_COLUMNS = ("list_price", "sales_price", "price")
TimeKind = Literal["datetime", "row_order", "none"]


@dataclass(frozen=True)
class LeadSetOptions:
    """How a lead set is built.

    Attributes:
        decision_at: ``"created"`` (features as of the lead's creation / engage date) or ``"closed"`` (as of
            the moment before the decision). ``None`` picks ``"closed"`` when the data set has activities and
            ``"created"`` otherwise.
        prior_strength: pseudo-count pulling a group's win rate toward the overall rate of the same moment.
        identifier_share: a text column with more distinct values than this share of rows is an identifier.
    """

    decision_at: Literal["created", "closed"] | None = None
    prior_strength: float = 10.0
    identifier_share: float = 0.5


@dataclass(frozen=True)
class LeadSet:
    """Candidate features of every lead (closed ones to train on, open ones to score).

    Attributes:
        frame: ``lead_id``, ``decision_time``, ``label`` and the feature columns.
        numeric: numeric candidate features.
        categorical: categorical candidate features.
        time_kind: what ``decision_time`` is: a date, a row number that is a clock, or a mere row index.
        excluded: columns that never become features, with the reason.
        value_col: the column holding a lead's value for the expected value (amount or list price), if any.
        as_of: the end of the data (open leads are scored as of this moment); ``None`` without dates.
        activity_timing: per activity type, the share of its events dated after the lead's outcome.
    """

    frame: pd.DataFrame
    numeric: list[str]
    categorical: list[str]
    time_kind: TimeKind
    excluded: dict[str, str]
    value_col: str | None = None
    as_of: pd.Timestamp | None = None
    activity_timing: dict[str, float] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def closed(self) -> pd.DataFrame:
        """Leads with a known outcome (the training set)."""
        return self.frame[self.frame[LABEL].notna()].reset_index(drop=True)

    def open(self) -> pd.DataFrame:
        """Leads still open (the rows to score)."""
        return self.frame[self.frame[LABEL].isna()].reset_index(drop=True)


def data_end(leads: pd.DataFrame, activities: pd.DataFrame | None = None) -> pd.Timestamp | None:
    """The latest date anywhere in the leads (and their activities): open leads are scored as of it."""
    stamps = [leads[c].max() for c in (CREATED_AT, CLOSED_AT) if c in leads.columns]
    if activities is not None and TIME in activities.columns and len(activities):
        stamps.append(activities[TIME].max())
    stamps = [s for s in stamps if pd.notna(s)]
    return max(stamps) if stamps else None


def leads_as_of(dataset: Dataset, day: pd.Timestamp) -> Dataset:
    """The data set as it stood at the end of ``day`` (``salesml train leads --as-of``): leads created later are
    left out, leads decided later are open again (outcome ``open``, no ``closed_at``, their ``post_outcome``
    columns empty), activities after it are left out.

    Raises:
        SalesmlError: leads without dates (the row order or nothing is their clock), or none created by ``day``.
    """

    name, table = dataset.spec.table_of(Role.leads)  # type: ignore[misc]
    leads = dataset.tables[name]
    if time_kind_of(leads, table) != "datetime":
        raise SalesmlError(
            f"--as-of needs dated leads (created_at or closed_at); the leads of data set {dataset.name!r} have no "
            "dates, so there is no 'as of' to go back to"
        )
    end = day + pd.Timedelta(days=1)
    born = leads[CREATED_AT] if CREATED_AT in leads.columns else leads[CLOSED_AT]
    kept = leads[born.isna() | (born < end)].copy()
    if kept.empty:
        raise SalesmlError(f"no lead of data set {dataset.name!r} was created by --as-of {day:%Y-%m-%d}")
    if CLOSED_AT in kept.columns:
        later = kept[CLOSED_AT] >= end
        kept.loc[later, OUTCOME] = "open"
        kept.loc[later, CLOSED_AT] = pd.NaT
        for col in table.post_outcome:
            if col in kept.columns and col != CLOSED_AT:
                kept.loc[later, col] = pd.NA
    tables = {**dataset.tables, name: kept.reset_index(drop=True)}
    found = dataset.spec.table_of(Role.activities)
    if found is not None and TIME in dataset.tables[found[0]].columns:
        acts = dataset.tables[found[0]]
        tables[found[0]] = acts[acts[TIME] < end].reset_index(drop=True)
    return replace(dataset, tables=tables)


def outcome_labels(outcome: pd.Series) -> pd.Series:
    """1 won, 0 lost, missing for open leads."""
    return outcome.astype("string").map({"won": 1.0, "lost": 0.0, "open": np.nan}).astype(float)


def _decision_times(
    leads: pd.DataFrame, *, time_kind: TimeKind, decision_at: str, as_of: pd.Timestamp | None
) -> pd.Series:
    if time_kind != "datetime":
        if DECISION_TIME in leads.columns:
            return leads[DECISION_TIME].astype("int64")
        raise SalesmlError(f"leads without dates need a {DECISION_TIME!r} row-order column")
    is_open = leads[OUTCOME].astype("string").eq("open")
    own = CLOSED_AT if decision_at == "closed" else CREATED_AT
    when = pd.to_datetime(leads[own]) if own in leads.columns else pd.Series(pd.NaT, index=leads.index)
    if decision_at == "created" and CLOSED_AT in leads.columns:
        # A closed lead without a creation date is decided as of its close (nothing later is known).
        when = when.fillna(pd.to_datetime(leads[CLOSED_AT]))
    when = when.where(~is_open, as_of)
    missing = when.isna()
    if missing.any():
        raise SalesmlError(
            f"{int(missing.sum())} closed lead(s) have no {own!r} date, so their decision time is unknown; "
            f"first ids: {leads.loc[missing, LEAD_ID].head(5).tolist()}"
        )
    return when


def _activity_timing(leads: pd.DataFrame, activities: pd.DataFrame) -> dict[str, float]:
    """Per activity type, the share of events dated after the outcome of a closed lead (audit evidence)."""
    closed = leads.loc[leads[OUTCOME].astype("string") != "open", [LEAD_ID, CLOSED_AT]]
    ev = activities.merge(closed.rename(columns={LEAD_ID: ENTITY_ID}), on=ENTITY_ID, how="inner")
    if ev.empty:
        return {}
    after = ev[TIME] > ev[CLOSED_AT]
    return {str(k): float(v) for k, v in after.groupby(ev["type"].astype(str)).mean().items()}


def _excluded_columns(table: TableSpec, frame: pd.DataFrame, identifier_share: float) -> dict[str, str]:
    excluded = {c: "role column (id, outcome or a date)" for c in ROLE_COLUMNS if c in frame.columns}
    for col in table.post_outcome:
        excluded[col] = "declared post_outcome in the spec: known only after the outcome"
    for col in frame.columns:
        if col in excluded or col in (DECISION_TIME, LABEL):
            continue
        s = frame[col]
        if pd.api.types.is_datetime64_any_dtype(s):
            excluded[col] = "a date attribute (not used as a feature)"
        elif not pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            distinct = s.nunique(dropna=True)
            if distinct > 50 and distinct > identifier_share * max(1, s.notna().sum()):
                excluded[col] = f"identifier-like: {distinct} distinct values in {s.notna().sum()} rows"
    return excluded


def lead_features(
    partition: pd.DataFrame,
    table: TableSpec,
    *,
    time_kind: TimeKind,
    decision_at: Literal["created", "closed"] = "created",
    as_of: pd.Timestamp | None = None,
    history: pd.DataFrame | None = None,
    rate_keys: Iterable[str] = (),
    activities: pd.DataFrame | None = None,
    activity_types: Iterable[str] | None = None,
    lookups: Dataset | None = None,
    options: LeadSetOptions | None = None,
    known: KnownContext | None = None,
    excluded: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, list[str], list[str], dict[str, str]]:
    """Features of one partition of leads as of each lead's decision time.

    Args:
        partition: canonical leads (one row per ``lead_id``); row-ordered data sets carry ``decision_time``.
        table: the leads table's spec (post-outcome columns).
        time_kind: see :class:`LeadSet`.
        decision_at: ``"created"`` or ``"closed"`` (see :class:`LeadSetOptions`).
        as_of: the moment open leads are featurised at (the end of the data).
        history: closed leads (``closed_at``, ``label`` and the rate keys) for the point-in-time win rates.
        rate_keys: columns to compute point-in-time win rates for.
        activities: the activity table (``entity_id``, ``time``, ``type``), or None.
        activity_types: the activity types to count (fixed across partitions); all present when omitted.
        lookups: a data set whose lookup tables are joined onto the leads (agent -> manager, product -> price).
        options: build options.
        known: new leads (:func:`features.lead_records.new_lead_context`): their win rates, activity counts
            and period context as of the end of the data, counted once per loaded data set, in place of
            ``history`` / ``activities`` and of the partition's own rows in time order (row-ordered data:
            each row as the single next row after the data, ignoring the partition's other rows, so a new
            lead's features do not depend on the rest of its batch or its order). ``None``: training.
        excluded: the columns left out and why, decided on the whole table (:func:`lead_exclusions`; an
            identifier-like column is one over the whole table, not over one partition); default: decided on
            ``partition``.

    Returns:
        ``(frame, numeric, categorical, excluded)``: the frame holds ``lead_id``, ``decision_time``, ``label``
        and every candidate feature.
    """
    options = options or LeadSetOptions()
    frame = partition.copy()
    if lookups is not None:
        frame = join_lookups(frame, lookups)
    frame[LABEL] = outcome_labels(frame[OUTCOME])
    frame[DECISION_TIME] = _decision_times(frame, time_kind=time_kind, decision_at=decision_at, as_of=as_of)
    excluded = (
        dict(excluded) if excluded is not None else _excluded_columns(table, frame, options.identifier_share)
    )

    extra: list[pd.DataFrame] = []
    if time_kind == "datetime":
        years = [
            c for c in frame.columns if c.startswith("year_") and pd.api.types.is_numeric_dtype(frame[c])
        ]
        for col in years:  # e.g. year_established -> account age at the decision time
            age = frame[DECISION_TIME].dt.year - frame[col]
            extra.append(age.rename(f"{col.removeprefix('year_')}_age_years").to_frame())
            excluded[col] = f"converted to {col.removeprefix('year_')}_age_years at the decision time"
        keys = [k for k in rate_keys if k in frame.columns]
        if known is not None and known.rates is not None and keys:
            extra.append(known.rates(frame, keys))
        elif history is not None and keys:
            extra.append(point_in_time_rates(frame, history, keys, prior_strength=options.prior_strength))
        if known is not None and known.activities is not None:
            extra.append(known.activities(frame))
        elif activities is not None:
            extra.append(activity_counts(frame, activities, activity_types))
    elif time_kind == "row_order" and table.period_columns:
        if known is not None and known.period is not None:
            extra.append(known.period(frame))
        else:
            extra.append(_period_block(frame, table.period_columns, options.prior_strength))
    numeric, categorical = [], []
    # The columns are typed into a dict and the frame built once (a column set on a frame one by one costs
    # ~0.2 ms each, the larger part of featurising one lead).
    columns: dict[str, Any] = {col: frame[col] for col in frame.columns}
    for col in frame.columns:
        if col in excluded or col in (DECISION_TIME, LABEL):
            continue
        s = frame[col]
        if pd.api.types.is_bool_dtype(s) or s.dtype == "boolean" or pd.api.types.is_numeric_dtype(s):
            columns[col] = s.astype(float)
            numeric.append(col)
        else:
            columns[col] = s.astype("string").astype(object).where(s.notna(), np.nan)
            categorical.append(col)
    for block in extra:
        for col in block.columns:
            columns[col] = block[col].astype(float).to_numpy()
            numeric.append(col)
    # Only the id, the clock, the label and the candidates leave this function (plus the creation date, for
    # the age of open leads): post-outcome columns cannot reach a model by accident.
    keep = [LEAD_ID, DECISION_TIME, LABEL, *numeric, *categorical]
    if CREATED_AT in frame.columns:
        keep.append(CREATED_AT)
    out = pd.DataFrame({col: columns[col] for col in keep}, index=frame.index, columns=keep)
    return out.reset_index(drop=True), numeric, categorical, excluded


def _period_block(frame: pd.DataFrame, period_columns: list[str], prior_strength: float) -> pd.DataFrame:
    """:func:`period_context` of the partition's own rows in time order, aligned with ``frame`` (training)."""
    order = np.argsort(frame[DECISION_TIME].to_numpy(), kind="stable")
    rows = frame[[*period_columns, LABEL]].iloc[order].reset_index(drop=True)
    ctx = period_context(rows, period_columns, prior_strength=prior_strength)
    ctx = ctx.iloc[np.argsort(order, kind="stable")]
    ctx.index = frame.index
    return ctx


def time_kind_of(leads: pd.DataFrame, table: TableSpec) -> TimeKind:
    """The clock of a leads table: ``datetime``, ``row_order`` (rows in time order) or ``none``."""
    if CREATED_AT in leads.columns or CLOSED_AT in leads.columns:
        return "datetime"
    return "row_order" if table.row_order_is_time else "none"


def rate_keys(dataset: Dataset, frame_columns: Iterable[str]) -> list[str]:
    """The columns that get point-in-time win rates: ``owner`` and every hierarchy level present."""
    cols = set(frame_columns)
    keys = [OWNER] if OWNER in cols else []
    for levels in dataset.spec.hierarchies:
        keys += [lvl for lvl in levels if lvl in cols and lvl not in keys]
    return keys


def lead_exclusions(
    leads: pd.DataFrame, table: TableSpec, dataset: Dataset, options: LeadSetOptions | None = None
) -> dict[str, str]:
    """The columns :func:`lead_features` leaves out of the whole leads table (role columns, post-outcome ones,
    dates, identifier-like text), and why."""
    options = options or LeadSetOptions()
    return _excluded_columns(table, join_lookups(leads, dataset), options.identifier_share)


def _lead_partition(
    leads: pd.DataFrame, activities: pd.DataFrame | None, **how: Any
) -> tuple[pd.DataFrame, list[str], list[str], dict[str, str]]:
    return lead_features(leads, activities=activities, **how)


def build_lead_set(
    dataset: Dataset,
    *,
    options: LeadSetOptions | None = None,
    as_of: pd.Timestamp | None = None,
    n_partitions: int = 1,
    client: Any | None = None,
) -> LeadSet:
    """Every lead of a data set as of its decision time (closed ones labelled, open ones as of ``as_of``).

    Args:
        dataset: a loaded data set with a leads table.
        options: build options.
        as_of: the moment open leads are featurised at; the end of the data when omitted.
        n_partitions: split dated leads into this many hash partitions (each with its own activities; the
            closed leads' history, for the win rates, whole) and build each on its own: the same set.
        client: a ``distributed.Client``: the partitions are built on its workers (four per worker unless
            ``n_partitions`` says more). Row-ordered leads are one sequence (each row's context is the rows
            before it) and are built in one partition.

    Returns:
        The :class:`LeadSet`.

    Raises:
        SalesmlError: no leads table, or no closed lead of each class to learn from.
    """
    options = options or LeadSetOptions()
    leads = dataset.require(Role.leads, "lead scoring")
    name, table = dataset.spec.table_of(Role.leads)  # type: ignore[misc]
    activities = dataset.table(Role.activities)
    time_kind = time_kind_of(leads, table)
    partition = leads.copy()
    if time_kind != "datetime":
        partition[DECISION_TIME] = np.arange(1, len(partition) + 1)
    as_of = as_of if as_of is not None else data_end(leads, activities)
    decision_at = options.decision_at or ("closed" if activities is not None else "created")
    if decision_at == "closed" and CLOSED_AT not in leads.columns and time_kind == "datetime":
        decision_at = "created"
    history = None
    if time_kind == "datetime" and CLOSED_AT in leads.columns:
        history = join_lookups(leads, dataset)
        history = history.assign(**{LABEL: outcome_labels(history[OUTCOME])})
    joined_cols = join_lookups(leads.head(1), dataset).columns
    types = None
    timing: dict[str, float] = {}
    if activities is not None and time_kind == "datetime":
        types = sorted(activities["type"].dropna().astype(str).unique())
        if CLOSED_AT in leads.columns:
            timing = _activity_timing(leads, activities)
    how = {
        "table": table,
        "time_kind": time_kind,
        "decision_at": decision_at,
        "as_of": as_of,
        "history": history,
        "rate_keys": rate_keys(dataset, joined_cols),
        "activity_types": types,
        "lookups": lookups_only(dataset),
        "options": options,
    }
    if client is not None:
        n_partitions = max(n_partitions, 4 * n_workers(client))
    if time_kind != "datetime" or n_partitions <= 1:
        frame, numeric, categorical, excluded = lead_features(
            partition, activities=activities if time_kind == "datetime" else None, **how
        )
    else:
        excluded = lead_exclusions(partition, table, dataset, options)
        in_part = entity_buckets(partition[LEAD_ID], n_partitions)
        acts = entity_buckets(activities[ENTITY_ID], n_partitions) if activities is not None else None
        inputs = [
            (partition[in_part == p], None if activities is None else activities[acts == p])
            for p in range(n_partitions)
        ]
        parts = map_partitions(client, _lead_partition, inputs, excluded=excluded, **how)
        parts = [part for part in parts if len(part[0])] or parts[:1]
        numeric, categorical, excluded = parts[0][1], parts[0][2], parts[0][3]
        for _, num, cat, _ in parts[1:]:
            if (num, cat) != (numeric, categorical):  # a column typed differently in two partitions
                raise SalesmlError(
                    f"table {name!r}: the lead partitions disagree on their feature columns ({num + cat} vs "
                    f"{numeric + categorical}); build the lead set in one process"
                )
        frame = pd.concat([part[0] for part in parts], ignore_index=True)
        position = pd.Index(partition[LEAD_ID]).get_indexer(frame[LEAD_ID])
        frame = frame.iloc[np.argsort(position, kind="stable")].reset_index(drop=True)  # the leads' order
    labels = frame[LABEL].dropna()
    if labels.nunique() < 2:
        raise SalesmlError(
            f"table {name!r}: lead scoring needs closed leads of both outcomes (won and lost); "
            f"found {labels.value_counts().to_dict()}"
        )
    value_col = value_column(frame, table)
    return LeadSet(
        frame=frame,
        numeric=numeric,
        categorical=categorical,
        time_kind=time_kind,
        excluded=excluded,
        value_col=value_col,
        as_of=as_of if time_kind == "datetime" else None,
        activity_timing=timing,
    )


def value_column(frame: pd.DataFrame | Mapping[str, Any], table: TableSpec) -> str | None:
    """The column giving a lead's value for its expected value: a pre-outcome amount, else a list price
    (``frame``: a frame or a mapping of columns)."""
    if AMOUNT in frame and AMOUNT not in table.post_outcome:
        return AMOUNT
    return next((c for c in _PRICE_COLUMNS if c in frame), None)
