"""Each trainer logs the card of the version it registers (``registry.tag_version`` no longer does it for them)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the session's trained store: three trainings through the CLI


@pytest.mark.parametrize("name", ["sales_forecast.synthetic", "churn_risk.synthetic", "lead_score.synthetic"])
def test_every_registered_version_carries_its_card_written_before_the_gate(
    trained_home: Path, name: str
) -> None:
    from mlflow import MlflowClient

    # both URIs: an earlier test in this process may have set a global registry URI (registry.configure)
    uri = f"sqlite:///{trained_home / 'models' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions = client.search_model_versions(f"name='{name}'")
    assert versions, f"no version of {name} in {trained_home}"
    for mv in versions:
        card = Path(client.download_artifacts(mv.run_id, f"model_card_v{mv.version}.md")).read_text()
        assert card.startswith(f"# Model card: {name} v{mv.version}\n")
        assert f"- Evaluation key: `{mv.tags['eval_key']}`" in card  # written after the version's tags
        assert "- never gated" in card  # and before the gate, as for every version so far
