"""The salesml HTTP service: one BentoML service over the MLflow champions.

Start it with ``salesml serve`` (a thin wrapper over ``bentoml serve serving.service:SalesML``). At start-up it
resolves ``models:/<product>.<data set>@champion`` for sales_forecast, churn_risk and lead_score, each for the
data set it is told to serve (see :mod:`serving.champions`), serves whichever exist and says which are missing.
Requests are validated at the edge (pydantic); per-item problems become error entries, never a failed batch;
nothing a client sends produces a 5xx. No feature logic lives here: input checks are :mod:`features.inputs`;
requests are mapped to the product contract's ``score_rows`` (:mod:`training.products`; churn rows are the
materialized snapshot written by ``features/`` or feature values sent, lead records are featurised in
``features/``) and the results, in the names of :mod:`training.score_columns`, to the schemas; forecasts are read
from the trained artifacts through ``training.forecast.serve_api``. Every answer says which data set, model and
version made it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import bentoml
from pydantic import BaseModel, Field

from features.settings import env_positive_int  # the decorator below reads the environment at import
from serving import timeout
from serving.answers import finite, model_ref
from serving.batcher import MicroBatcher
from serving.edge import ClientErrorLogFilter, EdgeMiddleware
from serving.forecast_answers import forecast_results, plan_response
from serving.page import PREFIX as PAGE_PREFIX
from serving.page import page_app
from serving.schemas import (
    ChurnResult,
    ChurnScoreRequest,
    CustomerItem,
    EmptyRequest,
    ForecastNode,
    ForecastRequest,
    ItemError,
    LeadItem,
    LeadResult,
    LeadScoreRequest,
    PlanRequest,
    PlanResponse,
    max_batch,
)

with bentoml.importing():
    import pandas as pd

    from features.errors import NotFoundError, SalesmlError
    from features.settings import get_settings
    from serving.champions import MODEL_NAMES, Champion, ChampionStore
    from serving.leads import repeated_ids, score_lead_items
    from training import score_columns as sc
    from training.prediction_log import prediction_log_from_env

logger = logging.getLogger("salesml.service")


class BadRequest(bentoml.exceptions.InvalidArgument):
    """A 400 whose message names the field and what was expected."""


@contextmanager
def _client_errors() -> Iterator[None]:
    """A :class:`SalesmlError` as the client's error: 404 for a name the data does not hold, else 400."""
    try:
        yield
    except NotFoundError as err:
        raise bentoml.exceptions.NotFound(str(err)) from None
    except SalesmlError as err:
        raise BadRequest(str(err)) from None


class ChurnScoreResponse(BaseModel):
    results: list[ChurnResult | ItemError] = Field(description="One entry per requested customer, in order.")


class LeadScoreResponse(BaseModel):
    results: list[LeadResult | ItemError] = Field(description="One entry per requested lead, in order.")


class ForecastResponse(BaseModel):
    results: list[ForecastNode]


class ReloadResponse(BaseModel):
    ready: bool
    models: dict[str, dict[str, Any]]


# --- loaders: local model folder -> what the endpoints use ---------------------------------------------------


def _loaded(product: str, path: Path, meta: dict[str, Any]) -> Any:
    """The champion as the product contract's :class:`~training.products.LoadedModel`, from its local copy."""
    from training.products import PRODUCTS, LoadedModel

    return LoadedModel(
        product=product,
        name=str(meta.get("name", "")),
        version=str(meta.get("version", "")),
        dataset=str(meta.get("dataset", "")),
        model=PRODUCTS[product].load(str(path)),
        tags=dict(meta.get("tags", {})),
        params=dict(meta.get("run_params", {})),
    )


