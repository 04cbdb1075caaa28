"""What the planner's page shows, as JSON-ready dicts, read off the service's loaded champions.

Nothing here computes a number of its own: forecasts and plans are :mod:`serving.forecast_answers` (the
functions behind ``/forecast`` and ``/plan``), churn rows are the scores the service already holds for every
snapshot customer (the ones ``/churn/score`` answers by id), lead scores are ``training.leads.score_leads`` (the
function behind ``salesml score leads``), models and their history come from the store and the registry. The
page only ranks, filters and formats them. :mod:`training.report` reads the same functions for ``salesml
report``.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pandas as pd

from features.errors import NotFoundError, SalesmlError
from features.spec import LEAD_ID
from serving.answers import date_text, finite, model_ref
from serving.forecast_answers import forecast_cutoff, forecast_results
from training import score_columns as sc

__all__ = [
    "churn_rows",
    "entity_nodes",
    "forecast_artifacts",
    "forecast_tree",
    "lead_summary",
    "lead_table",
    "model_rows",
    "node_label",
    "node_sets",
    "node_view",
]

_cache: dict[tuple[str, int], Any] = {}
_cache_lock = threading.Lock()


def _cached(kind: str, champ: Any, build: Any) -> Any:
    """``build()`` once per champion object (a reload brings new objects, so their values are built again)."""
    key = (kind, id(champ.model))
    with _cache_lock:
        if key in _cache and _cache[key][0] is champ.model:
            return _cache[key][1]
    value = build()
    with _cache_lock:
        for old in [k for k in _cache if k[0] == kind]:  # one champion per kind is served at a time
            del _cache[old]
        _cache[key] = (champ.model, value)
    return value


def forecast_artifacts(champ: Any) -> Any:
    from training.forecast.serve_api import load_forecast

    return load_forecast(champ.model.model)


def node_label(uid: str) -> str:
    """A node's own name: ``region=North/manager=M01`` -> ``M01``, ``store_type=A/store=4`` -> ``store 4``; a cross
    node ``a|b`` -> ``R001 · CL1``."""
    if uid == "total":
        return "Total"
    names = []
    for part in uid.split("|"):
        level, _, value = part.rsplit("/", 1)[-1].partition("=")
        names.append(f"{level} {value}" if value.isdigit() else value)  # "store 4", not a bare "4"
    return " · ".join(names)


def forecast_tree(champ: Any) -> dict[str, Any]:
    """Every node once, parent first (``id, label, level, parent, hierarchy, bottom, next``: the next quarter's
    mean), the level names per hierarchy, and the forecast's model and cut-off."""

    def build() -> dict[str, Any]:
        art = forecast_artifacts(champ)
        nodes = art.nodes
        nxt = art.quarters[art.quarters["quarter"] == "next"].set_index("unique_id")["mean"]
        rows = [
            {
                "id": uid,
                "label": node_label(uid),
                "level": str(level),
                "parent": parent if isinstance(parent, str) else None,
                "hierarchy": int(h),
                "bottom": bool(bottom),
                "next": finite(nxt.get(uid)),
            }
            for uid, level, parent, h, bottom in zip(
                nodes["unique_id"],
                nodes["level"],
                nodes["parent"],
                nodes["hierarchy"],
                nodes["is_bottom"],
                strict=True,
            )
        ]
        return {
            "nodes": rows,
            "levels": list(art.meta.get("hierarchy_levels") or []),
            "bottom_level": art.meta.get("bottom_level", ""),
            "freq": art.meta.get("freq", ""),
            **model_ref(champ, forecast_cutoff(champ)),
            "model": art.meta.get("model", ""),
        }

    return _cached("tree", champ, build)


def node_view(champ: Any, node: str) -> dict[str, Any]:
    """One node: its ``/forecast`` answer, its children's (ordered by next quarter's mean), two years of actuals,
    the last complete quarter's forecast against its actual, and the champion's accuracy per level."""
    art = forecast_artifacts(champ)
    known = set(art.nodes["unique_id"])
    if node not in known:
        raise NotFoundError(f"node: unknown node {node!r}; pick one from the tree")
    nodes = art.nodes
    kids = nodes.loc[nodes["parent"] == node, "unique_id"].tolist()
    answers = forecast_results(champ, nodes=[node, *kids])
    own, children = answers[0].model_dump(), [a.model_dump() for a in answers[1:]]
    nxt = {
        c["node"]: next((q["mean"] for q in c["quarters"] if q["quarter"] == "next"), 0.0) for c in children
    }
    children.sort(key=lambda c: -nxt[c["node"]])
    hist = art.history[art.history["unique_id"] == node]
    last = art.last_quarter[art.last_quarter["unique_id"] == node]
    return {
        "forecast": own,
        "label": node_label(node),
        "children": [{**c, "label": node_label(c["node"])} for c in children],
        "history": [
            {"ds": f"{d:%Y-%m-%d}", "y": float(y)} for d, y in zip(hist["ds"], hist["y"], strict=True)
        ],
        "last_quarter": None
        if last.empty
        else {
            "period": str(last["period"].iloc[0]),
            "cutoff": f"{pd.Timestamp(last['cutoff'].iloc[0]):%Y-%m-%d}",
            "actual": float(last["actual"].iloc[0]),
            "forecast": float(last["forecast"].iloc[0]),
        },
        "accuracy": list(art.meta.get("accuracy") or []),
    }


