"""``salesml models migrate``: copy a model store from before per-data-set models into the per-data-set names.

Before, each product had one registered model for every data set (``churn_risk`` v1 on cdnow, v2 on telco, ...).
:func:`migrate_legacy` copies every version to ``<product>.<data set>`` (by its ``dataset`` tag), in version
order, with its tags (metrics, eval key, spec, card, audit records), moves the old champion's alias to its copy,
rewrites the audit records to the new names and numbers (a ``previous`` version of another data set is kept as
``previous_legacy``), and tags the old model as migrated. The old versions stay where they are: the copies point
at them (``models:/churn_risk/7``), so nothing is downloaded or lost. Running it again does nothing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from training.registry import CHAMPION, LEGACY_NAMES, MIGRATED_TAG, model_name

__all__ = ["migrate_legacy"]


def migrate_legacy() -> list[str]:
    """Migrate every legacy model of the current store (see the module docstring); one line per thing done."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    lines: list[str] = []
    for product in LEGACY_NAMES:
        try:
            legacy = client.get_registered_model(product)
        except MlflowException:
            continue
        if legacy.tags.get(MIGRATED_TAG):
            lines.append(f"{product}: migrated before ({legacy.tags[MIGRATED_TAG]})")
            continue
        versions = sorted(client.search_model_versions(f"name='{product}'"), key=lambda v: int(v.version))
        mapping: dict[str, tuple[str, str]] = {}  # old version -> (new name, new version)
        for mv in versions:
            dataset = (mv.tags or {}).get("dataset", "")
            if not dataset:
                lines.append(f"{product} v{mv.version}: no 'dataset' tag, left where it is")
                continue
            copy = client.copy_model_version(f"models:/{product}/{mv.version}", model_name(product, dataset))
            mapping[str(mv.version)] = (copy.name, str(copy.version))
        for old, (name, version) in mapping.items():
            _rewrite_audit(client, name, version, mapping)
            client.set_model_version_tag(name, version, "migrated_from", f"{product} v{old}")
            lines.append(f"{product} v{old} -> {name} v{version}")
        champion = (legacy.aliases or {}).get(CHAMPION)
        if champion is not None and str(champion) in mapping:
            name, version = mapping[str(champion)]
            client.set_registered_model_alias(name, CHAMPION, version)
            lines.append(f"{name}: champion v{version} (was {product} v{champion})")
        for name in sorted({n for n, _ in mapping.values()}):
            if champion is None or mapping.get(str(champion), ("",))[0] != name:
                lines.append(
                    f"{name}: no champion (the old store had one champion for every data set); promote one with "
                    f"`salesml models promote {name} VERSION`"
                )
        stamp = f"{len(mapping)} version(s) on {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"
        client.set_registered_model_tag(product, MIGRATED_TAG, stamp)
    return lines or ["nothing to migrate: the store has no model from before per-data-set names"]


def _rewrite_audit(client: object, name: str, version: str, mapping: dict[str, tuple[str, str]]) -> None:
    """The copied audit records of ``name`` v``version`` in the new names and version numbers."""
    mv = client.get_model_version(name, version)  # type: ignore[attr-defined]
    for key, value in (mv.tags or {}).items():
        if not key.startswith("audit."):
            continue
        try:
            record = json.loads(value)
        except ValueError:
            continue
        legacy = f"{record.get('name', '')} v{record.get('previous', '')}"
        record.update(name=name, version=version)
        previous = str(record.get("previous") or "")
        if previous:
            target = mapping.get(previous)
            record["previous"] = target[1] if target is not None and target[0] == name else ""
            if record["previous"] == "":
                record["previous_legacy"] = legacy
        client.set_model_version_tag(name, version, key, json.dumps(record, default=str))  # type: ignore[attr-defined]
