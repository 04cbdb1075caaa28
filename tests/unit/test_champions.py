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
    # Its own experiment: an experiment set earlier in this process (another test's store) is not in this one.
    mlflow.set_experiment("champions-test")
    client = mlflow.MlflowClient()

    def register(
        name: str, text: str, *, champion: bool = True, dataset: str = "synthetic", **metrics: float
    ) -> str:
        if not client.search_registered_models(f"name = '{name}'"):
            client.create_registered_model(name)
        folder = tmp_path / "staging" / f"{name}-{text}-{dataset}"
        folder.mkdir(parents=True)
        (folder / "weights.txt").write_text(text)
        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(folder), artifact_path="model")
        mv = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
        client.set_model_version_tag(name, mv.version, "dataset", dataset)
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


SYNTHETIC = {"churn_risk": "synthetic", "lead_score": "synthetic"}


def test_champions_are_resolved_copied_and_follow_the_alias(registry) -> None:
    registry("churn_risk.synthetic", "churn-v1", roc_auc=0.8)
    store = ChampionStore(
        {"churn_risk": read_weights, "lead_score": read_weights}, settings=get_settings(), datasets=SYNTHETIC
    )
    assert not store.snapshot.ready and store.snapshot.problems["churn_risk"] == "not loaded yet"
    snap = store.refresh()
    assert snap.ready and set(snap.champions) == {"churn_risk"}
    churn = snap.champions["churn_risk"]
    assert (churn.version, churn.source, churn.stale, churn.model) == ("1", "registry", False, "churn-v1")
    assert churn.describe()["metrics"] == {"roc_auc": 0.8} and churn.describe()["dataset"] == "synthetic"
    assert "no version of 'lead_score.synthetic' carries the alias 'champion'" in snap.problems["lead_score"]
    assert snap.status()["models"]["lead_score"]["state"] == "missing"
    assert snap.status()["models"]["churn_risk"] == {
        "state": "fresh",
        "name": "churn_risk.synthetic",
        "dataset": "synthetic",
        "version": "1",
        "source": "registry",
    }
    assert churn.describe()["product"] == "churn_risk" and churn.name == "churn_risk.synthetic"
    cache = store.cache_dir / "churn_risk.synthetic"
    assert json.loads((cache / "current.json").read_text()) == {"version": "1"}
    assert (cache / "v1" / "model" / "weights.txt").read_text() == "churn-v1"

    registry("churn_risk.synthetic", "churn-v2")
    registry("churn_risk.synthetic", "churn-v3", champion=False)  # a challenger: not served
    again = store.refresh()
    assert again is store.snapshot and again is not snap  # swapped as a whole; the old one is unchanged
    assert (
        again.champions["churn_risk"].model == "churn-v2" and snap.champions["churn_risk"].model == "churn-v1"
    )
    assert json.loads((cache / "current.json").read_text()) == {"version": "2"}


def test_unreachable_registry_serves_the_last_good_copy_as_stale(registry, monkeypatch) -> None:
    registry("churn_risk.synthetic", "churn-v1")
    store = ChampionStore(
        {"churn_risk": read_weights, "lead_score": read_weights}, settings=get_settings(), datasets=SYNTHETIC
    )
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
    registry("churn_risk.synthetic", "churn-v1")
    registry("lead_score.synthetic", "leads-v1")

    def broken(folder: Path, meta: dict[str, Any]) -> Any:
        raise ValueError("cannot read this model")

    store = ChampionStore(
        {"churn_risk": read_weights, "lead_score": broken}, settings=get_settings(), datasets=SYNTHETIC
    )
    snap = store.refresh()
    assert set(snap.champions) == {"churn_risk"}
    assert snap.problems == {"lead_score": "ValueError: cannot read this model"}


def test_each_data_set_keeps_its_own_champion(registry) -> None:
    registry("churn_risk.synthetic", "synthetic-v1")
    registry("churn_risk.cdnow", "cdnow-v1", dataset="cdnow")
    registry("churn_risk.cdnow", "cdnow-v2", dataset="cdnow", champion=False)
    for dataset, served in (("synthetic", "synthetic-v1"), ("cdnow", "cdnow-v1")):
        store = ChampionStore(
            {"churn_risk": read_weights}, settings=get_settings(), datasets={"churn_risk": dataset}
        )
        champ = store.refresh().champions["churn_risk"]
        assert (champ.name, champ.model, champ.describe()["dataset"]) == (
            f"churn_risk.{dataset}",
            served,
            dataset,
        )


def test_a_store_from_before_per_data_set_models_is_named_with_the_command_that_migrates_it(registry) -> None:
    registry("churn_risk", "legacy-v1")  # the old single name, tagged dataset=synthetic
    store = ChampionStore({"churn_risk": read_weights}, settings=get_settings(), datasets=SYNTHETIC)
    problem = store.refresh().problems["churn_risk"]
    assert "from before models were registered per data set" in problem
    assert "salesml models migrate" in problem

    from training.registry_migrate import migrate_legacy

    lines = migrate_legacy()
    assert "churn_risk v1 -> churn_risk.synthetic v1" in lines
    assert "churn_risk.synthetic: champion v1 (was churn_risk v1)" in lines
    champ = store.refresh().champions["churn_risk"]
    assert (champ.name, champ.version, champ.model) == ("churn_risk.synthetic", "1", "legacy-v1")
    assert migrate_legacy()[0].startswith("churn_risk: migrated before")  # a second run does nothing
