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
    "eval_key",
    "promote_if_better",
    "tracking_uri",
    "version_metrics",
]

CHAMPION = "champion"
DEFAULT_TOLERANCE = 0.002  # absolute slack on each gated metric, so float noise cannot flip a decision
Direction = Literal["lower", "higher"]


def tracking_uri(settings: Settings | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the embedded SQLite store ``models/mlflow.db``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    settings = settings or get_settings()
    return f"sqlite:///{(settings.models_dir / 'mlflow.db').resolve()}"


def configure(experiment: str, settings: Settings | None = None) -> str:
    """Point MLflow at the store and select (or create) ``experiment``; returns the experiment id.

    With the embedded store, artifacts go to ``models/artifacts`` rather than the working directory.
    """
    import mlflow

    settings = settings or get_settings()
    uri = tracking_uri(settings)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
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
    """Record on a new version what it was evaluated on and how it scored (the gate reads these)."""
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


def promote_if_better(
    name: str,
    version: str,
    *,
    directions: dict[str, Direction],
    tolerance: float = DEFAULT_TOLERANCE,
    force: bool = False,
    reason: str | None = None,
    by: str | None = None,
) -> GateDecision:
    """Move ``champion`` to ``version`` if it is no worse than the current champion on every gated metric.

    Both versions must carry ``eval_key`` and ``metric.*`` tags (see :func:`tag_version`). With ``force`` the
    gate is skipped, but a ``reason`` is required and recorded.
    """
    from mlflow import MlflowClient

    if force and not reason:
        raise SalesmlError("--force needs --reason TEXT: say why the gate is overridden")
    client = MlflowClient()
    previous = champion_version(name)
    version = str(version)
    key, metrics = version_metrics(name, version)
    deltas: dict[str, float] = {}
    if previous == version:
        return GateDecision(name, version, False, "already the champion", previous)
    if previous is None:
        promoted, why = True, "no champion yet"
    else:
        champ_key, champ_metrics = version_metrics(name, previous)
        if force:
            promoted, why = True, f"forced: {reason}"
            if champ_key == key:
                _, deltas = _compare(metrics, champ_metrics, directions, tolerance)
        elif champ_key != key:
            promoted = False
            why = (
                f"champion v{previous} was evaluated on different data (eval_key {champ_key} vs {key}); "
                "retrain both on the same data or use --force with a reason"
            )
        else:
            worse, deltas = _compare(metrics, champ_metrics, directions, tolerance)
            promoted = not worse
            why = (
                "no worse than champion v" + previous
                if promoted
                else "worse than champion: " + "; ".join(worse)
            )
    stamp = {
        "gate.at": datetime.now(UTC).isoformat(timespec="seconds"),
        "gate.by": by or os.environ.get("USER") or getpass.getuser(),
        "gate.decision": "promoted" if promoted else "refused",
        "gate.reason": why,
        "gate.previous_champion": previous or "",
        "gate.tolerance": repr(tolerance),
        "gate.deltas": json.dumps({k: round(v, 6) for k, v in deltas.items()}),
    }
    for key_, value in stamp.items():
        client.set_model_version_tag(name, version, key_, value)
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    return GateDecision(name, version, promoted, why, previous, deltas)
