"""Raw lead records (JSON objects, CSV rows) -> typed leads -> feature rows, exactly as in training.

* :func:`leads_from_records`: a batch of records as a canonical frame of open leads (checked by
  :func:`features.inputs.lead_record_errors`, numbers and dates converted).
* :func:`new_lead_context`: what scoring a new lead needs from a loaded data set (its leads table's columns
  and types, the moment new leads are decided at, the win rates, activity counts and period context as of then),
  computed once per loaded model (the service: at load and on reload; the CLI: once per run).
* :func:`lead_record_features`: a batch of leads typed like the data set's leads table and featurised by
  :func:`features.leads.lead_features` with that context, each as if it were the only new lead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from features.errors import SalesmlError
from features.inputs import convert_lead_values, lead_record_errors
from features.lead_context import ActivitiesAsOf, KnownContext, NextPeriod, RatesAsOf
from features.lead_rows import PlainLeadRows
from features.leads import (
    DECISION_TIME,
    LABEL,
    LeadSetOptions,
    TimeKind,
    data_end,
    lead_features,
    outcome_labels,
    rate_keys,
    time_kind_of,
    value_column,
)
from features.load import Dataset, join_lookups
from features.spec import CLOSED_AT, CREATED_AT, LEAD_ID, OUTCOME, Role, TableSpec

__all__ = [
    "NewLeadContext",
    "check_lead_batch",
    "lead_record_columns",
    "lead_record_features",
    "leads_from_records",
    "new_lead_context",
]


def leads_from_records(records: Iterable[Mapping[str, Any]], table: TableSpec) -> pd.DataFrame:
    """A batch of raw leads (dicts keyed by canonical column names) as a canonical, open leads frame.

    Every record needs a non-empty ``lead_id``; ids must be unique in the batch. Unknown keys are an error
    (they would be silently ignored otherwise); missing attributes are allowed and become missing values. The
    per-record rules are :func:`features.inputs.lead_record_errors`'.

    Raises:
        SalesmlError: naming the record and the field (the first one that breaks a rule).
    """
    return _leads_frame(check_lead_batch(records, table), table)


def _leads_frame(rows: list[Mapping[str, Any]], table: TableSpec) -> pd.DataFrame:
    """:func:`leads_from_records` of records already checked by :func:`check_lead_batch`."""
    frame = pd.DataFrame([dict(r) for r in rows])
    frame[LEAD_ID] = frame[LEAD_ID].astype(str)
    frame[OUTCOME] = pd.Categorical(["open"] * len(frame), categories=["won", "lost", "open"])
    if CREATED_AT in frame.columns:
        created = convert_lead_values(frame[CREATED_AT].astype(object), CREATED_AT)[0]
        frame[CREATED_AT] = created.astype("datetime64[ns]")
    for col, kind in table.types.items():
        if col in frame.columns and kind == "numeric":
            frame[col] = convert_lead_values(frame[col].astype(object), col)[0].astype(float)
    return frame


def check_lead_batch(records: Iterable[Mapping[str, Any]], table: TableSpec) -> list[Mapping[str, Any]]:
    """The records of a batch that :func:`leads_from_records` accepts, as a list.

    Raises:
        SalesmlError: an empty batch, a record that breaks a rule of :func:`features.inputs.lead_record_errors`
            (the first one named, with how many more), or repeated ids.
    """
    rows = list(records)
    if not rows:
        raise SalesmlError("the lead batch is empty: send at least one lead with a 'lead_id'")
    errors = lead_record_errors(rows, table)
    if errors:
        more = f" (and {len(errors) - 1} more lead(s))" if len(errors) > 1 else ""
        raise SalesmlError(next(iter(errors.values())) + more)
    counts = Counter(str(r[LEAD_ID]) for r in rows)
    repeated = sorted(k for k, n in counts.items() if n > 1)
    if repeated:
        raise SalesmlError(f"lead_id must be unique in a batch; repeated: {repeated}")
    return rows


@dataclass(frozen=True)
class NewLeadContext:
    """What scoring a new lead needs from a loaded data set, computed once by :func:`new_lead_context`.

    Attributes:
        dataset: the data set (its spec, and the lookup tables joined onto each batch).
        table: the leads table's spec.
        dtypes: the leads table's columns and types; a batch is given them (JSON has no dates).
        time_kind: the leads table's clock (:func:`features.leads.time_kind_of`).
        as_of: the moment new leads are decided at (the end of the data; ``None`` without dates).
        rate_keys: the columns with point-in-time win rates.
        n_leads: rows in the leads table (row-ordered data: new leads come after them).
        known: their win rates, activity counts and period context as of then.
        plain: how plain leads are featurised without the frame path (:mod:`features.lead_rows`), or
            None where the data set needs it.
    """

    dataset: Dataset
    table: TableSpec
    dtypes: pd.Series
    time_kind: TimeKind
    as_of: pd.Timestamp | None
    rate_keys: list[str]
    n_leads: int
    known: KnownContext
    plain: PlainLeadRows | None = None


def new_lead_context(dataset: Dataset, *, options: LeadSetOptions | None = None) -> NewLeadContext:
    """Everything a new lead's features need from ``dataset``, counted once (the service: at load, not per
    request).

    New leads are all decided at the end of the data (row-ordered data: right after its last row), so their
    win rates (deals closed strictly before then), activity counts (events strictly before then) and period
    context depend only on the data set: :class:`~features.lead_context.RatesAsOf`,
    :class:`~features.lead_context.ActivitiesAsOf` and :class:`~features.lead_context.NextPeriod` count them
    here, and :func:`lead_record_features` only looks them up.
    """
    options = options or LeadSetOptions()
    name, table = dataset.spec.table_of(Role.leads)  # type: ignore[misc]
    leads = dataset.tables[name]
    activities = dataset.table(Role.activities)
    time_kind = time_kind_of(leads, table)
    as_of = data_end(leads, activities)
    keys = rate_keys(dataset, join_lookups(leads.head(1), dataset).columns)
    rates = events = period = None
    if time_kind == "datetime" and as_of is not None:
        if CLOSED_AT in leads.columns and keys:
            history = join_lookups(leads, dataset)
            history = history.assign(**{LABEL: outcome_labels(history[OUTCOME])})
            rates = RatesAsOf.count(history, keys, as_of, prior_strength=options.prior_strength)
        if activities is not None:
            events = ActivitiesAsOf.count(activities, as_of)
    elif time_kind == "row_order" and table.period_columns:
        history = leads.reindex(columns=table.period_columns).assign(
            **{LABEL: outcome_labels(leads[OUTCOME])}
        )
        period = NextPeriod.after(history, table.period_columns, prior_strength=options.prior_strength)
    context = NewLeadContext(
        dataset=dataset,
        table=table,
        dtypes=leads.dtypes,
        time_kind=time_kind,
        as_of=as_of,
        rate_keys=keys,
        n_leads=len(leads),
        known=KnownContext(rates=rates, activities=events, period=period),
    )
    try:  # the frame path's output for a lead that sends only its id: the plain path's columns and types
        template = _frame_features([{LEAD_ID: "a-lead-with-nothing-but-an-id"}], context)
    except SalesmlError:
        return context  # no lead can be scored through the frame path either; its errors say why, per batch
    return replace(context, plain=PlainLeadRows.build(context, template))


def lead_record_features(
    records: Iterable[Mapping[str, Any]], context: NewLeadContext
) -> tuple[pd.DataFrame, str | None]:
    """Feature rows for a batch of raw leads as of the end of the data set, and the column of their value.

    The rows are built by :func:`features.leads.lead_features` exactly as for training: lookups joined, the
    owner's / product's win rates from leads closed before the data end, activity counts from the data set's
    activities before it; for row-ordered data with ``period_columns``, each lead's period context as if it were
    the single next row after the data set's rows. All of that comes from ``context`` (:func:`new_lead_context`),
    so a batch costs look-ups and its own rows, and a lead's features do not depend on the other leads in the
    batch or their order.

    Args:
        records: dicts with ``lead_id`` and any of the leads table's attribute columns.
        context: the loaded data set's :class:`NewLeadContext`.

    Returns:
        (one feature row per record, :func:`features.leads.value_column` of them: the value for an expected
        value, or None)

    Raises:
        SalesmlError: a record without ``lead_id``, an unknown field, a value of the wrong type, a repeated id.
    """
    rows, value_col = lead_record_columns(records, context)
    return (rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)), value_col


def lead_record_columns(
    records: Iterable[Mapping[str, Any]], context: NewLeadContext
) -> tuple[Mapping[str, Any], str | None]:
    """:func:`lead_record_features`' rows as the plain path gives them (a dict of column arrays) where it can,
    else as the frame path's frame: both are read by column name (scoring takes either)."""
    rows = check_lead_batch(records, context.table)
    columns = context.plain.columns(rows) if context.plain is not None else None
    if columns is None:
        columns = _frame_features(rows, context)
    return columns, value_column(columns, context.table)


