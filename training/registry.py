"""MLflow tracking and the model registry, shared by the forecast, churn and lead-score trainers.

* :func:`configure` points MLflow at ``MLFLOW_TRACKING_URI`` or the embedded SQLite store under ``models/``
  (called explicitly by commands, never at import time).
* :func:`promote_if_better` is the one promotion gate: the alias ``champion`` moves only when the challenger is
  no worse than the champion on the same evaluation data, within a stated tolerance. The decision, its numbers
  and who made it are written on the version as tags, so ``salesml models history`` can tell the story.

Evaluation data is identified by an *evaluation key* (a hash of the data spec fingerprint and the evaluation
slice, e.g. backtest cutoffs or the later time slice). Metrics are stored on each version as tags
``metric.<name>`` together with ``eval_key``; a champion evaluated on different data is not comparable and the
gate refuses (unless forced with a reason).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from features.errors import SalesmlError
from features.settings import Settings, get_settings

__all__ = [
    "CHAMPION",
    "GateDecision",
    "champion_version",
    "configure",
    "connect",
    "eval_key",
    "GATES",
    "LEGACY_NAMES",
    "MIGRATED_TAG",
    "TRAIN_COMMANDS",
    "legacy_versions",
    "gate_for",
    "history",
    "model_name",
    "resolve_version",
    "split_name",
    "promote_if_better",
    "record",
    "rollback",
    "tag_version",
    "tracking_uri",
    "version_metrics",
]

CHAMPION = "champion"
DEFAULT_TOLERANCE = 0.002  # absolute slack on each gated metric, so float noise cannot flip a decision
Direction = Literal["lower", "higher"]
# What each registered model's gate compares (the same for training-time and manual promotion).
GATES: dict[str, dict[str, Direction]] = {
    "sales_forecast": {"wape_total": "lower", "wape_bottom": "lower"},
    "churn_risk": {"roc_auc": "higher", "brier": "lower"},
    "lead_score": {"roc_auc": "higher", "brier": "lower"},
}
# The one registered model per product of stores written before models were registered per data set.
LEGACY_NAMES = tuple(GATES)
_DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def model_name(product: str, dataset: str) -> str:
    """The registered name of ``product``'s model (``churn_risk``, ...) for ``dataset`` (a spec's name).

    Raises:
        SalesmlError: an unknown product, or a data set name a registered model cannot carry.
    """
    if product not in GATES:
        raise SalesmlError(f"unknown product {product!r}; expected one of {sorted(GATES)}")
    if not _DATASET_NAME.match(dataset):
        raise SalesmlError(
            f"data set name {dataset!r} (the spec's 'name') cannot name a registered model: use letters, digits, "
            "'_', '-' and '.', starting with a letter or digit"
        )
    return f"{product}.{dataset}"


def split_name(name: str) -> tuple[str, str]:
    """``(product, data set)`` of a registered name from :func:`model_name` (data set ``""`` for a legacy name)."""
    product, _, dataset = name.partition(".")
    if product not in GATES:
        raise SalesmlError(
            f"{name!r} is not a salesml model name; expected <product>.<data set> with product one of "
            f"{sorted(GATES)} (e.g. churn_risk.cdnow)"
        )
    return product, dataset


def gate_for(name: str) -> dict[str, Direction]:
    """The gated metrics of a registered model (by its product)."""
    return GATES[split_name(name)[0]]


# Tracking / registry stores MLflow 3 provides (a URI without a scheme is a local folder).
_STORE_SCHEMES = frozenset(
    {"file", "sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks", "databricks-uc", "uc"}
)


def tracking_uri(settings: Settings | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the embedded SQLite store ``models/mlflow.db``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    settings = settings or get_settings()
    return f"sqlite:///{(settings.models_dir / 'mlflow.db').resolve()}"


def connect(settings: Settings | None = None) -> str:
    """Point this process's MLflow tracking and registry at the store; returns its URI."""
    import mlflow

    uri = tracking_uri(settings)
    scheme = uri.split("://", 1)[0].split("+", 1)[0] if "://" in uri else "file"
    if scheme not in _STORE_SCHEMES:
        raise SalesmlError(
            f"MLFLOW_TRACKING_URI {uri!r}: MLflow has no store for {scheme!r}; expected one of "
            f"{sorted(_STORE_SCHEMES)} (e.g. http://host:5000 or postgresql://user@host/db)"
        )
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise SalesmlError(
                f"cannot create the model store folder {folder} (set SALESML_HOME to a folder you can write): "
                f"{err.strerror or err}"
            ) from err
    # mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI to the environment, which every later
    # subprocess (a CLI call, a notebook kernel) would inherit even after SALESML_HOME changes: keep the
    # environment as the user set it.
    before = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    return uri


