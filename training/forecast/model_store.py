"""Find the registered forecast of a data set: the champion when it was trained on it, else the newest."""

from __future__ import annotations

from features.errors import SalesmlError
from training import registry
from training.forecast.artifacts import ForecastArtifacts

__all__ = ["load_for_dataset"]


def load_for_dataset(
    dataset: str, name: str = "sales_forecast", *, given_as: str | None = None
) -> tuple[ForecastArtifacts, str]:
    """The artifacts of the version of ``name`` trained on ``dataset`` (a spec's name) and its version number;
    ``given_as``: how the user named the data set (a spec path, say), for the hint in the error."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from training.forecast.serve_api import load_forecast

    registry.configure("sales_forecast")
    client = MlflowClient()
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        versions = []
    champion = registry.champion_version(name)
    mine = [v for v in versions if v.tags.get("dataset") == dataset]
    if not mine:
        raise SalesmlError(
            f"no trained {name} for data set {dataset!r}; run: salesml train sales --dataset {given_as or dataset}"
        )
    pick = next((v for v in mine if str(v.version) == champion), None)
    pick = pick or max(mine, key=lambda v: int(v.version))
    model = mlflow.pyfunc.load_model(f"models:/{name}/{pick.version}")
    return load_forecast(model), str(pick.version)
