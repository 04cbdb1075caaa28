"""``/forecast`` and ``/plan`` answers from a served forecast champion, built in one place so that the HTTP API,
the planner's page (:mod:`serving.page`) and ``salesml report`` show the same numbers.

Plain functions over a :class:`~serving.champions.Champion` (or anything with ``name``, ``version``, ``meta`` and
``model.model``); they raise :class:`~features.errors.SalesmlError` for bad input, which each caller turns into
its own client error.
"""

from __future__ import annotations

from typing import Any

from serving.answers import dates, model_ref
from serving.schemas import ForecastNode, PlanResponse

__all__ = ["QUARTER_FIELDS", "forecast_cutoff", "forecast_results", "plan_response"]

QUARTER_FIELDS = ("actual_to_date", "mean", "median", "lo_80", "hi_80", "lo_95", "hi_95")
_Q_COLUMNS = ("actual_to_date", "mean", "median", "lo-80", "hi-80", "lo-95", "hi-95")


def forecast_cutoff(champ: Any) -> str:
    """The last period with data behind the champion's forecast."""
    return str(champ.meta.get("data_cutoff") or getattr(champ.model.model, "data_cutoff", "") or "")


def forecast_results(
    champ: Any, nodes: list[str] | None = None, level: str | None = None
) -> list[ForecastNode]:
    """Per node (in the order asked, or the level's): per-period mean with 80 % / 95 % bounds and the current /
    next quarter totals, each saying which model version made it."""
    from training.forecast.serve_api import forecast_nodes, quarter_totals

    periods = forecast_nodes(champ.model.model, nodes=nodes, level=level)
    quarters = quarter_totals(champ.model.model, nodes=nodes, level=level)
    order = nodes if nodes is not None else list(dict.fromkeys(periods["unique_id"]))
    # Built column-wise (one pass over each table), not by slicing a frame per node.
    by_node: dict[str, list[dict[str, Any]]] = {}
    for uid, ds, m, l8, h8, l9, h9 in zip(
        periods["unique_id"].tolist(),
        dates(periods["ds"]),
        *(periods[c].astype(float).tolist() for c in ("mean", "lo-80", "hi-80", "lo-95", "hi-95")),
        strict=True,
    ):
        by_node.setdefault(uid, []).append(
            {"ds": ds, "mean": m, "lo_80": l8, "hi_80": h8, "lo_95": l9, "hi_95": h9}
        )
    q_by_node: dict[str, list[dict[str, Any]]] = {}
    for uid, quarter, period, *vals in zip(
        quarters["unique_id"].tolist(),
        quarters["quarter"].tolist(),
        [str(p) for p in quarters["period"]],
        *(quarters[c].astype(float).tolist() for c in _Q_COLUMNS),
        strict=True,
    ):
        q_by_node.setdefault(uid, []).append(
            {"quarter": quarter, "period": period, **dict(zip(QUARTER_FIELDS, vals, strict=True))}
        )
    levels = dict(zip(quarters["unique_id"].tolist(), quarters["level"].astype(str).tolist(), strict=True))
    levels.update(zip(periods["unique_id"].tolist(), periods["level"].astype(str).tolist(), strict=True))
    ref = model_ref(champ, forecast_cutoff(champ))
    return [
        ForecastNode(
            node=uid,
            level=levels.get(uid, ""),
            periods=by_node.get(uid, []),
            quarters=q_by_node.get(uid, []),
            **ref,
        )
        for uid in order
    ]


def plan_response(champ: Any, node: str, target: float, quarter: str = "next") -> PlanResponse:
    """A quarter target for ``node`` broken down to its children in proportion to their forecast, with each
    row's median and calibrated probability of reaching its part (:func:`training.forecast.serve_api.plan_target`)."""
    from training.forecast.serve_api import plan_target

    table = plan_target(champ.model.model, node, target, quarter)  # type: ignore[arg-type]
    return PlanResponse(
        node=node,
        quarter=quarter,  # type: ignore[arg-type]
        target=float(target),
        rows=[
            {
                "node": r["unique_id"],
                "level": str(r["level"]),
                "role": r["role"],
                "share": float(r["share"]),
                "target": float(r["target"]),
                "median": float(r["median"]),
                "probability": float(r["probability"]),
            }
            for _, r in table.iterrows()
        ],
        **model_ref(champ, str(champ.meta.get("data_cutoff") or "")),
    )