def configure(experiment: str, settings: Settings | None = None) -> str:
    """Point MLflow at the store and select (or create) ``experiment``; returns the experiment id.

    With the embedded store, artifacts go to ``models/artifacts`` rather than the working directory.
    """
    import mlflow

    settings = settings or get_settings()
    uri = connect(settings)
    existing = mlflow.get_experiment_by_name(experiment)
    if existing is not None:
        mlflow.set_experiment(experiment)
        return existing.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (settings.models_dir / "artifacts").resolve().as_uri()
    exp_id = mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment)
    return exp_id


def eval_key(*parts: object) -> str:
    """A short stable hash of what the evaluation was done on (spec fingerprint, cutoffs, slice bounds)."""
    payload = json.dumps([str(p) for p in parts], sort_keys=True).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


def champion_version(name: str) -> str | None:
    """The version carrying the alias ``champion``, or None."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return str(MlflowClient().get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def version_metrics(name: str, version: str) -> tuple[str | None, dict[str, float]]:
    """The evaluation key and the ``metric.*`` tags written on a version when it was registered."""
    from mlflow import MlflowClient

    tags = MlflowClient().get_model_version(name, version).tags
    metrics = {k.removeprefix("metric."): float(v) for k, v in tags.items() if k.startswith("metric.")}
    return tags.get("eval_key"), metrics


def tag_version(name: str, version: str, eval_id: str, metrics: dict[str, float], **extra: str) -> None:
    """Record on a new version what it was evaluated on and how it scored (the gate reads these).

    The trainer then logs the version's card (:func:`training.cards.log_card`), before the gate.
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    client.set_model_version_tag(name, version, "eval_key", eval_id)
    for key, value in metrics.items():
        client.set_model_version_tag(name, version, f"metric.{key}", repr(float(value)))
    for key, value in extra.items():
        client.set_model_version_tag(name, version, key, str(value))


@dataclass
class GateDecision:
    name: str
    version: str
    promoted: bool
    reason: str
    previous: str | None
    deltas: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        verb = "promoted to champion" if self.promoted else "NOT promoted"
        return f"{self.name} v{self.version} {verb}: {self.reason}"


def _compare(
    challenger: dict[str, float],
    champion: dict[str, float],
    directions: dict[str, Direction],
    tolerance: float,
) -> tuple[list[str], dict[str, float]]:
    worse, deltas = [], {}
    for metric, direction in directions.items():
        if metric not in challenger or metric not in champion:
            raise SalesmlError(f"gate metric {metric!r} missing (challenger has {sorted(challenger)})")
        delta = challenger[metric] - champion[metric]
        deltas[metric] = delta
        if (direction == "lower" and delta > tolerance) or (direction == "higher" and -delta > tolerance):
            worse.append(
                f"{metric} {challenger[metric]:.4f} vs champion {champion[metric]:.4f} ({direction} is better)"
            )
    return worse, deltas


def _who(by: str | None) -> str:
    return by or os.environ.get("USER") or getpass.getuser()


def record(name: str, version: str, action: str, **fields: object) -> dict[str, object]:
    """Append an audit record (a version tag ``audit.<utc timestamp>``) and return it."""
    from mlflow import MlflowClient

    at = datetime.now(UTC)
    entry = {
        "at": at.isoformat(timespec="microseconds"),
        "action": action,
        "name": name,
        "version": str(version),
        **fields,
    }
    MlflowClient().set_model_version_tag(
        name, str(version), f"audit.{at:%Y%m%dT%H%M%S.%f}", json.dumps(entry, default=str)
    )
    return entry


def history(name: str) -> list[dict[str, object]]:
    """Every audit record of every version of ``name``, oldest first."""
    from mlflow import MlflowClient

    records = []
    for mv in MlflowClient().search_model_versions(f"name='{name}'"):
        for key, value in (mv.tags or {}).items():
            if key.startswith("audit."):
                try:
                    records.append(json.loads(value))
                except ValueError:
                    continue
    return sorted(records, key=lambda r: str(r["at"]))


def _fingerprint(name: str, version: str) -> str | None:
    from mlflow import MlflowClient

    return (MlflowClient().get_model_version(name, version).tags or {}).get("spec_fingerprint")