def _load_churn(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The scoring model and the feature snapshot (the live one, copied beside the model; the copy when gone)."""
    import shutil

    from features.churn_snapshot import read_churn_snapshot, snapshot_path
    from training.churn import prepare_churn_snapshot
    from training.products import PRODUCTS

    loaded = _loaded("churn_risk", path, meta)
    live, copy = snapshot_path(loaded.dataset), path.parent / "churn_snapshot.parquet"
    if live.exists():
        shutil.copyfile(live, copy.with_suffix(".tmp"))
        os.replace(copy.with_suffix(".tmp"), copy)
    snapshot, snap_meta = read_churn_snapshot(loaded.dataset, path=copy if copy.exists() else live)
    snapshot, rank_reference = prepare_churn_snapshot(snapshot, loaded.model)
    # The snapshot's horizon is the one its rows were labelled and scored with.
    loaded = replace(loaded, params={**loaded.params, "horizon_days": str(_horizon(snap_meta))})
    ids = snapshot["customer_id"].tolist()
    scored = None
    if len(snapshot):
        rows = PRODUCTS["churn_risk"].score_rows(loaded, snapshot)
        scored = {col: rows[col].to_numpy() for col in rows.columns}
        scored[sc.REASONS] = [sc.reasons_from_json(t) for t in scored[sc.REASONS]]
    return {
        "loaded": loaded,
        "snapshot_meta": snap_meta,
        # Done once here, not per request: id -> row, and the scores of every snapshot customer (the model and
        # the snapshot only change together, on a reload), so a request by id is a look-up of model output.
        "positions": {cid: i for i, cid in reversed(list(enumerate(ids)))},
        "scored": scored,
        # rows sent with feature values get their within-cutoff ranks against these customers
        "rank_reference": rank_reference,
    }


def _horizon(snap_meta: dict[str, Any]) -> int:
    return int(snap_meta.get("horizon_days") or 0)


def _load_leads(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The scoring model and its data set's new-lead context: win rates, activity counts, period context and
    lookups as of the end of the data, counted here once (and again on reload, with the champion), so that a
    request only looks them up and runs the model on its own rows."""
    from features.lead_records import new_lead_context
    from features.load import load_dataset

    spec = meta.get("tags", {}).get("dataset_spec", "")
    source = spec if spec and Path(spec).exists() else meta.get("dataset", "")
    return {"loaded": _loaded("lead_score", path, meta), "context": new_lead_context(load_dataset(source))}


def _load_forecast(path: Path, meta: dict[str, Any]) -> Any:
    return _loaded("sales_forecast", path, meta)


LOADERS = {"sales_forecast": _load_forecast, "churn_risk": _load_churn, "lead_score": _load_leads}


def _check_batch(items: list[Any], field: str) -> None:
    if not items:
        raise BadRequest(f"{field}: the batch is empty; send at least one item")
    if len(items) > max_batch():
        raise BadRequest(f"{field}: {len(items)} items is above the limit of {max_batch()} per request")


def _settle_heap() -> None:
    """Collect once, then keep what is loaded (models, snapshot, libraries) out of later collections.

    The loaded models and libraries are ~370,000 tracked objects (small synthetic champions); a full (generation
    2) collection, triggered now and then by request garbage, walked all of them and stalled the worker ~230 ms
    (the p99 of the one-customer load test). Frozen, a full collection costs well under a millisecond.
    """
    gc.collect()
    gc.freeze()


timeout.install()  # before the worker builds its app: no request timer outlives its request
# The event loop and the lead-scoring thread share the GIL; at Python's default switch interval (5 ms) a request
# that arrives while the thread scores waits up to 5 ms for its turn, twice per answer (benchmarks/README.md).
sys.setswitchinterval(0.0005)


# Worker processes and request threads per worker: `salesml serve --workers N --threads M` sets these (BentoML 1.4
# reads them only from the decorator). Defaults measured on 2 cores in benchmarks/README.md.
@bentoml.asgi_app(page_app(), path=PAGE_PREFIX)  # the planner's page (serving/page)
@bentoml.service(
    name="salesml",
    traffic={"timeout": 60},
    workers=env_positive_int("SALESML_SERVE_WORKERS", 1),
    threads=env_positive_int("SALESML_SERVE_THREADS", 1),
)
class SalesML:
    """Forecasts, target plans, churn risk and lead scores from the registry's champions."""

    def __init__(self) -> None:
        logging.getLogger("bentoml._internal.server.http_app").addFilter(ClientErrorLogFilter())
        self.store = ChampionStore(LOADERS)
        self.log = prediction_log_from_env(get_settings().home)  # None when SALESML_PREDICTION_LOG=off
        self.lead_batcher = MicroBatcher(score_lead_items, max_items=max_batch(), name="lead-scoring")
        snapshot = self.store.refresh()
        for name, problem in snapshot.problems.items():
            logger.warning("model %s not served: %s", name, problem)
        for name, champ in snapshot.champions.items():
            logger.info(
                "serving %s v%s (%s%s)", name, champ.version, champ.source, ", STALE" if champ.stale else ""
            )
        _settle_heap()

    def __is_ready__(self) -> bool:
        return self.store.snapshot.ready

    def _champion(self, name: str) -> Champion:
        champ = self.store.snapshot.champions.get(name)
        if champ is None:
            reason = self.store.snapshot.problems.get(name, "not loaded")
            raise bentoml.exceptions.ServiceUnavailable(f"model {name!r} is not being served: {reason}")
        return champ

    # -- churn ------------------------------------------------------------------------------------------

    @bentoml.api(route="/churn/score", input_spec=ChurnScoreRequest)
    def churn_score(self, customers: list[CustomerItem]) -> ChurnScoreResponse:
        """Churn probability within H days, risk tier, top 3 reasons and revenue at risk, per customer.

        A customer is looked up by id in the feature snapshot at the last cutoff, or scored with the feature
        values sent in ``features`` (a feature not sent is missing, except the ``*_rank_in_cutoff`` ranks, which
        are computed against the snapshot's customers from the raw value sent). An unknown id gives an error
        entry for that item; the rest are scored.
        """
        from features.inputs import churn_feature_problem
        from training.products import PRODUCTS

        _check_batch(customers, "customers")
        champ = self._champion("churn_risk")
        bundle = champ.model
        loaded, snap_meta, positions = bundle["loaded"], bundle["snapshot_meta"], bundle["positions"]
        scoring = loaded.model
        cutoff = str(snap_meta.get("cutoff") or champ.meta.get("data_cutoff") or "")
        results: list[Any] = [None] * len(customers)
        by_id: list[int] = []  # request positions scored from the snapshot
        rows: list[int] = []  # their snapshot rows
        sent: list[int] = []  # request positions scored from the features sent
        for i, item in enumerate(customers):
            if item.features:  # None or {}: the customer's row in the snapshot
                problem = churn_feature_problem(item.features, scoring.features, scoring.numeric)
                if problem:
                    results[i] = ItemError(id=item.customer_id, error=problem)
                else:
                    sent.append(i)
            elif (row := positions.get(item.customer_id)) is not None:
                by_id.append(i)
                rows.append(row)
            else:
                results[i] = ItemError(
                    id=item.customer_id,
                    error=f"customer {item.customer_id!r} is not in the feature snapshot of {cutoff} "
                    "(unknown, or no purchase in the look-back window); send its features instead",
                )
        parts = []  # (request positions, their score columns)
        if by_id:
            scored = bundle["scored"]
            parts.append(
                (
                    by_id,
                    {k: (v[rows] if k != sc.REASONS else [v[r] for r in rows]) for k, v in scored.items()},
                )
            )
        if sent:
            frame = pd.DataFrame(
                [{"customer_id": customers[i].customer_id, **customers[i].features} for i in sent]
            )
            with _client_errors():
                out = PRODUCTS["churn_risk"].score_rows(
                    loaded, frame, rank_reference=bundle["rank_reference"]
                )
            cols = {col: out[col].to_numpy() for col in out.columns}
            cols[sc.REASONS] = [sc.reasons_from_json(t) for t in cols[sc.REASONS]]
            parts.append((sent, cols))
        common = {"horizon_days": _horizon(snap_meta), **model_ref(champ, cutoff)}
        for items, out in parts:
            prob = out[sc.PROBABILITY].astype(float).tolist()
            band = [str(t) for t in out[sc.BAND]]
            if self.log is not None:
                ids = [customers[i].customer_id for i in items]
                self.log.record("churn_risk", champ.name, champ.version, ids, prob, band)
            value = [finite(v) for v in out[sc.VALUE].tolist()]
            expected = [finite(v) for v in out[sc.EXPECTED_VALUE].tolist()]
            for j, i in enumerate(items):
                results[i] = ChurnResult(
                    customer_id=customers[i].customer_id,
                    probability=prob[j],
                    band=band[j],
                    reasons=out[sc.REASONS][j],
                    value=value[j],
                    expected_value=expected[j],
                    **common,
                )
        return ChurnScoreResponse(results=results)

    # -- leads ------------------------------------------------------------------------------------------

    @bentoml.api(route="/leads/score", input_spec=LeadScoreRequest)
    async def leads_score(self, leads: list[LeadItem]) -> LeadScoreResponse:
        """Conversion probability, grade A-D and top 3 factors per lead or deal (and expected value for deals)."""
        _check_batch(leads, "leads")
        champ = self._champion("lead_score")  # the version this request is answered with, whatever reloads
        results, good = repeated_ids(leads)
        # Checked and scored together with the leads of every request waiting at the moment (serving/batcher.py)
        scored = await self.lead_batcher([(champ, leads[i], i) for i in good])
        for i, result in zip(good, scored, strict=True):
            results[i] = result
        if self.log is not None:
            ok = [r for r in results if isinstance(r, LeadResult)]
            self.log.record(
                "lead_score",
                champ.name,
                champ.version,
                [r.lead_id for r in ok],
                [r.probability for r in ok],
                [r.band for r in ok],
            )
        return LeadScoreResponse(results=results)

    # -- forecasts --------------------------------------------------------------------------------------

    @bentoml.api(route="/forecast", input_spec=ForecastRequest)
    def forecast(self, nodes: list[str] | None = None, level: str | None = None) -> ForecastResponse:
        """Per-period mean with 80 % / 95 % bounds and current / next quarter totals, for nodes or a level."""
        if (nodes is None) == (level is None):
            raise BadRequest(
                "give exactly one of 'nodes' (a list of node ids) or 'level' (a hierarchy level name)"
            )
        if nodes is not None:
            _check_batch(nodes, "nodes")
        champ = self._champion("sales_forecast")
        with _client_errors():
            results = forecast_results(champ, nodes=nodes, level=level)
        if self.log is not None:
            order = [r.node for r in results]
            totals = {(r.node, q.quarter): q.mean for r in results for q in r.quarters}
            self.log.record(
                "sales_forecast",
                champ.name,
                champ.version,
                order,
                [totals.get((u, "next")) for u in order],
                None,
                [
                    f"current={totals[(u, 'current')]:.6g}" if (u, "current") in totals else None
                    for u in order
                ],
            )
        return ForecastResponse(results=results)

    @bentoml.api(route="/plan", input_spec=PlanRequest)
    def plan(self, node: str, target: float, quarter: str = "next") -> PlanResponse:
        """Break a quarter target for a node down to its children (proportional to their forecast)."""
        champ = self._champion("sales_forecast")
        with _client_errors():  # the quarter and the target's bounds were checked by the schema
            return plan_response(champ, node, target, quarter)

    # -- operations -------------------------------------------------------------------------------------

    @bentoml.api(route="/admin/reload", input_spec=EmptyRequest)
    async def reload(self) -> ReloadResponse:
        """Re-resolve the champions, load them beside the served ones and swap them in at once.

        The loading runs on a thread of its own, so requests go on being answered by the old versions meanwhile
        (each request keeps the version it started with). No full collection afterwards: it would pause every
        request (see ``_settle_heap``); the new models join the frozen heap, the replaced ones are freed by
        reference counting (cyclic garbage among them stays until a restart; benchmarks/README.md measures it).
        """
        snapshot = await asyncio.to_thread(self.store.refresh)
        gc.freeze()
        status = snapshot.status()
        return ReloadResponse(ready=status["ready"], models=status["models"])

    def models_info(self) -> list[dict[str, Any]]:
        snap = self.store.snapshot
        return [snap.champions[n].describe() for n in MODEL_NAMES if n in snap.champions]

    def readiness(self) -> dict[str, Any]:
        return self.store.snapshot.status()


SalesML.add_asgi_middleware(EdgeMiddleware)
