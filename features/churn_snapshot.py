"""The materialized churn feature snapshot: every customer's features at the last cutoff, for look-up by id.

Serving never computes churn features (it would need the whole purchase history per request). Training and
``salesml score churn`` write the rows to score, one per active customer at the last cutoff, to
``$SALESML_HOME/data/snapshots/<dataset>/churn.parquet``; the service reads them by ``customer_id``.

File format: Parquet, one row per customer: ``customer_id``, ``cutoff`` (the feature date; NaT for snapshot data
without dates), every feature column, ``revenue_12m``. The Parquet key-value metadata ``salesml.churn`` holds JSON
with ``dataset``, ``kind``, ``horizon_days``, ``cutoff``, ``numeric``, ``categorical``, ``spec_fingerprint`` and
``written_at``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from features.churn import CUTOFF, LABEL, ChurnSet
from features.errors import SalesmlError
from features.settings import Settings, get_settings
from features.spec import CUSTOMER_ID

__all__ = [
    "META_KEY",
    "lookup_churn_features",
    "read_churn_snapshot",
    "snapshot_path",
    "write_churn_snapshot",
]

META_KEY = b"salesml.churn"


def snapshot_path(dataset: str, settings: Settings | None = None) -> Path:
    """``$SALESML_HOME/data/snapshots/<dataset>/churn.parquet``."""
    settings = settings or get_settings()
    return settings.generated_dir / "snapshots" / dataset / "churn.parquet"


def write_churn_snapshot(
    churn_set: ChurnSet,
    *,
    spec_fingerprint: str = "",
    settings: Settings | None = None,
    path: Path | None = None,
) -> Path:
    """Write the rows to score (features at the last cutoff) atomically; returns the file written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = churn_set.to_score().drop(columns=[LABEL], errors="ignore")
    target = path or snapshot_path(churn_set.dataset, settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "dataset": churn_set.dataset,
        "kind": churn_set.kind,
        "horizon_days": churn_set.horizon_days,
        "cutoff": None if churn_set.score_cutoff is None else f"{churn_set.score_cutoff:%Y-%m-%d}",
        "numeric": churn_set.numeric,
        "categorical": churn_set.categorical,
        "spec_fingerprint": spec_fingerprint,
        "rows": len(rows),
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    table = pa.Table.from_pandas(rows, preserve_index=False)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), META_KEY: json.dumps(meta).encode()}
    )
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, target)
    return target


def read_churn_snapshot(
    dataset: str, *, settings: Settings | None = None, path: Path | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The whole snapshot and its metadata."""
    import pyarrow.parquet as pq

    source = path or snapshot_path(dataset, settings)
    if not source.exists():
        raise SalesmlError(
            f"no churn feature snapshot for data set {dataset!r} at {source}; "
            f"run `salesml train churn --dataset {dataset}` or `salesml score churn --dataset {dataset}` first"
        )
    table = pq.read_table(source)
    meta = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
    return table.to_pandas(), meta


def lookup_churn_features(
    dataset: str,
    customer_ids: Sequence[str],
    *,
    settings: Settings | None = None,
    path: Path | None = None,
) -> tuple[pd.DataFrame, list[str], dict[str, Any]]:
    """Feature rows of the given customers at the snapshot's cutoff.

    Returns:
        (rows found, in the order asked; ids not in the snapshot (not active at the cutoff, or unknown);
        the snapshot metadata)
    """
    frame, meta = read_churn_snapshot(dataset, settings=settings, path=path)
    wanted = pd.Index([str(i) for i in customer_ids])
    index = pd.Index(frame[CUSTOMER_ID].astype(str))
    pos = index.get_indexer(wanted)
    found = frame.iloc[pos[pos >= 0]].reset_index(drop=True)
    missing = [str(i) for i, p in zip(wanted, pos, strict=True) if p < 0]
    if CUTOFF in found.columns:
        found[CUTOFF] = pd.to_datetime(found[CUTOFF])
    return found, missing, meta
