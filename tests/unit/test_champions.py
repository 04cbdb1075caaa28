"""The service's champion store in-process, on the embedded MLflow store of a private SALESML_HOME: resolve ``@champion``, keep a local
copy, follow the alias, serve the last good copy as stale when the registry is unreachable, and keep one broken
model from taking the others down."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from features.settings import get_settings
from serving.champions import ChampionStore


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An empty MLflow store under a private SALESML_HOME; yields a function that registers a version
    whose only file is ``weights.txt`` holding ``text``, with the given metric tags."""
    import mlflow

    monkeypatch.setenv("SALESML_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the embedded SQLite store under SALESML_HOME
    from training.registry import connect

    connect()
    client = mlflow.MlflowClient()

    def register(name: str, text: str, *, champion: bool = True, **metrics: float) -> str:
        if not client.search_registered_models(f"name = '{name}'"):
            client.create_registered_model(name)
        folder = tmp_path / "staging" / f"{name}-{text}"
        folder.mkdir(parents=True)
        (folder / "weights.txt").write_text(text)
        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(folder), artifact_path="model")
        mv = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
        client.set_model_version_tag(name, mv.version, "dataset", "synthetic")
        for key, value in metrics.items():
            client.set_model_version_tag(name, mv.version, f"metric.{key}", str(value))
        if champion:
            client.set_registered_model_alias(name, "champion", mv.version)
        return str(mv.version)

    yield register
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def read_weights(folder: Path, meta: dict[str, Any]) -> str:
    return (folder / "weights.txt").read_text()


def test_champions_are_resolved_copied_and_follow_the_alias(registry) -> None:
    registry("churn_risk", "churn-v1", roc_auc=0.8)
    store = ChampionStore({"churn_risk": read_weights, "lead_score": read_weights}, settings=get_settings())
    assert not store.snapshot.ready and store.snapshot.problems["churn_risk"] == "not loaded yet"
    snap = store.refresh()
    assert snap.ready and set(snap.champions) == {"churn_risk"}
    churn = snap.champions["churn_risk"]
    assert (churn.version, churn.source, churn.stale, churn.model) == ("1", "registry", False, "churn-v1")
    assert churn.describe()["metrics"] == {"roc_auc": 0.8} and churn.describe()["dataset"] == "synthetic"
    assert "no version of 'lead_score' carries the alias 'champion'" in snap.problems["lead_score"]
    assert snap.status()["models"]["lead_score"]["state"] == "missing"
    assert snap.status()["models"]["churn_risk"] == {"state": "fresh", "version": "1", "source": "registry"}
    cache = store.cache_dir / "churn_risk"
    assert json.loads((cache / "current.json").read_text()) == {"version": "1"}
    assert (cache / "v1" / "model" / "weights.txt").read_text() == "churn-v1"

    registry("churn_risk", "churn-v2")
    registry("churn_risk", "churn-v3", champion=False)  # a challenger: not served
    again = store.refresh()
    assert again is store.snapshot and again is not snap  # swapped as a whole; the old one is unchanged
    assert (
        again.champions["churn_risk"].model == "churn-v2" and snap.champions["churn_risk"].model == "churn-v1"
    )
    assert json.loads((cache / "current.json").read_text()) == {"version": "2"}


def test_unreachable_registry_serves_the_last_good_copy_as_stale(registry, monkeypatch) -> None:
    registry("churn_risk", "churn-v1")
    store = ChampionStore({"churn_risk": read_weights, "lead_score": read_weights}, settings=get_settings())
    store.refresh()

    import mlflow

    def unreachable(self, name, alias):  # noqa: ANN001
        raise ConnectionError("registry down")

    monkeypatch.setattr(mlflow.MlflowClient, "get_model_version_by_alias", unreachable)
    snap = store.refresh()
    churn = snap.champions["churn_risk"]
    assert (churn.source, churn.stale, churn.model) == ("cache", True, "churn-v1")
    assert churn.meta["stale_reason"] == "registry unreachable: ConnectionError"
    assert snap.status()["models"]["churn_risk"]["state"] == "stale"
    assert snap.problems["lead_score"].startswith("registry unreachable and no local copy")


def test_a_model_that_fails_to_load_does_not_take_the_others_down(registry) -> None:
    registry("churn_risk", "churn-v1")
    registry("lead_score", "leads-v1")

    def broken(folder: Path, meta: dict[str, Any]) -> Any:
        raise ValueError("cannot read this model")

    store = ChampionStore({"churn_risk": read_weights, "lead_score": broken}, settings=get_settings())
    snap = store.refresh()
    assert set(snap.champions) == {"churn_risk"}
    assert snap.problems == {"lead_score": "ValueError: cannot read this model"}