def _frame_features(rows: list[Mapping[str, Any]], context: NewLeadContext) -> pd.DataFrame:
    """:func:`lead_record_features`' rows through pandas: the batch typed as a frame, then
    :func:`features.leads.lead_features` (the definition; :mod:`features.lead_rows` repeats it for plain
    leads)."""
    partition = _like(_leads_frame(rows, context.table), context.dtypes)
    if context.time_kind != "datetime":  # new leads come after every known row
        # each is the single next row after the data, whatever else is in the batch (its as_of too)
        partition[DECISION_TIME] = np.full(len(partition), context.n_leads + 1, dtype=np.int64)
    frame, _, _, _ = lead_features(
        partition,
        context.table,
        time_kind=context.time_kind,
        decision_at="created",
        as_of=context.as_of,
        rate_keys=context.rate_keys,
        lookups=context.dataset,
        known=context.known,
    )
    return frame


def _like(partition: pd.DataFrame, dtypes: pd.Series) -> pd.DataFrame:
    """Give a batch of raw leads the columns and types of the data set's leads table (JSON has no dates)."""
    columns: dict[str, Any] = {col: partition[col] for col in partition.columns}
    for col, kind in dtypes.items():
        if col == OUTCOME:
            continue
        if col not in columns:
            columns[col] = pd.Series([np.nan] * len(partition), index=partition.index)
        s = columns[col]
        if pd.api.types.is_bool_dtype(kind) or pd.api.types.is_numeric_dtype(kind):
            if s.dtype != np.float64:  # not yet numbers (leads_from_records converts the numeric ones)
                values = s.map(lambda v: float(v) if isinstance(v, bool) else v)
                columns[col] = pd.to_numeric(values, errors="coerce").astype(float)
        elif pd.api.types.is_datetime64_any_dtype(kind):
            columns[col] = pd.to_datetime(s, errors="coerce")
        elif col != LEAD_ID:
            columns[col] = s.astype(object).where(s.notna(), np.nan)
    # built once: a column set on a frame one by one costs ~0.2 ms each
    return pd.DataFrame(columns, index=partition.index, columns=list(columns))
