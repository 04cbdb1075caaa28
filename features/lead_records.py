"""Raw lead records (JSON objects, CSV rows) -> typed leads -> feature rows, exactly as in training.

* :func:`leads_from_records`: a batch of records as a canonical frame of open leads (checked by
  :func:`features.inputs.lead_record_errors`, numbers and dates converted).
* :func:`lead_record_features`: those leads typed like the data set's leads table and featurised by
  :func:`features.leads.lead_features` as of the end of the data set, each as if it were the only new lead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from features.errors import SalesmlError
from features.inputs import convert_lead_values, lead_record_errors
from features.leads import (
    DECISION_TIME,
    LABEL,
    data_end,
    lead_features,
    rate_keys,
    time_kind_of,
    value_column,
)
from features.load import Dataset, join_lookups
from features.spec import CREATED_AT, LEAD_ID, OUTCOME, Role, TableSpec

__all__ = ["lead_record_features", "leads_from_records"]


def leads_from_records(records: Iterable[Mapping[str, Any]], table: TableSpec) -> pd.DataFrame:
    """A batch of raw leads (dicts keyed by canonical column names) as a canonical, open leads frame.

    Every record needs a non-empty ``lead_id``; ids must be unique in the batch. Unknown keys are an error
    (they would be silently ignored otherwise); missing attributes are allowed and become missing values. The
    per-record rules are :func:`features.inputs.lead_record_errors`'.

    Raises:
        SalesmlError: naming the record and the field (the first one that breaks a rule).
    """
    rows = list(records)
    if not rows:
        raise SalesmlError("the lead batch is empty: send at least one lead with a 'lead_id'")
    errors = lead_record_errors(rows, table)
    if errors:
        more = f" (and {len(errors) - 1} more lead(s))" if len(errors) > 1 else ""
        raise SalesmlError(next(iter(errors.values())) + more)
    frame = pd.DataFrame([dict(r) for r in rows])
    frame[LEAD_ID] = frame[LEAD_ID].astype(str)
    dup = frame[LEAD_ID].duplicated(keep=False)
    if dup.any():
        raise SalesmlError(
            f"lead_id must be unique in a batch; repeated: {sorted(set(frame.loc[dup, LEAD_ID]))}"
        )
    frame[OUTCOME] = pd.Categorical(["open"] * len(frame), categories=["won", "lost", "open"])
    if CREATED_AT in frame.columns:
        created = convert_lead_values(frame[CREATED_AT].astype(object), CREATED_AT)[0]
        frame[CREATED_AT] = created.astype("datetime64[ns]")
    for col, kind in table.types.items():
        if col in frame.columns and kind == "numeric":
            frame[col] = convert_lead_values(frame[col].astype(object), col)[0].astype(float)
    return frame


def lead_record_features(
    records: Iterable[Mapping[str, Any]], dataset: Dataset
) -> tuple[pd.DataFrame, str | None]:
    """Feature rows for a batch of raw leads as of the end of ``dataset``, and the column of their value.

    The rows are built by :func:`features.leads.lead_features` exactly as for training: lookups joined, the
    owner's / product's win rates from leads closed before the data end, activity counts from the data set's
    activities before it; for row-ordered data with ``period_columns``, each lead's period context as if it were
    the single next row after the data set's rows. A lead's features therefore do not depend on the other leads
    in the batch or their order.

    Args:
        records: dicts with ``lead_id`` and any of the leads table's attribute columns.
        dataset: the loaded data set the model was trained on (history, lookups, activities).

    Returns:
        (one feature row per record, :func:`features.leads.value_column` of them: the value for an expected
        value, or None)

    Raises:
        SalesmlError: a record without ``lead_id``, an unknown field, a value of the wrong type, a repeated id.
    """
    name, table = dataset.spec.table_of(Role.leads)  # type: ignore[misc]
    partition = leads_from_records(records, table)
    leads = dataset.tables[name]
    partition = _like(partition, leads)
    activities = dataset.table(Role.activities)
    time_kind = time_kind_of(leads, table)
    history = None
    if time_kind == "datetime":
        history = join_lookups(leads, dataset)
        history = history.assign(**{LABEL: history[OUTCOME].astype("string").map({"won": 1.0, "lost": 0.0})})
    else:  # new leads come after every known row
        partition[DECISION_TIME] = len(leads) + np.arange(1, len(partition) + 1)
    types = sorted(activities["type"].dropna().astype(str).unique()) if activities is not None else None
    frame, _, _, _ = lead_features(
        partition,
        table,
        time_kind=time_kind,
        decision_at="created",
        as_of=data_end(leads, activities),
        history=history,
        rate_keys=rate_keys(dataset, join_lookups(leads.head(1), dataset).columns),
        activities=activities if time_kind == "datetime" else None,
        activity_types=types,
        lookups=dataset,
        # Period context: each new lead as the single next row after the data (independent of the batch).
        earlier=leads if time_kind == "row_order" else None,
    )
    return frame, value_column(frame, table)


def _like(partition: pd.DataFrame, leads: pd.DataFrame) -> pd.DataFrame:
    """Give a batch of raw leads the columns and types of the data set's leads table (JSON has no dates)."""
    out = partition.copy()
    for col in leads.columns:
        if col == OUTCOME:
            continue
        kind = leads[col].dtype
        if col not in out.columns:
            out[col] = pd.Series([np.nan] * len(out), index=out.index)
        if pd.api.types.is_bool_dtype(kind) or pd.api.types.is_numeric_dtype(kind):
            values = out[col].map(lambda v: float(v) if isinstance(v, bool) else v)
            out[col] = pd.to_numeric(values, errors="coerce").astype(float)
        elif pd.api.types.is_datetime64_any_dtype(kind):
            out[col] = pd.to_datetime(out[col], errors="coerce")
        elif col != LEAD_ID:
            out[col] = out[col].astype(object).where(out[col].notna(), np.nan)
    return out
