"""A file of customers to score for churn -> the rows the model can score and, by row, why the others cannot.

Two shapes, both what the service accepts as a customer ``features`` object, so a row scores the same from a file
as over HTTP:

* snapshot data (telco): raw customer rows in the customers table's source column names (``customerID``,
  ``tenure``, ``TotalCharges`` ...) or their canonical names (``customer_id``, ``tenure_months`` ...), renamed,
  with the spec's value map and lookups applied; the label column (``Churn``), if the rows still carry it, is
  ignored (it is what is being predicted);
* transaction data (cdnow, synthetic): ``customer_id`` and the model's feature values (``recency_days`` ...,
  and ``revenue_12m``, the base of revenue at risk) as the service's ``features``; the ``*_rank_in_cutoff``
  ranks a client cannot know are filled by the scorer against the feature snapshot.

A column nobody expects is refused for the whole file (it is a mapping mistake, and ignoring it would score the
rows without it); a bad value, a missing or repeated id or a row without any feature value is named by its row
number, column and the rule, and the row is left out. An empty text is a missing value.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd

from features.churn import REVENUE_12M
from features.errors import SalesmlError
from features.inputs import churn_feature_problem
from features.load import Dataset, join_lookups
from features.spec import CHURN_LABEL, CHURNED_AT, CUSTOMER_ID, Role

__all__ = ["churn_input_rows"]

_OUTCOME_COLUMNS = (CHURN_LABEL, CHURNED_AT)  # known only after the outcome: ignored in rows to score


def churn_input_rows(
    rows: pd.DataFrame,
    dataset: Dataset,
    features: Sequence[str],
    numeric: Collection[str],
    *,
    source: str = "the input",
) -> tuple[pd.DataFrame, dict[int, str]]:
    """The rows of a customers file that can be scored, in canonical names, and why each other row cannot.

    Args:
        rows: the file's rows as read (text or typed values; row ``i`` of the frame is data row ``i + 1``).
        dataset: the data set the model was trained on (the customers table's column names, value map, lookups).
        features: the model's features; ``numeric``: those of them that are numbers.
        source: how messages name the input (the file).

    Returns:
        (``customer_id`` and the feature values of the good rows, in file order; data row number -> the reason,
        naming the column and what was expected)

    Raises:
        SalesmlError: no ``customer_id`` column, a column that is neither a feature nor a customer attribute,
            or no row at all.
    """
    if rows.empty:
        raise SalesmlError(
            f"{source} holds no customer row; expected one row per customer with a customer_id"
        )
    frame, known = _canonical_names(rows, dataset)
    if CUSTOMER_ID not in frame.columns:
        src = known.get(CUSTOMER_ID, CUSTOMER_ID)
        raise SalesmlError(
            f"{source} has no customer id column: expected {CUSTOMER_ID!r}"
            + (f" (or the source name {src!r})" if src != CUSTOMER_ID else "")
            + f"; found {list(rows.columns)[:20]}"
        )
    frame = frame.drop(columns=[c for c in _OUTCOME_COLUMNS if c in frame.columns])
    allowed = {CUSTOMER_ID, REVENUE_12M, *features, *known}
    unknown = [c for c in frame.columns if c not in allowed]
    if unknown:
        raise SalesmlError(
            f"{source}: unknown column(s) {unknown}; expected {CUSTOMER_ID!r} and some of the model's features "
            f"{list(features)} (and {REVENUE_12M!r})"
            + (f", or the customers table's columns {sorted(known)}" if known else "")
            + "; nothing was scored"
        )
    frame = join_lookups(_blank_is_missing(frame, dataset), dataset)
    errors = _row_errors(frame, features, numeric)
    good = [i for i in range(len(frame)) if i + 1 not in errors]
    keep = [c for c in frame.columns if c in {CUSTOMER_ID, REVENUE_12M, *features}]
    out = frame.iloc[good][keep].reset_index(drop=True)
    out[CUSTOMER_ID] = out[CUSTOMER_ID].map(_id_text)
    for col in out.columns:
        if col in {*numeric, REVENUE_12M}:
            # Text read as Python reads it (round-trips every float written as text; pandas' parser may not by
            # an ulp, which moves a value across a tree split or a rank tie).
            out[col] = out[col].map(lambda v: float(v) if isinstance(v, str) else v)
    return out, errors


def _canonical_names(rows: pd.DataFrame, dataset: Dataset) -> tuple[pd.DataFrame, dict[str, str]]:
    """Source column names of the customers table renamed to canonical ones; the table's canonical -> source."""
    found = dataset.spec.table_of(Role.customers)
    known = dict(found[1].columns) if found is not None else {}
    to_canonical = {src: canon for canon, src in known.items() if src not in known}
    renamed = rows.rename(columns={c: to_canonical[c] for c in rows.columns if c in to_canonical})
    repeated = sorted({c for c in renamed.columns if list(renamed.columns).count(c) > 1})
    if repeated:
        raise SalesmlError(
            f"column(s) {repeated} are given twice (under the source and the canonical name); keep one"
        )
    return renamed, known


def _blank_is_missing(frame: pd.DataFrame, dataset: Dataset) -> pd.DataFrame:
    """Empty texts as missing values, surrounding spaces stripped, and the customers table's value map."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].map(lambda v: (v.strip() or np.nan) if isinstance(v, str) else v)
    found = dataset.spec.table_of(Role.customers)
    for col, mapping in found[1].value_map.items() if found is not None else ():
        if col in out.columns:
            out[col] = out[col].replace({k: (np.nan if v is None else v) for k, v in mapping.items()})
    return out


def _row_errors(frame: pd.DataFrame, features: Sequence[str], numeric: Collection[str]) -> dict[int, str]:
    """Data row number -> why the row cannot be scored (its id, then its values by the service's rules)."""
    ids = frame[CUSTOMER_ID].map(lambda v: None if _missing(v) else _id_text(v))
    repeated = ids.duplicated(keep="first") & ids.notna()
    values = [c for c in frame.columns if c in {REVENUE_12M, *features}]
    errors: dict[int, str] = {}
    for i, record in enumerate(frame[values].to_dict(orient="records")):
        where = f"row {i + 1}"
        if ids.iloc[i] is None:
            errors[i + 1] = f"{where}: column {CUSTOMER_ID!r} is empty; every customer needs an id"
            continue
        where += f" (customer {ids.iloc[i]!r})"
        if repeated.iloc[i]:
            errors[i + 1] = f"{where}: {CUSTOMER_ID} repeats an earlier row's; each customer once per file"
            continue
        nested = next((k for k, v in record.items() if not pd.api.types.is_scalar(v)), None)
        if nested is not None:
            kind = type(record[nested]).__name__
            errors[i + 1] = f"{where}: column {nested!r} holds a {kind}; expected a single value"
            continue
        given = {
            k: (v.item() if isinstance(v, np.generic) else v) for k, v in record.items() if not _missing(v)
        }
        if not any(k in features for k in given):
            errors[i + 1] = f"{where}: no feature value; expected some of {list(features)}"
            continue
        problem = churn_feature_problem(given, features, numeric)
        if problem:
            errors[i + 1] = f"{where}: {problem.replace('feature ', 'column ', 1)}"
    return errors


def _missing(value: object) -> bool:
    if value is None or isinstance(value, str) or not pd.api.types.is_scalar(value):
        return value is None
    return bool(pd.isna(value))


def _id_text(value: object) -> str:
    """An id as text: ``1234`` for a number read as ``1234.0``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
