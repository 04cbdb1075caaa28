"""The plain path (:mod:`features.lead_rows`) gives exactly the frame path's feature rows, on every leads data set.

The frame path (``features.lead_records._frame_features``: the batch typed through pandas, then
:func:`features.leads.lead_features`) is the definition, itself checked against the training featuriser in
tests/unit/test_lead_scoring_context.py. Records are drawn as a CRM sends them: rows of the data set through
JSON, with fields left out, set to null, or given values the model never saw; the frames must be equal (values
and types) alone and in a batch, and what the plain path does not convert must fall back to the frame path.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.lead_records import NewLeadContext, _frame_features, lead_record_features, new_lead_context
from features.load import load_dataset
from features.spec import CLOSED_AT, LEAD_ID, OUTCOME, Role

# every leads data set: row-ordered with periods, dated with lookups and win rates, no clock, dated with activities
DATASETS = ("bank-marketing", "crm", "x-education", "synthetic")


@pytest.fixture(scope="module", params=DATASETS)
def context(request: pytest.FixtureRequest, small_synthetic_spec: Path) -> NewLeadContext:
    name = request.param
    if name == "synthetic":
        return new_lead_context(load_dataset(small_synthetic_spec))
    request.getfixturevalue("shared_data")  # skips with a reason where the public data sets are absent
    return new_lead_context(load_dataset(name))


def _sendable(context: NewLeadContext) -> list[str]:
    table = context.table
    skip = {LEAD_ID, OUTCOME, CLOSED_AT, *table.post_outcome}
    return [c for c in context.dtypes.index if c not in skip]


def _records(context: NewLeadContext, seed: int, n: int) -> list[dict]:
    """``n`` leads as JSON gives them: a data set row each, with fields dropped, nulled or made unseen."""
    rng = np.random.default_rng(seed)
    leads = context.dataset.table(Role.leads)
    columns = _sendable(context)
    rows = json.loads(
        leads[columns].iloc[rng.integers(len(leads), size=n)].to_json(orient="records", date_format="iso")
    )
    records = []
    for i, row in enumerate(rows):
        record = {LEAD_ID: f"new-{seed}-{i}"}
        for col, value in row.items():
            draw = rng.random()
            if draw < 0.1:
                continue  # not sent
            if draw < 0.15:
                value = None
            elif isinstance(value, str) and draw < 0.22 and col != "created_at":
                value = f"unseen {col}"
            elif isinstance(value, float) and value.is_integer() and draw < 0.3:
                value = int(value)  # JSON numbers without a fraction
            record[col] = value
        records.append(record)
    return records


def test_every_leads_data_set_has_a_plain_path(context: NewLeadContext) -> None:
    assert context.plain is not None, f"{context.dataset.name}: the plain path was refused"


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 6))
def test_plain_rows_are_the_frame_paths_rows(context: NewLeadContext, seed: int, n: int) -> None:
    records = _records(context, seed, n)
    plain = context.plain.frame(records)
    assert plain is not None
    pd.testing.assert_frame_equal(plain, _frame_features(records, context), check_like=True)
    one = context.plain.frame(records[:1])
    pd.testing.assert_frame_equal(one, _frame_features(records[:1], context), check_like=True)


def test_the_plain_path_is_taken_for_a_large_batch_and_gives_each_lead_its_row_alone(
    context: NewLeadContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,000 leads (what a CRM's bulk call sends) never reach the frame path, and each gets the row the frame
    path gives it alone (the frame path over such a batch may drop a text column as identifier-like)."""
    import features.lead_records as lr

    records = _records(context, 1, 1_000)
    frame_path = lr._frame_features
    calls: list[int] = []
    monkeypatch.setattr(
        lr, "_frame_features", lambda rows, ctx: calls.append(len(rows)) or frame_path(rows, ctx)
    )
    batch, _ = lead_record_features(records, context)
    assert calls == [] and len(batch) == len(records)
    for i in np.random.default_rng(2).choice(len(records), 6, replace=False):
        alone = frame_path([records[i]], context)
        pd.testing.assert_frame_equal(batch.iloc[[i]].reset_index(drop=True), alone, check_like=True)


def test_values_the_plain_path_does_not_convert_take_the_frame_path(context: NewLeadContext) -> None:
    """A number sent for a text column, a text for a number column: pandas converts them ("5", 12.0); the
    plain path declines and the result is the frame path's."""
    frame = context.plain.template
    text = next(c for c in _sendable(context) if c in frame and frame[c].dtype == object)
    number = next(
        (
            c
            for c in _sendable(context)
            if c in frame and frame[c].dtype == np.float64 and c not in context.table.types
        ),
        None,
    )
    odd = [{LEAD_ID: "odd-1", text: 5}]
    if number is not None:
        odd.append({LEAD_ID: "odd-2", number: "12"})
    for record in odd:
        assert context.plain.frame([record]) is None
        got, _ = lead_record_features([record], context)
        pd.testing.assert_frame_equal(got, _frame_features([record], context))
    assert context.plain.frame([]) is None