def entity_nodes(dataset: Any, entities: pd.DataFrame, id_col: str) -> pd.Series | None:
    """Each entity's node path in the forecast's first hierarchy (``id -> bottom node id`` of that hierarchy), or
    None when the entities do not carry it.

    Customers (``customer_id`` in the sales facts) belong where most of their revenue was sold; leads (or
    customers without orders) through a column whose values are the first hierarchy's bottom level (a lead's
    ``owner`` among the reps).
    """
    from features.load import sales_facts
    from features.series import node_paths

    levels = list(dataset.spec.hierarchies[0]) if dataset.spec.hierarchies else []
    if not levels:
        return None
    facts = sales_facts(dataset)
    facts = facts.assign(_path=node_paths(facts, levels, len(levels)))
    if id_col == "customer_id" and "customer_id" in facts:
        by_rev = facts.groupby(["customer_id", "_path"], observed=True)["amount"].sum().reset_index()
        top = by_rev.sort_values("amount", ascending=False).drop_duplicates("customer_id")
        return entities[id_col].map(top.set_index("customer_id")["_path"])
    bottom = facts.drop_duplicates(levels[-1])
    of_bottom = pd.Series(bottom["_path"].to_numpy(), index=bottom[levels[-1]].astype(str))
    for col in entities.columns:
        if col == id_col:
            continue
        values = entities[col].dropna().astype(str)
        if len(values) and values.isin(of_bottom.index).mean() >= 0.95:
            return entities[col].astype(str).map(of_bottom)
    return None


def node_sets(art: Any, bottom_ids: pd.Series) -> pd.Series:
    """Per entity, the set of forecast nodes its path runs through (total and every level above it)."""
    parent = art.nodes.set_index("unique_id")["parent"].to_dict()
    memo: dict[str, frozenset[str]] = {}

    def up(uid: str) -> frozenset[str]:
        if uid not in memo:
            p = parent.get(uid)
            memo[uid] = frozenset({uid}) | (up(p) if isinstance(p, str) else frozenset())
        return memo[uid]

    return bottom_ids.map(lambda u: up(u) if isinstance(u, str) and u in parent else frozenset())


def _churn_table(churn: Any, forecast: Any | None) -> pd.DataFrame:
    def build() -> pd.DataFrame:
        bundle = churn.model
        scored = bundle["scored"]
        if scored is None:
            return pd.DataFrame(columns=["customer_id", "probability", "band", "value", "expected_value"])
        ids = [None] * len(scored[sc.PROBABILITY])
        for cid, row in bundle["positions"].items():
            ids[row] = cid
        table = pd.DataFrame(
            {
                "customer_id": ids,
                "probability": scored[sc.PROBABILITY].astype(float),
                "band": [str(b) for b in scored[sc.BAND]],
                "value": scored[sc.VALUE].astype(float),
                "expected_value": scored[sc.EXPECTED_VALUE].astype(float),
                "row": np.arange(len(ids)),
            }
        )
        table["nodes"] = [frozenset()] * len(table)
        if forecast is not None and str(forecast.meta.get("dataset")) == str(churn.meta.get("dataset")):
            from features.load import load_dataset

            try:
                dataset = load_dataset(churn.model["loaded"].dataset)
                art = forecast_artifacts(forecast)
                paths = entity_nodes(dataset, table, "customer_id")
                if paths is not None:
                    table["nodes"] = node_sets(art, paths).to_numpy()
            except SalesmlError:  # the data set moved since training: no node filter, the ranking stands
                pass
        # Revenue at risk first; a customer without a value (no revenue) after the valued ones, by probability.
        return table.sort_values(
            ["expected_value", "probability"], ascending=False, na_position="last", kind="stable"
        ).reset_index(drop=True)

    return _cached("churn", churn, build)


