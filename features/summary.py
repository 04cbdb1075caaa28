"""What a loaded data set holds: tables, rows, date ranges, entities, hierarchy sizes, label balance."""

from __future__ import annotations

from typing import Any

import pandas as pd

from features.load import Dataset, sales_facts
from features.spec import CHURN_LABEL, ID_COLUMNS, OUTCOME, Role

__all__ = ["summarize"]


def summarize(dataset: Dataset) -> dict[str, Any]:
    """A JSON-friendly summary of a validated data set."""
    tables = []
    for name, frame in dataset.tables.items():
        spec = dataset.spec.tables[name]
        info: dict[str, Any] = {
            "table": name,
            "role": spec.role.value,
            "source": spec.source_label(),
            "rows": len(frame),
            "columns": len(frame.columns),
        }
        dates = [c for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c])]
        col = ("time" if "time" in dates else dates[0]) if dates else None
        if col is not None and frame[col].notna().any():
            info["date_range"] = f"{frame[col].min():%Y-%m-%d} .. {frame[col].max():%Y-%m-%d} ({col})"
        entities = {c: int(frame[c].nunique()) for c in frame.columns if c in ID_COLUMNS or c == spec.key}
        if entities:
            info["entities"] = entities
        if OUTCOME in frame.columns:
            info["label_balance"] = {k: int(v) for k, v in frame[OUTCOME].value_counts(sort=False).items()}
        if CHURN_LABEL in frame.columns:
            counts = frame[CHURN_LABEL].value_counts(dropna=False)
            info["label_balance"] = {("churned" if k == 1 else "stayed"): int(v) for k, v in counts.items()}
        tables.append(info)
    out: dict[str, Any] = {"dataset": dataset.name, "spec": str(dataset.spec_path), "root": str(dataset.root)}
    out["fingerprint"] = dataset.spec.fingerprint()
    out["tables"] = tables
    facts = dataset.table(Role.transactions)
    if dataset.spec.hierarchies and facts is not None:
        joined = sales_facts(dataset)
        out["hierarchies"] = [
            {level: int(joined[level].nunique()) for level in levels if level in joined.columns}
            for levels in dataset.spec.hierarchies
        ]
    if dataset.spec.forecast is not None:
        out["frequency"] = dataset.spec.forecast.frequency
    if "truth" in dataset.meta:
        out["synthetic"] = "yes: generated data, drivers recorded in " + str(dataset.meta.get("truth_dir"))
    return out