def promote_if_better(
    name: str,
    version: str,
    *,
    directions: dict[str, Direction] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    force: bool = False,
    reason: str | None = None,
    by: str | None = None,
) -> GateDecision:
    """Move ``champion`` to ``version`` if it is no worse than the current champion on every gated metric.

    Both versions must carry ``eval_key`` and ``metric.*`` tags (see :func:`tag_version`); a champion evaluated
    on other data (another eval key or data spec fingerprint) is not comparable and the gate refuses. With
    ``force`` the gate is skipped, but a ``reason`` is required. Every decision, refusals included, is written
    as an audit record on the challenger (see :func:`history`).
    """
    from mlflow import MlflowClient

    if force and not (reason and reason.strip()):
        raise SalesmlError("--force needs --reason TEXT: say why the gate is overridden")
    directions = directions or gate_for(name)
    client = MlflowClient()
    version = str(version)
    try:
        client.get_model_version(name, version)
    except Exception as err:
        raise SalesmlError(f"model {name!r} has no version {version!r}") from err
    previous = champion_version(name)
    key, metrics = version_metrics(name, version)
    deltas: dict[str, float] = {}
    if previous == version:
        return GateDecision(name, version, False, "already the champion", previous)
    if previous is None:
        promoted, why = True, "no champion yet"
    else:
        champ_key, champ_metrics = version_metrics(name, previous)
        same_spec = _fingerprint(name, version) == _fingerprint(name, previous)
        if champ_key == key:
            worse, deltas = _compare(metrics, champ_metrics, directions, tolerance)
        if force:
            promoted, why = True, f"forced: {reason}"
        elif not same_spec:
            promoted = False
            why = (
                f"v{version} was trained on a different data spec (fingerprint {_fingerprint(name, version)} vs "
                f"champion v{previous} {_fingerprint(name, previous)}); use --force with a reason"
            )
        elif champ_key != key:
            promoted = False
            why = (
                f"champion v{previous} was evaluated on different data (eval_key {champ_key} vs {key}); "
                "retrain both on the same data or use --force with a reason"
            )
        else:
            promoted = not worse
            why = (
                "no worse than champion v" + previous
                if promoted
                else "worse than champion: " + "; ".join(worse)
            )
    action = ("force" if force else "promote") if promoted else "refuse"
    if reason and not force:
        why = f"{why} (note: {reason})"
    record(
        name,
        version,
        action,
        previous=previous or "",
        by=_who(by),
        reason=why,
        tolerance=tolerance,
        deltas={k: round(v, 6) for k, v in deltas.items()},
        metrics=metrics,
    )
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    return GateDecision(name, version, promoted, why, previous, deltas)


def rollback(name: str, *, by: str | None = None, reason: str | None = None) -> GateDecision:
    """Move ``champion`` back to the version it replaced when the current champion was promoted."""
    from mlflow import MlflowClient

    current = champion_version(name)
    if current is None:
        raise SalesmlError(f"model {name!r} has no champion to roll back")
    moves = [r for r in history(name) if r["version"] == current and r["action"] in ("promote", "force")]
    target = str(moves[-1].get("previous", "")) if moves else ""
    if not target:
        raise SalesmlError(
            f"{name} v{current} replaced no earlier champion: there is nothing to roll back to"
        )
    why = reason or f"rollback from v{current}"
    MlflowClient().set_registered_model_alias(name, CHAMPION, target)
    record(name, target, "rollback", previous=current, by=_who(by), reason=why, deltas={}, metrics={})
    return GateDecision(name, target, True, why, current)


# Tagged on a pre-migration model once :mod:`training.registry_migrate` has copied it.
MIGRATED_TAG = "salesml.migrated_to_per_dataset"
# The ``salesml train`` command of each product, for the hints in errors.
TRAIN_COMMANDS = {"sales_forecast": "sales", "churn_risk": "churn", "lead_score": "leads"}


def legacy_versions(product: str, dataset: str) -> list[str]:
    """Versions of the pre-migration model ``product`` trained on ``dataset`` and not migrated yet."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        if client.get_registered_model(product).tags.get(MIGRATED_TAG):
            return []
        versions = client.search_model_versions(f"name='{product}'")
    except MlflowException:
        return []
    return sorted((str(v.version) for v in versions if v.tags.get("dataset") == dataset), key=int)


def resolve_version(
    product: str, dataset: str, *, version: str | None = None, alias: str = CHAMPION
) -> object:
    """The registered version of ``product``'s model for ``dataset``: ``version``, else the one carrying ``alias``.

    Raises:
        SalesmlError: no such version or alias (with the command that makes one), or a store from before models
            were registered per data set that still holds this data set's versions (``salesml models migrate``).
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    name = model_name(product, dataset)
    client = MlflowClient()
    try:
        return (
            client.get_model_version(name, str(version))
            if version
            else client.get_model_version_by_alias(name, alias)
        )
    except MlflowException:
        pass
    which = f"version {version}" if version else f"version with the alias {alias!r}"
    old = legacy_versions(product, dataset)
    if old:
        raise SalesmlError(
            f"{name} has no {which}, but this model store is from before models were registered per data set: "
            f"{product!r} holds {dataset!r}'s versions {', '.join(old)}. Run `salesml models migrate` once (it "
            f"copies them to {name}, champion and history included)"
        )
    hint = f"salesml train {TRAIN_COMMANDS[product]} --dataset {dataset} --promote"
    raise SalesmlError(f"{name} has no {which}; run `{hint}` first")
