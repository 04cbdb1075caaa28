"""Plain functions the CLI and the HTTP service call on a trained forecast (no refitting, no data access).

``source`` may be a :class:`ForecastArtifacts`, the folder it was saved to, a loaded MLflow pyfunc model
(``mlflow.pyfunc.load_model("models:/sales_forecast@champion")``), the :class:`SalesForecastModel` inside it,
or a ``models:/`` URI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from features.errors import NotFoundError, SalesmlError
from training.forecast.artifacts import FORECAST_COLUMNS, QUARTER_COLUMNS, ForecastArtifacts

__all__ = [
    "PLAN_COLUMNS",
    "children_of",
    "forecast_nodes",
    "load_forecast",
    "plan_target",
    "probability_at_least",
    "quarter_totals",
]

PLAN_COLUMNS = [
    "unique_id",
    "level",
    "role",
    "share",
    "target",
    "median",
    "mean",
    "lo-80",
    "hi-80",
    "probability",
]


def load_forecast(source: Any) -> ForecastArtifacts:
    """The artifacts behind any accepted ``source`` (see the module docstring)."""
    if isinstance(source, ForecastArtifacts):
        return source
    if isinstance(source, str | Path) and str(source).startswith(("models:/", "runs:/")):
        import mlflow

        source = mlflow.pyfunc.load_model(str(source))
    if isinstance(source, str | Path):
        path = Path(source)
        if not (path / "meta.json").exists():
            raise SalesmlError(f"{path} is not a saved sales forecast (no meta.json)")
        return ForecastArtifacts.load(path)
    inner = getattr(source, "artifacts_", None)
    if isinstance(inner, ForecastArtifacts):
        return inner
    unwrap = getattr(source, "unwrap_python_model", None)
    if unwrap is not None:
        return load_forecast(unwrap())
    raise SalesmlError(f"cannot read a sales forecast from {type(source).__name__}")


def _select(
    frame: pd.DataFrame, art: ForecastArtifacts, nodes: list[str] | None, level: str | None
) -> pd.DataFrame:
    known_levels = list(dict.fromkeys(art.nodes["level"]))
    if level is not None and level not in known_levels:
        raise NotFoundError(f"unknown level {level!r}; the hierarchy has levels {known_levels}")
    if nodes is not None:
        known = set(art.nodes["unique_id"])
        unknown = [n for n in nodes if n not in known]
        if unknown:
            raise NotFoundError(
                f"unknown node(s) {unknown[:5]}; node ids look like {art.nodes['unique_id'].iloc[: min(3, len(art.nodes))].tolist()}"
            )
        frame = frame[frame["unique_id"].isin(nodes)]
    if level is not None:
        frame = frame[frame["level"] == level]
    return frame


def forecast_nodes(source: Any, nodes: list[str] | None = None, level: str | None = None) -> pd.DataFrame:
    """Per-period forecasts with 80 / 95 % intervals.

    Args:
        source: a trained forecast (see :func:`load_forecast`).
        nodes: node ids to keep (all when None).
        level: hierarchy level to keep (all when None).

    Returns:
        ``unique_id, level, ds, mean, lo-80, hi-80, lo-95, hi-95``, one row per node and future period.

    Raises:
        NotFoundError: an unknown node or level.
    """
    art = load_forecast(source)
    out = _select(art.forecasts, art, nodes, level)
    return out[FORECAST_COLUMNS].reset_index(drop=True)


def quarter_totals(
    source: Any,
    nodes: list[str] | None = None,
    level: str | None = None,
    quarter: Literal["current", "next"] | None = None,
) -> pd.DataFrame:
    """Quarter totals (current = actuals to date + forecast of the rest; next) with calibrated bounds.

    Returns:
        ``unique_id, level, quarter, period, start, end, actual_to_date, forecast_rest, mean, median,
        lo-80, hi-80, lo-95, hi-95``.
    """
    art = load_forecast(source)
    if quarter is not None and quarter not in ("current", "next"):
        raise SalesmlError(f"quarter must be 'current' or 'next', got {quarter!r}")
    out = _select(art.quarters, art, nodes, level)
    if quarter is not None:
        out = out[out["quarter"] == quarter]
    return out[QUARTER_COLUMNS].reset_index(drop=True)


def children_of(source: Any, node: str, hierarchy: int | None = None) -> list[str]:
    """Direct children of ``node``; for ``total`` with several hierarchies, those of ``hierarchy`` (default 0)."""
    art = load_forecast(source)
    nodes = art.nodes
    if node not in set(nodes["unique_id"]):
        raise NotFoundError(f"unknown node {node!r}; try one of {nodes['unique_id'].iloc[:3].tolist()}")
    known = sorted(int(h) for h in nodes["hierarchy"].dropna().unique())
    if hierarchy is not None and hierarchy not in known:
        raise SalesmlError(f"hierarchy must be one of {known} (the data set's hierarchies), got {hierarchy}")
    kids = nodes[nodes["parent"] == node]
    if kids["hierarchy"].nunique() > 1:
        kids = kids[kids["hierarchy"] == (0 if hierarchy is None else hierarchy)]
    return kids["unique_id"].tolist()


def probability_at_least(row: pd.Series, quantile_cols: list[str], value: float) -> float:
    """P(quarter total >= value) from the stored quantiles (linear between them, 0 / 1 beyond)."""
    qs = np.maximum.accumulate(row[quantile_cols].to_numpy(dtype=float))
    ps = np.array([int(c[1:]) / 100 for c in quantile_cols])
    lo_edge = qs[0] - (qs[1] - qs[0]) if len(qs) > 1 else qs[0]
    hi_edge = qs[-1] + (qs[-1] - qs[-2]) if len(qs) > 1 else qs[-1]
    xp = np.concatenate([[lo_edge], qs, [hi_edge]])
    fp = np.concatenate([[0.0], ps, [1.0]])
    if np.all(xp == xp[0]):  # a degenerate (known or all-zero) total
        return float(value <= xp[0])
    cdf = float(np.interp(value, xp, fp))
    return float(min(max(1.0 - cdf, 0.0), 1.0))


def plan_target(
    source: Any,
    node: str,
    target: float,
    quarter: Literal["current", "next"] = "next",
    *,
    hierarchy: int | None = None,
) -> pd.DataFrame:
    """Break a quarter target for ``node`` down to its children, proportional to their forecast.

    Args:
        source: a trained forecast.
        node: the node whose target is given (``total``, ``store_type=A/store=1`` ...).
        target: the quarter target, a positive amount.
        quarter: ``current`` (actuals to date count) or ``next``.
        hierarchy: for ``total`` with several hierarchies, which one to break down along (default 0).

    Returns:
        ``unique_id, level, role, share, target, median, mean, lo-80, hi-80, probability``: first the node
        itself (``role='node'``), then one row per child (``role='child'``; none for a bottom node, a rep's or a
        product's own target). ``probability`` is the calibrated probability that the quarter total reaches
        the row's target. The children's targets sum to ``target``.

    Raises:
        NotFoundError: an unknown node.
        SalesmlError: a non-positive or non-finite target, an unknown quarter.
    """
    try:
        amount = float(target)
    except (TypeError, ValueError):
        raise SalesmlError(f"target must be a positive number, got {target!r}") from None
    if not np.isfinite(amount) or amount <= 0:
        raise SalesmlError(f"target must be a positive number, got {target!r}")
    if quarter not in ("current", "next"):
        raise SalesmlError(f"quarter must be 'current' or 'next', got {quarter!r}")
    art = load_forecast(source)
    kids = children_of(art, node, hierarchy)  # none for a bottom node: its own row only
    q = art.quarters[art.quarters["quarter"] == quarter].set_index("unique_id")
    qcols = art.quantile_columns()
    weights = q.loc[kids, "mean"].clip(lower=0.0).to_numpy()
    shares = weights / weights.sum() if weights.sum() > 0 else np.full(len(kids), 1.0 / max(len(kids), 1))
    rows = []
    for uid, role, share in [
        (node, "node", 1.0),
        *[(k, "child", s) for k, s in zip(kids, shares, strict=True)],
    ]:
        r = q.loc[uid]
        alloc = amount * float(share)
        rows.append(
            {
                "unique_id": uid,
                "level": r["level"],
                "role": role,
                "share": float(share),
                "target": alloc,
                "median": float(r["median"]),
                "mean": float(r["mean"]),
                "lo-80": float(r["lo-80"]),
                "hi-80": float(r["hi-80"]),
                "probability": probability_at_least(r, qcols, alloc),
            }
        )
    return pd.DataFrame(rows, columns=PLAN_COLUMNS)
