"""Plain lead records -> the feature frame :func:`features.lead_records.lead_record_features` gives them,
without pandas' per-call cost (what the service's ``/leads/score`` needs at a CRM's rate).

The frame path types a batch through pandas (build a frame, give it the leads table's types, join the lookups,
look the context up, type every column again): about 20 ms for one lead whatever the data set. For a new lead
all of that is fixed but the lead's own values, so :class:`PlainLeadRows` works out once, when the context is
built, where each output column comes from (the lead's own value, a lookup table reached through a key, the
win rates, activity counts or period context as of the end of the data, a constant), takes the output's types
from one lead run through the frame path, and then fills the columns value by value.

It gives each lead the row the frame path gives that lead alone, which is what
:func:`~features.lead_records.lead_record_features` promises (tests/unit/test_lead_rows.py checks both on every
leads data set, alone and in batches), for any batch size: the frame path over a large batch can drop a text
column as identifier-like (a rule of training sets: more than 50 distinct values in the batch), the plain path
never does. It declines (None, and the caller takes the frame path) where a value is not plain (a number or a
true / false in a text column, a text in a numeric one, a numpy scalar) or the data set's lookups are keyed by
anything but text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from features.inputs import convert_lead_values, plain_floats
from features.lead_context import DECISION_TIME, LABEL
from features.spec import CREATED_AT, LEAD_ID, OUTCOME, Role

__all__ = ["PlainLeadRows"]

_NOT_PLAIN = object()  # a value the frame path would convert in a way this module does not repeat


@dataclass(frozen=True)
class _Lookup:
    """One lookup table as the frame path joins it: the key column, the columns it adds, their typed values."""

    key: str
    columns: tuple[str, ...]
    kinds: tuple[str, ...]  # "number" or "text", per column
    rows: dict[str, tuple[Any, ...]]  # key text -> typed values of ``columns``


@dataclass(frozen=True)
class PlainLeadRows:
    """Where each column of a new lead's feature row comes from, worked out once per loaded context.

    Attributes:
        template: the frame path's output for one lead that sends only its id (columns, types, constants).
        numeric, text: the lead's own columns, typed as numbers / as texts (``flags``: true / false columns).
        lookups: in the frame path's join order.
        ages: ``{x}_age_years`` -> ``year_{x}`` (as of the decision time's year).
        flags: numeric columns of true / false (true 1, false 0); declared: columns the spec declares numeric.
        rate_keys: the columns the win rates are looked up by.
        context: the loaded data set's :class:`~features.lead_records.NewLeadContext`.
    """

    template: pd.DataFrame
    numeric: tuple[str, ...]
    flags: frozenset[str]
    declared: frozenset[str]
    text: tuple[str, ...]
    lookups: tuple[_Lookup, ...]
    ages: dict[str, str]
    rate_keys: tuple[str, ...]
    context: Any  # features.lead_records.NewLeadContext (which holds this plan: not imported here)

    @classmethod
    def build(cls, context: Any, template: pd.DataFrame) -> PlainLeadRows | None:
        """The plan for ``context``, or None where its data set needs the frame path (say a lookup keyed by a
        number). ``template``: the frame path's output for ``[{"lead_id": ...}]``."""
        dtypes = template.dtypes
        own = [c for c in context.dtypes.index if c not in (OUTCOME, LEAD_ID)]
        present = {*context.dtypes.index, OUTCOME, LEAD_ID}
        if context.time_kind != "datetime":
            present.add(DECISION_TIME)
        lookups = _lookups(context, present, dtypes)
        if lookups is None:
            return None
        joined = {c for lk in lookups for c in lk.columns}
        known = context.known
        blocks: set[str] = set()
        if context.time_kind == "datetime":
            keys = [k for k in context.rate_keys if k in present | joined] if known.rates is not None else []
            if keys:
                blocks |= {f"{k}_{s}" for k in keys for s in ("win_rate", "closed_deals")}
            if known.activities is not None:
                blocks |= {f"n_{t}" for t in known.activities.types}
        else:
            keys = []
            if known.period is not None:
                if not all(_is_text_dtype(dtypes.get(c)) for c in known.period.period_columns):
                    return None  # a period column typed as a number: the frame path's text of it differs
                blocks |= set(known.period.started.index)
        ages = {  # year_established -> established_age_years: the year itself leaves the output
            f"{c.removeprefix('year_')}_age_years": c
            for c in [*own, *joined]
            if context.time_kind == "datetime" and c.startswith("year_") and c not in dtypes.index
        }
        expected = {LEAD_ID, DECISION_TIME, LABEL, *blocks, *ages}
        if CREATED_AT in dtypes.index:
            expected.add(CREATED_AT)
        kinds = {c: kind for lk in lookups for c, kind in zip(lk.columns, lk.kinds, strict=True)}
        numeric, text = [], []
        for col in [*own, *joined]:
            if col in expected or col not in dtypes.index:
                continue  # a date attribute, a post-outcome or a role column: not in the output
            kind = "number" if dtypes[col] == np.float64 else "text" if _is_text_dtype(dtypes[col]) else None
            if kind is None or kinds.get(col, kind) != kind:
                return None
            (numeric if kind == "number" else text).append(col)
            expected.add(col)
        if set(template.columns) != expected or any(dtypes[c] != np.float64 for c in blocks | set(ages)):
            return None  # the frame path's output is not what this plan would give
        if any(k not in numeric and k not in text for k in keys):
            return None  # a win-rate key that is not a feature column: its value is not filled here
        years = [c for c in ages.values() if c in own]
        if any(not pd.api.types.is_numeric_dtype(context.dtypes[c]) for c in years) or any(
            kinds.get(c, "number") != "number" for c in ages.values()
        ):
            return None
        flags = frozenset(c for c in numeric if c in own and pd.api.types.is_bool_dtype(context.dtypes[c]))
        declared = frozenset(c for c, kind in context.table.types.items() if kind == "numeric")
        return cls(
            template=template,
            numeric=tuple(c for c in [*numeric, *years] if c in own),
            flags=flags,
            declared=declared,
            text=tuple(c for c in text if c in own),
            lookups=lookups,
            ages=ages,
            rate_keys=tuple(keys),
            context=context,
        )

    def frame(self, records: Sequence[Mapping[str, Any]]) -> pd.DataFrame | None:
        """The frame path's feature frame of ``records`` (checked, unique ids), or None when one holds a value
        this plan does not convert (the caller takes the frame path)."""
        columns = self.columns(records)
        return None if columns is None else pd.DataFrame(columns)

    def columns(self, records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray] | None:
        """:meth:`frame`'s columns as arrays, in its order (scoring reads them without a frame: building one
        and reading its columns back costs ~1 ms a call)."""
        n = len(records)
        if n == 0:
            return None
        values: dict[str, Any] = {}
        for col in self.numeric:  # as pandas' to_numeric then float (as convert_lead_values if declared)
            raw = [r.get(col) for r in records]
            if col in self.flags:
                raw = [float(v) if type(v) is bool else v for v in raw]
            floats = plain_floats(raw)
            if floats is None:
                return None
            if col in self.declared:
                floats[np.isinf(floats)] = np.nan
            values[col] = floats
        for col in self.text:
            column = [_text(r.get(col)) for r in records]
            if any(v is _NOT_PLAIN for v in column):
                return None
            values[col] = column
        for lookup in self.lookups:
            rows = [lookup.rows.get(k) if type(k) is str else None for k in values[lookup.key]]
            for j, col in enumerate(lookup.columns):
                values[col] = [np.nan if row is None else row[j] for row in rows]
        data: dict[str, Any] = {}
        zeros = np.zeros(n, dtype=np.int64)
        for col, dtype, constant in self._columns:
            if col in values:
                data[col] = np.asarray(values[col], dtype=dtype)
            else:  # constants: the decision time, the missing label, a creation date nobody sent
                data[col] = constant[zeros]
        data[LEAD_ID] = np.asarray([str(r[LEAD_ID]) for r in records], dtype=object)
        if CREATED_AT in data and any(CREATED_AT in r for r in records):
            created = pd.Series([r.get(CREATED_AT) for r in records], dtype=object)
            data[CREATED_AT] = convert_lead_values(created, CREATED_AT)[0].astype("datetime64[ns]").to_numpy()
        year = self.template[DECISION_TIME].iloc[0].year if self.ages else None
        for age, col in self.ages.items():
            data[age] = year - np.asarray(values[col], dtype=np.float64)
        known = self.context.known
        if self.rate_keys:
            data.update(known.rates.look_up({k: values[k] for k in self.rate_keys}, n))  # type: ignore[union-attr]
        if known.activities is not None and self.context.time_kind == "datetime":
            data.update(known.activities.look_up(data[LEAD_ID]))
        if known.period is not None and self.context.time_kind != "datetime":
            cols = known.period.period_columns
            texts = [[None if v != v else v for v in (values[c][i] for c in cols)] for i in range(n)]
            block = known.period.rows(known.period.goes_on(texts))
            for j, col in enumerate(known.period.started.index):
                data[col] = block[:, j]
        return data  # the keys are the template's columns, in its order

    @cached_property
    def _columns(self) -> list[tuple[str, np.dtype, np.ndarray]]:
        """The template's columns: name, type, its one row's value (a frame's ``dtypes`` is built per access)."""
        return [(c, self.template[c].dtype, self.template[c].to_numpy()) for c in self.template.columns]


def _lookups(context: Any, present: set[str], dtypes: pd.Series) -> tuple[_Lookup, ...] | None:
    """The lookups as :func:`features.load.join_lookups` joins them (same order, same columns), or None when
    one is keyed by anything but text, holds a repeated key, or gives a column typed otherwise than here."""
    dataset = context.dataset
    columns = set(present)
    pending = {n: t for n, t in dataset.spec.tables.items() if t.role is Role.lookup}
    out: list[_Lookup] = []
    progress = True
    while pending and progress:
        progress = False
        for name, spec in list(pending.items()):
            if spec.key not in columns:
                continue
            del pending[name]
            progress = True
            table = dataset.tables[name]
            extra = [c for c in table.columns if c not in columns]
            if not extra:
                continue
            keys = table[spec.key].to_numpy(dtype=object)
            if not _is_text_dtype(dtypes.get(spec.key)) or not _all_text(keys) or len(set(keys)) != len(keys):
                return None
            typed: list[list[Any]] = []
            kept: list[str] = []
            kinds: list[str] = []
            for col in extra:
                s = table[col]
                if pd.api.types.is_datetime64_any_dtype(s):
                    continue  # a date attribute: never in the output
                if pd.api.types.is_bool_dtype(s):
                    return None  # a lead the lookup misses gets it as text in the frame path
                if pd.api.types.is_numeric_dtype(s):
                    typed.append(s.to_numpy(dtype=np.float64, na_value=np.nan).tolist())
                    kinds.append("number")
                else:
                    raw = s.to_numpy(dtype=object)
                    if not _all_text(raw, missing_ok=True):
                        return None
                    typed.append([v if type(v) is str else np.nan for v in raw])
                    kinds.append("text")
                kept.append(col)
            rows = {k: tuple(col[i] for col in typed) for i, k in enumerate(keys)}
            out.append(_Lookup(spec.key, tuple(kept), tuple(kinds), rows))
            columns.update(extra)
    return tuple(out)


def _is_text_dtype(dtype: Any) -> bool:
    """The frame path's type of a text column (Python objects)."""
    return dtype is not None and pd.api.types.is_object_dtype(dtype)


def _all_text(values: np.ndarray, *, missing_ok: bool = False) -> bool:
    return all(type(v) is str or (missing_ok and pd.isna(v)) for v in values)


def _text(v: Any) -> Any:
    """A text column's value: a text as itself, nothing as missing; anything else is converted by pandas."""
    if type(v) is str:
        return v
    if v is None or (type(v) is float and v != v):
        return np.nan
    return _NOT_PLAIN
