"""Small pieces every answer of the service is built from: which model made it, dates and numbers as JSON."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["current_service", "date_text", "dates", "finite", "model_ref"]


def model_ref(champ: Any, as_of: str) -> dict[str, str]:
    """What every answer says about the model that made it (``champ``: a :class:`serving.champions.Champion`)."""
    return {
        "dataset": str(champ.meta.get("dataset", "")),
        "model_name": champ.name,
        "model_version": champ.version,
        "as_of": as_of,
    }


def dates(values: pd.Series) -> list[str]:
    """``YYYY-MM-DD`` per value (vectorised for a datetime column)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.strftime("%Y-%m-%d").tolist()
    return [f"{v:%Y-%m-%d}" for v in values]


def date_text(value: Any) -> str:
    """A decision time as text: a date as ``YYYY-MM-DD``, a row position (data without a clock) as it is."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, pd.Timestamp | np.datetime64):
        return f"{pd.Timestamp(value):%Y-%m-%d}"
    return str(value)


def finite(value: Any) -> float | None:
    """A number for JSON: None for missing, NaN or infinite."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def current_service() -> Any:
    """The running service instance; None while it is starting (or in-process, with none instantiated)."""
    import bentoml

    try:
        return bentoml.get_current_service()
    except bentoml.exceptions.BentoMLException:
        return None
