"""What a client may send to be scored, checked before anything is computed: both products' input rules.

* Churn, a customer scored by the feature values sent (:func:`churn_feature_problem`): only the model's features
  (and ``revenue_12m``, the base of revenue at risk); a numeric one a finite number, a categorical one a text.
* Leads, raw lead records (:func:`lead_record_errors`): an object with a ``lead_id``, only the leads table's
  pre-outcome fields, single values, numbers and dates that convert (:func:`convert_lead_values`).

The service checks each item with these (one bad item never sinks a batch); the CLI's ``score leads --input``
reaches :func:`lead_record_errors` through :func:`features.lead_records.leads_from_records`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from features.churn import REVENUE_12M
from features.spec import CLOSED_AT, CREATED_AT, LEAD_ID, OUTCOME, TableSpec

__all__ = [
    "EARLIEST_LEAD_DATE",
    "LATEST_LEAD_DATE",
    "churn_feature_problem",
    "convert_lead_values",
    "lead_record_errors",
    "plain_floats",
]


def churn_feature_problem(
    features: Mapping[str, Any], model_features: Sequence[str], numeric: Collection[str]
) -> str | None:
    """Why a customer's sent feature values cannot be scored, or None.

    A name must be one of ``model_features`` or ``revenue_12m``; a numeric feature (``numeric``, and
    ``revenue_12m``) must be a finite number (true / false count as 1 / 0, a text that reads as a number is one),
    a categorical one a text or a number; null is a missing value.
    """
    unknown = sorted(set(features) - {*model_features, REVENUE_12M})
    if unknown:
        return f"unknown feature(s) {unknown}; expected some of {model_features} (and {REVENUE_12M})"
    numeric = {*numeric, REVENUE_12M}
    for name, value in features.items():
        if value is None:
            continue
        if name in numeric:
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    return f"feature {name!r} must be a number, got {value[:40]!r}"
            if not np.isfinite(float(value)):
                return f"feature {name!r} must be a finite number, got {value}"
        elif isinstance(value, float) and not np.isfinite(value):
            return f"feature {name!r} must be a text (a category), got {value}"
    return None


def lead_record_errors(
    records: Sequence[Any], table: TableSpec, *, numbers: Sequence[int] | None = None
) -> dict[int, str]:
    """Why each raw lead of a batch cannot be scored, by position (the ones not listed can be).

    A record must be an object with a non-empty ``lead_id``, only the leads table's pre-outcome fields, single
    values (no lists or objects), a number in each numeric field and a date between
    :data:`EARLIEST_LEAD_DATE` and :data:`LATEST_LEAD_DATE` in ``created_at`` (a time zone is converted to UTC);
    an empty text is a missing value. The type checks run on whole columns, so a batch of 10,000 costs about as
    much as one. Repeated ids are a batch-level matter (:func:`features.lead_records.leads_from_records`).
    ``numbers``: the number each record has in the messages (``lead #3``), when not its position (the service
    checks the leads of several requests at once).
    """
    shown = list(numbers) if numbers is not None else range(len(records))
    known = (set(table.columns) | {LEAD_ID}) - {OUTCOME, CLOSED_AT} - set(table.post_outcome)
    errors: dict[int, str] = {}
    for i, row in enumerate(records):
        if not isinstance(row, Mapping):
            errors[i] = f"lead #{shown[i]}: expected an object of attributes, got {type(row).__name__}"
            continue
        lead_id = row.get(LEAD_ID)
        if lead_id is None or (isinstance(lead_id, str) and not lead_id.strip()):
            errors[i] = f"lead #{shown[i]}: missing 'lead_id' (every lead in a batch needs an id)"
            continue
        unknown = sorted(set(row) - known)
        if unknown:
            errors[i] = (
                f"lead #{shown[i]} ({lead_id}): unknown field(s) {unknown}; expected some of {sorted(known)}"
            )
            continue
        nested = next((k for k, v in row.items() if type(v) not in _SCALARS and _nested(v)), None)
        if nested is not None:
            errors[i] = (
                f"lead #{shown[i]} ({lead_id}): field {nested!r} holds a {type(row[nested]).__name__}; expected a "
                "single value (a number, a text or a date)"
            )
    typed = {c: "a number" for c, kind in table.types.items() if kind == "numeric"} | {CREATED_AT: "a date"}
    ok = [i for i in range(len(records)) if i not in errors]
    for col, expected in typed.items():
        if not any(col in records[i] for i in ok):
            continue
        raw = [records[i].get(col) for i in ok]
        floats = plain_floats(raw) if col != CREATED_AT else None
        if floats is not None:  # numbers and nothing (what JSON gives): only an infinity breaks the rule
            bad_at = [ok[k] for k in np.flatnonzero(np.isinf(floats))]
        else:
            _, bad = convert_lead_values(pd.Series(raw, index=ok, dtype=object), col)
            bad_at = [int(i) for i in bad[bad].index]
        for i in bad_at:
            shown = _plain(records[i].get(col))
            rule = (
                f"a date between {EARLIEST_LEAD_DATE} and {LATEST_LEAD_DATE}"
                if col == CREATED_AT
                else expected
            )
            errors[int(i)] = f"lead {records[i][LEAD_ID]}: field {col!r} must be {rule}, got {shown!r}"
    return dict(sorted(errors.items()))


EARLIEST_LEAD_DATE, LATEST_LEAD_DATE = "1900-01-01", "2200-12-31"
_SCALARS = frozenset({str, int, float, bool, type(None)})  # what JSON gives, tested by type alone (fast)


def _nested(value: Any) -> bool:
    return isinstance(value, Mapping | list | tuple | set)


def convert_lead_values(values: pd.Series, col: str) -> tuple[pd.Series, pd.Series]:
    """A raw column as numbers (or, for ``created_at``, naive UTC dates) and the mask of values that do not
    convert; an empty text is missing, true / false is neither a number nor a date."""
    if col != CREATED_AT and (plain := _plain_numbers(values)) is not None:
        return plain
    values = values.map(lambda v: None if isinstance(v, str) and not v.strip() else v)
    flags = values.map(lambda v: isinstance(v, bool))
    clean = values.mask(flags)
    if col == CREATED_AT:
        as_text = clean.map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
        converted = pd.to_datetime(as_text, errors="coerce", utc=True, format="mixed").dt.tz_localize(None)
        out_of_range = (converted < pd.Timestamp(EARLIEST_LEAD_DATE)) | (
            converted > pd.Timestamp(LATEST_LEAD_DATE)
        )
        converted = converted.mask(out_of_range)
        bad = (converted.isna() & as_text.notna()) | flags
    else:
        converted = pd.to_numeric(clean, errors="coerce")
        bad = (converted.isna() & clean.notna()) | flags | ~np.isfinite(converted.fillna(0.0))
        converted = converted.mask(bad)
    return converted, bad


def _plain_numbers(values: pd.Series) -> tuple[pd.Series, pd.Series] | None:
    """:func:`convert_lead_values` of a column that holds only numbers and missing values (what JSON gives), as
    floats without pandas' per-value conversion; None for anything else (text, true / false, big integers)."""
    out = plain_floats(values.to_numpy(dtype=object))
    if out is None:
        return None
    bad = np.isinf(out)
    out[bad] = np.nan
    return pd.Series(out, index=values.index), pd.Series(bad, index=values.index)


def plain_floats(raw: Sequence[Any]) -> np.ndarray | None:
    """Values that are all numbers or None as floats (None: NaN), else None (text, true / false, big integers)."""
    out = np.empty(len(raw), dtype=np.float64)
    for i, v in enumerate(raw):
        if v is None:
            out[i] = np.nan
        elif type(v) is float or (type(v) is int and -(2**53) <= v <= 2**53):
            out[i] = v
        else:
            return None
    return out


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (for messages: True, not np.True_)."""
    return value.item() if isinstance(value, np.generic) else value
