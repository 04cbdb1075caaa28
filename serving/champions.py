"""Resolve the champion of each registered model and keep a local copy of it.

At start-up (and on reload) the service asks the MLflow registry for ``models:/<product>.<data set>@champion``
for each product, with the data set it was told to serve (``Settings.served_datasets``: ``salesml serve --sales
walmart --churn cdnow --leads bank-marketing``, the defaults). The version's files are copied once into a local
cache (``$SALESML_HOME/models/serving-cache/<product>.<data set>/v<version>``) together
with what the service reports about it (version, run, training date, data cut-off, headline metrics). When the
registry cannot be reached, the last good copy is served and marked ``stale``; when the registry answers that a
model has no champion, the model is reported missing (and a store from before per-data-set models is named as
such, with the command that migrates it).

No BentoML here: the store is plain Python so that it can be tested and reused.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from features.settings import Settings, get_settings

__all__ = ["MODEL_NAMES", "Champion", "ChampionStore", "Snapshot"]

MODEL_NAMES = ("sales_forecast", "churn_risk", "lead_score")
_CURRENT = "current.json"


@dataclass(frozen=True)
class Champion:
    """One served model version and what the service says about it."""

    product: str  # sales_forecast, churn_risk or lead_score
    name: str  # the registered name, <product>.<data set>
    version: str
    source: str  # "registry" or "cache"
    stale: bool
    path: Path
    meta: dict[str, Any]
    model: Any

    def describe(self) -> dict[str, Any]:
        return {
            "product": self.product,
            "name": self.name,
            "version": self.version,
            "alias": "champion",
            "source": self.source,
            "stale": self.stale,
            "dataset": self.meta.get("dataset", ""),
            "trained_at": self.meta.get("trained_at", ""),
            "as_of": self.meta.get("data_cutoff", ""),
            "metrics": self.meta.get("metrics", {}),
        }


@dataclass(frozen=True)
class Snapshot:
    """What the store holds at one moment; swapped as a whole on reload (requests keep the one they started with)."""

    champions: dict[str, Champion]
    problems: dict[str, str] = field(default_factory=dict)
    loaded_at: str = ""

    @property
    def ready(self) -> bool:
        return bool(self.champions)

    def status(self) -> dict[str, Any]:
        models = {}
        for name in MODEL_NAMES:
            if name in self.champions:
                c = self.champions[name]
                models[name] = {
                    "state": "stale" if c.stale else "fresh",
                    "name": c.name,
                    "dataset": c.meta.get("dataset", ""),
                    "version": c.version,
                    "source": c.source,
                }
            else:
                models[name] = {"state": "missing", "reason": self.problems.get(name, "not loaded")}
        return {"ready": self.ready, "loaded_at": self.loaded_at, "models": models}


def _registry_error_is_missing(err: Exception) -> bool:
    code = getattr(err, "error_code", "")
    return code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}


class ChampionStore:
    """Loads champions through ``loaders`` (product -> function of the local model folder and its meta).

    ``datasets``: product -> the data set (a name or a spec path) whose champion to serve; default the settings'
    :meth:`~features.settings.Settings.served_datasets`.
    """

    def __init__(
        self,
        loaders: dict[str, Callable[[Path, dict[str, Any]], Any]],
        settings: Settings | None = None,
        cache_dir: Path | None = None,
        datasets: dict[str, str] | None = None,
    ):
        self.settings = settings or get_settings()
        self.cache_dir = cache_dir or self.settings.models_dir / "serving-cache"
        self.loaders = loaders
        self.datasets = {
            p: _dataset_name(d) for p, d in (datasets or self.settings.served_datasets()).items()
        }
        from training.registry import tracking_uri

        self.uri = tracking_uri(self.settings)
        self._lock = threading.Lock()
        self._snapshot = Snapshot({}, {name: "not loaded yet" for name in loaders})

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def refresh(self) -> Snapshot:
        """Re-resolve every champion and swap the new set in at once."""
        from training.registry import connect

        with self._lock:
            # models:/ URIs resolve through the process-wide registry URI, so point it at ours.
            connect(self.settings)
            champions: dict[str, Champion] = {}
            problems: dict[str, str] = {}
            for name, loader in self.loaders.items():
                try:
                    champion = self._resolve(name, loader)
                except Exception as err:  # a broken model must not take the others down
                    problems[name] = f"{type(err).__name__}: {err}"[:500]
                    continue
                if isinstance(champion, str):
                    problems[name] = champion
                else:
                    champions[name] = champion
            self._snapshot = Snapshot(champions, problems, datetime.now(UTC).isoformat(timespec="seconds"))
            return self._snapshot

    # -- internals ----------------------------------------------------------------------------------------

    def _resolve(self, product: str, loader: Callable[[Path, dict[str, Any]], Any]) -> Champion | str:
        from mlflow import MlflowClient

        from training.registry import CHAMPION, legacy_versions, model_name

        if product not in self.datasets:
            return f"no data set given to serve for {product}"
        dataset = self.datasets[product]
        name = model_name(product, dataset)
        try:
            client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
            mv = client.get_model_version_by_alias(name, CHAMPION)
        except Exception as err:
            if _registry_error_is_missing(err):
                if legacy_versions(product, dataset):
                    return (
                        f"no {name} champion: this model store is from before models were registered per data "
                        f"set ({product!r} holds {dataset!r}'s versions); run `salesml models migrate` once"
                    )
                return f"no version of {name!r} carries the alias 'champion' in the registry"
            reason = f"registry unreachable: {type(err).__name__}"
            cached = self._from_cache(product, name, loader, reason=reason)
            return cached if cached is not None else f"registry unreachable and no local copy: {err}"[:500]
        version = str(mv.version)
        folder = self.cache_dir / name / f"v{version}"
        if not (folder / "salesml-meta.json").exists():
            self._download(client, name, version, mv, folder)
        meta = json.loads((folder / "salesml-meta.json").read_text())
        model = loader(folder / "model", meta)
        self._write_current(name, version)
        return Champion(product, name, version, "registry", False, folder, meta, model)

    def _download(self, client: Any, name: str, version: str, mv: Any, folder: Path) -> None:
        import mlflow

        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".v{version}-", dir=folder.parent))
        try:
            (tmp / "model").mkdir()
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}", dst_path=str(tmp / "model"), tracking_uri=self.uri
            )
            tags = dict(mv.tags or {})
            run = client.get_run(mv.run_id) if mv.run_id else None
            meta = {
                "name": name,
                "version": version,
                "run_id": mv.run_id,
                "dataset": tags.get("dataset", ""),
                "data_cutoff": tags.get("data_cutoff", ""),
                "trained_at": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(
                    timespec="seconds"
                ),
                "metrics": {
                    k.removeprefix("metric."): float(v) for k, v in tags.items() if k.startswith("metric.")
                },
                "tags": tags,
                "run_params": dict(run.data.params) if run else {},
            }
            (tmp / "salesml-meta.json").write_text(json.dumps(meta, indent=2, default=str))
            if folder.exists():
                shutil.rmtree(folder)
            os.rename(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _write_current(self, name: str, version: str) -> None:
        path = self.cache_dir / name / _CURRENT
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": version}))
        os.replace(tmp, path)

    def _from_cache(
        self, product: str, name: str, loader: Callable[[Path, dict[str, Any]], Any], reason: str
    ) -> Champion | None:
        pointer = self.cache_dir / name / _CURRENT
        if not pointer.exists():
            return None
        version = json.loads(pointer.read_text())["version"]
        folder = self.cache_dir / name / f"v{version}"
        meta = json.loads((folder / "salesml-meta.json").read_text())
        meta = {**meta, "stale_reason": reason}
        return Champion(product, name, version, "cache", True, folder, meta, loader(folder / "model", meta))


def _dataset_name(value: str) -> str:
    """A data set as the registry knows it: a spec path becomes its spec's name; a name stays as it is."""
    if value.endswith((".yaml", ".yml")):
        from features.spec import load_spec

        return load_spec(value)[0].name
    return value
