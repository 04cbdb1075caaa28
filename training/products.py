"""The one contract of the three products, which the CLI, the SQL write-back, the notebooks and the service call.

============== ================ =========== ================= =================================================
product        registered as    key         bands             gate (same evaluation data, within 0.002)
============== ================ =========== ================= =================================================
sales_forecast sales_forecast.D (node id)   (none)            wape_total, wape_bottom: lower is better
churn_risk     churn_risk.D     customer_id high/medium/low   roc_auc higher, brier lower
lead_score     lead_score.D     lead_id     A/B/C/D           roc_auc higher, brier lower
============== ================ =========== ================= =================================================

Each product has one registered model per data set ``D`` (:func:`training.registry.model_name`), so gates,
history and champions never mix data sets. For every product:

* ``train(dataset, **options)`` -> a training (not logged), ``register(training, promote=...)`` ->
  ``(version, gate decision or None)``: one MLflow run, the version tagged, its card logged, the gate applied;
* :func:`load_model` -> a :class:`LoadedModel` (the model, its registered name, version, data set and tags);
* ``score_rows(loaded, rows)`` -> the published frame (:mod:`training.score_columns` for churn and leads; the
  per-period forecast of the nodes asked for sales).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from features.errors import SalesmlError
from features.lead_records import NewLeadContext
from features.spec import CUSTOMER_ID, LEAD_ID
from training import churn, leads, registry
from training.forecast import train as forecast_train

__all__ = ["PRODUCTS", "LoadedModel", "Product", "load_model", "product"]


@dataclass(frozen=True)
class LoadedModel:
    """A registered version loaded for use."""

    product: str
    name: str  # the registered name, <product>.<data set>
    version: str
    dataset: str
    model: Any  # ScoringModel (churn, leads) or ForecastArtifacts (sales)
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Product:
    """What each product is and the functions every caller uses."""

    name: str  # the registry's product name (churn_risk, ...)
    command: str  # its `salesml train` / `salesml score` command
    key: str | None
    bands: tuple[str, ...]
    train: Callable[..., Any]
    register: Callable[..., tuple[str, registry.GateDecision | None]]
    load: Callable[[str], Any]  # a model URI (models:/..., runs:/...) or a local model folder -> the model
    score_rows: Callable[..., pd.DataFrame]

    @property
    def gate(self) -> dict[str, str]:
        return dict(registry.GATES[self.name])

    def registered_name(self, dataset: str) -> str:
        return registry.model_name(self.name, dataset)


def _load_scoring(uri: str) -> Any:
    from training.classifier import load_scoring_model

    return load_scoring_model(uri)


def _load_forecast(uri: str) -> Any:
    import mlflow.pyfunc

    from training.forecast.serve_api import load_forecast

    return load_forecast(mlflow.pyfunc.load_model(uri))


def _register_sales(training: Any, *, promote: bool = False) -> tuple[str, registry.GateDecision | None]:
    result = forecast_train.log_sales_training(training, promote=promote)
    return result.version, result.decision


def _score_churn_rows(loaded: LoadedModel, rows: pd.DataFrame, **options: Any) -> pd.DataFrame:
    """Churn rows of feature values (canonical names), e.g. ``options["rank_reference"]`` from the snapshot."""
    return churn.score_churn_rows(
        rows,
        loaded.model,
        dataset=loaded.dataset,
        version=loaded.version,
        horizon_days=int(loaded.params.get("horizon_days") or 0),
        **options,
    )


def _score_lead_rows(
    loaded: LoadedModel, rows: Sequence[dict[str, Any]], *, context: NewLeadContext
) -> pd.DataFrame:
    """Raw lead records (canonical names) as of the end of the data set the model was trained on; ``context``:
    :func:`features.lead_records.new_lead_context` of it, built once per loaded model."""
    return leads.score_lead_records(rows, context, loaded.model, version=loaded.version)


def _score_sales_rows(loaded: LoadedModel, rows: Sequence[str] | None = None, **options: Any) -> pd.DataFrame:
    """The per-period forecast of node ids ``rows`` (or ``options["level"]``)."""
    from training.forecast.serve_api import forecast_nodes

    return forecast_nodes(loaded.model, nodes=None if rows is None else list(rows), **options)


PRODUCTS: dict[str, Product] = {
    "sales_forecast": Product(
        "sales_forecast",
        "sales",
        None,
        (),
        forecast_train.train_forecast,
        _register_sales,
        _load_forecast,
        _score_sales_rows,
    ),
    "churn_risk": Product(
        "churn_risk",
        "churn",
        CUSTOMER_ID,
        churn.TIERS,
        churn.train_churn,
        churn.log_churn_training,
        _load_scoring,
        _score_churn_rows,
    ),
    "lead_score": Product(
        "lead_score",
        "leads",
        LEAD_ID,
        leads.GRADES,
        leads.train_leads,
        leads.log_lead_training,
        _load_scoring,
        _score_lead_rows,
    ),
}
_BY_COMMAND = {p.command: p for p in PRODUCTS.values()}


def product(name: str) -> Product:
    """A product by its registry name (``churn_risk``), its command (``churn``) or a registered name
    (``churn_risk.cdnow``)."""
    found = PRODUCTS.get(name) or _BY_COMMAND.get(name) or PRODUCTS.get(name.partition(".")[0])
    if found is None:
        raise SalesmlError(
            f"unknown product {name!r}; expected one of {sorted(PRODUCTS)} (or {sorted(_BY_COMMAND)})"
        )
    return found


def load_model(
    name: str,
    dataset: str,
    *,
    alias: str = registry.CHAMPION,
    version: str | None = None,
    newest_without_alias: bool = False,
) -> LoadedModel:
    """The version of product ``name``'s model for ``dataset`` (a spec's name): ``version``, else the one carrying
    ``alias``; with ``newest_without_alias``, the newest version when no version carries it.

    Raises:
        SalesmlError: no such version (saying how to make one), or a store from before per-data-set models.
    """
    from mlflow import MlflowClient

    prod = product(name)
    registry.connect()
    client = MlflowClient()
    try:
        mv = registry.resolve_version(prod.name, dataset, version=version, alias=alias)
    except SalesmlError:
        newest = (
            _newest(client, prod.registered_name(dataset)) if newest_without_alias and not version else None
        )
        if newest is None:
            raise
        mv = newest
    params = dict(client.get_run(mv.run_id).data.params) if mv.run_id else {}  # type: ignore[attr-defined]
    return LoadedModel(
        product=prod.name,
        name=prod.registered_name(dataset),
        version=str(mv.version),  # type: ignore[attr-defined]
        dataset=dataset,
        model=prod.load(f"models:/{prod.registered_name(dataset)}/{mv.version}"),  # type: ignore[attr-defined]
        tags=dict(mv.tags or {}),  # type: ignore[attr-defined]
        params=params,
    )


def _newest(client: Any, name: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        return None
    return max(versions, key=lambda v: int(v.version)) if versions else None