def churn_rows(
    churn: Any, forecast: Any | None, *, tier: str | None = None, node: str | None = None, limit: int = 50
) -> dict[str, Any]:
    """Customers ranked by revenue at risk (``expected_value``), with tier, probability and top reasons; filtered by
    tier and, where the customers carry the forecast's hierarchy, by node."""
    table = _churn_table(churn, forecast)
    tiers = sorted(set(table["band"]), key=["high", "medium", "low"].index) if len(table) else []
    if tier and tier not in tiers:
        raise SalesmlError(f"tier: expected one of {tiers}, got {tier!r}")
    has_nodes = bool(len(table)) and any(len(n) for n in table["nodes"])
    part = table
    if tier:
        part = part[part["band"] == tier]
    if node:
        if not has_nodes:
            raise SalesmlError(
                "node: these customers do not carry the forecast's hierarchy; leave node empty"
            )
        part = part[[node in n for n in part["nodes"]]]
    top = part.head(limit)
    reasons = churn.model["scored"][sc.REASONS] if len(top) else []
    snap = churn.model["snapshot_meta"]
    cutoff = str(snap.get("cutoff") or churn.meta.get("data_cutoff") or "")
    return {
        "rows": [
            {
                "rank": i + 1,
                "customer_id": r.customer_id,
                "probability": float(r.probability),
                "band": r.band,
                "value": finite(r.value),
                "expected_value": finite(r.expected_value),
                "reasons": [
                    {k: (finite(v) if k == "contribution" else v) for k, v in dict(x).items()}
                    for x in reasons[int(r.row)]
                ],
            }
            for i, r in enumerate(top.itertuples(index=False))
        ],
        "matching": int(len(part)),
        "customers": int(len(table)),
        "at_risk_total": finite(part["expected_value"].sum(min_count=1)),
        "tiers": tiers,
        "by_node": has_nodes,
        "horizon_days": int(snap.get("horizon_days") or 0),
        **model_ref(churn, cutoff),
    }


def lead_table(leads: Any) -> tuple[pd.DataFrame, str]:
    def build() -> tuple[pd.DataFrame, str]:
        from training.leads import score_leads

        bundle = leads.model
        return score_leads(bundle["context"].dataset, bundle["loaded"].model, version=leads.version)

    return _cached("leads", leads, build)


GRADES = ("A", "B", "C", "D")


def lead_summary(leads: Any, *, top: int = 20) -> dict[str, Any]:
    """Open leads (every lead where none is open) by grade: count, value and expected value; the top leads by
    expected value (by probability where leads carry no value) with their factors."""
    table, what = lead_table(leads)
    grades = []
    for grade in GRADES:
        part = table[table[sc.BAND] == grade]
        grades.append(
            {
                "grade": grade,
                "count": int(len(part)),
                "value": finite(part[sc.VALUE].sum(min_count=1)),
                "expected_value": finite(part[sc.EXPECTED_VALUE].sum(min_count=1)),
                "mean_probability": finite(part[sc.PROBABILITY].mean()) if len(part) else None,
            }
        )
    has_value = bool(table[sc.VALUE].notna().any())
    order = [sc.EXPECTED_VALUE, sc.PROBABILITY] if has_value else [sc.PROBABILITY]
    best = table.sort_values(order, ascending=False, na_position="last", kind="stable").head(top)
    as_of = table[sc.AS_OF].max() if len(table) else None
    return {
        "what": what,
        "grades": grades,
        "has_value": has_value,
        "total": int(len(table)),
        "top": [
            {
                "lead_id": str(r[LEAD_ID]),
                "probability": float(r[sc.PROBABILITY]),
                "band": str(r[sc.BAND]),
                "value": finite(r[sc.VALUE]),
                "expected_value": finite(r[sc.EXPECTED_VALUE]),
                "factors": sc.reasons_from_json(r[sc.REASONS]),
            }
            for _, r in best.iterrows()
        ],
        **model_ref(leads, date_text(as_of)),
    }


def model_rows(service: Any) -> dict[str, Any]:
    """The served champions (as ``GET /models`` gives them) and each one's promotion history from the registry."""
    from training import registry

    champions = service.models_info()
    history: dict[str, Any] = {}
    for champ in champions:
        try:
            history[champ["name"]] = [
                {k: str(v) for k, v in record.items()} for record in registry.history(champ["name"])
            ][-20:]
        except Exception as exc:  # noqa: BLE001 - an unreachable registry is shown, not raised
            history[champ["name"]] = {"error": f"the registry did not answer: {type(exc).__name__}"}
    problems = dict(service.store.snapshot.problems)
    return {"champions": champions, "history": history, "missing": problems}
