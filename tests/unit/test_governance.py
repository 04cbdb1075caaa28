"""Champion / challenger governance: the gate, forced moves with reasons, rollback, history, model cards (the
``salesml models`` commands run in process: the ``salesml`` fixture)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from features.errors import SalesmlError
from features.load import load_dataset
from tests.unit.test_classifier import FAST, data_for, panel
from training.classifier import log_and_register, train_classifier
from training.metrics import classification_metrics
from training.registry import champion_version, history, promote_if_better, rollback

# Three trainings and MLflow stores (about 2 minutes on 2 busy cores): not the inner loop.
pytestmark = pytest.mark.slow

NAME = "churn_risk.synthetic"  # the small synthetic spec is named synthetic


def _noisy(frame, share: float, seed: int = 1):
    rng = np.random.default_rng(seed)
    flip = rng.random(len(frame)) < share
    return frame.assign(label=np.where(flip, 1 - frame["label"], frame["label"]))


@pytest.fixture(scope="module")
def trained():
    """Three fitted classifiers evaluated on the same clean test slice: good, noisy (worse), good again."""
    frame = panel(2500)
    good = train_classifier(data_for(frame), FAST)
    again = train_classifier(data_for(frame.copy()), FAST)
    noisy = train_classifier(data_for(_noisy(frame, 0.45)), FAST)
    # The noisy model scored on the clean test slice (the same rows and labels the good model was judged on).
    test_rows = frame[frame["cutoff"] >= good.test_predictions["cutoff"].min()]
    assert len(test_rows) == len(good.test_predictions)
    on_clean = classification_metrics(test_rows["label"].to_numpy(), noisy.model.predict_proba(test_rows))
    worse = dataclasses.replace(good, model=noisy.model, metrics={**good.metrics, "model": on_clean})
    return good, worse, again


@pytest.fixture
def registry(fresh_home: Path, small_synthetic_spec: Path, trained):
    """v1 (good, champion), v2 (worse), v3 (as good as v1), all evaluated on the same slice."""
    dataset = load_dataset(small_synthetic_spec)
    good, worse, again = trained
    v1, d1 = log_and_register(good, NAME, dataset, promote=True)
    v2, _ = log_and_register(worse, NAME, dataset, promote=False)
    v3, _ = log_and_register(again, NAME, dataset, promote=False)
    assert d1.promoted and champion_version(NAME) == v1
    return {"dataset": dataset, "versions": (v1, v2, v3), "home": fresh_home, "trained": trained}


def test_gate_force_rollback_history_and_cards(salesml, registry) -> None:
    """One story, in order: a worse challenger refused, an equal one promoted, a forced move with a reason,
    a rollback, the history of all of it, and a card for every version."""
    v1, v2, v3 = registry["versions"]
    env = {"SALESML_HOME": str(registry["home"])}

    refused = salesml("models", "promote", NAME, v2, env=env)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "NOT promoted: worse than champion" in " ".join(refused.stdout.split())
    assert champion_version(NAME) == v1
    rec = history(NAME)[-1]
    assert (rec["action"], rec["version"], rec["previous"]) == ("refuse", v2, v1)
    assert rec["deltas"]["roc_auc"] < 0

    equal = promote_if_better(NAME, v3, by="alice")
    assert equal.promoted, equal.reason
    assert champion_version(NAME) == v3
    rec = history(NAME)[-1]
    assert (rec["action"], rec["by"], rec["previous"]) == ("promote", "alice", v1)

    no_reason = salesml("models", "promote", NAME, v2, "--force", env=env)
    assert no_reason.returncode == 2 and "--force needs --reason" in no_reason.stderr
    forced = promote_if_better(NAME, v2, force=True, reason="hotfix for region West", by="bob")
    assert forced.promoted and champion_version(NAME) == v2
    rec = history(NAME)[-1]
    assert rec["action"] == "force" and rec["by"] == "bob" and "hotfix for region West" in rec["reason"]
    assert set(rec["deltas"]) == {"roc_auc", "brier"}  # the numbers the gate would have compared

    back = salesml("models", "rollback", NAME, "--by", "carol", env=env)
    assert back.returncode == 0, back.stderr
    assert champion_version(NAME) == v3
    assert rollback(NAME, by="carol").version == v1  # v3 had replaced v1
    with pytest.raises(SalesmlError, match="nothing to roll back to"):
        rollback(NAME)

    hist = salesml("models", "history", NAME, "--json", env=env)
    assert [r["action"] for r in json.loads(hist.stdout)] == [
        "promote",
        "refuse",
        "promote",
        "force",
        "rollback",
        "rollback",
    ]

    card = salesml("models", "card", NAME, v2, env=env)
    assert card.returncode == 0, card.stderr
    assert f"# Model card: {NAME} v{v2}" in card.stdout
    for section in (
        "## Intended use",
        "## Limits",
        "## Features",
        "## Metrics against baselines",
        "## Calibration",
        "## Leakage audit",
        "## Promotion history",
    ):
        assert section in card.stdout, section
    assert "hotfix for region West" in card.stdout
    from training.cards import build_card

    for v in (v1, v3):
        assert f"# Model card: {NAME} v{v}" in build_card(NAME, v)

    listing = json.loads(salesml("models", "list", "--json", env=env).stdout)
    assert {(r["name"], r["version"]) for r in listing} >= {(NAME, v) for v in registry["versions"]}
    champ = [r for r in listing if "champion" in r["aliases"]]
    assert [c["version"] for c in champ] == [v1] and champ[0]["metrics"]["roc_auc"] > 0.5

    unknown = salesml("models", "promote", NAME, "99", env=env)
    assert unknown.returncode == 2 and "has no version '99'" in unknown.stderr


def test_a_challenger_on_another_data_spec_is_refused_unless_forced(registry) -> None:
    dataset = registry["dataset"]
    other_spec = dataclasses.replace(dataset, spec=dataset.spec.model_copy(update={"description": "changed"}))
    v4, decision = log_and_register(registry["trained"][2], NAME, other_spec, promote=True)
    assert not decision.promoted and "different data spec" in decision.reason
    forced = promote_if_better(NAME, v4, force=True, reason="spec renamed a column only")
    assert forced.promoted


def test_a_store_from_before_per_data_set_models_migrates_with_its_champion_and_history(
    salesml, fresh_home: Path, small_synthetic_spec: Path, trained
) -> None:
    """Versions registered under the old single name move to churn_risk.synthetic with the champion, and the
    gate history reads the same in the new numbers; the model cannot be loaded by the new name before."""
    from training.products import load_model
    from training.registry_migrate import migrate_legacy

    dataset = load_dataset(small_synthetic_spec)
    good, worse, again = trained
    v1, _ = log_and_register(good, "churn_risk", dataset, promote=True)
    v2, refused = log_and_register(worse, "churn_risk", dataset, promote=True)
    assert not refused.promoted and champion_version("churn_risk") == v1
    with pytest.raises(SalesmlError, match="salesml models migrate"):
        load_model("churn_risk", "synthetic")
    before = [(r["action"], r["version"], r["previous"]) for r in history("churn_risk")]

    moved = salesml("models", "migrate", env={"SALESML_HOME": str(fresh_home)})
    assert moved.returncode == 0, moved.stderr
    assert f"churn_risk v{v2} -> {NAME} v{v2}" in moved.stdout
    assert champion_version(NAME) == v1
    assert [(r["action"], r["version"], r["previous"]) for r in history(NAME)] == before
    loaded = load_model("churn_risk", "synthetic")
    assert (loaded.name, loaded.version, loaded.dataset) == (NAME, v1, "synthetic")
    rows = panel(300)
    np.testing.assert_array_equal(loaded.model.predict_proba(rows), good.model.predict_proba(rows))
    assert migrate_legacy()[0].startswith("churn_risk: migrated before")  # a second run does nothing
