"""Churn model behaviour: known drivers found and probabilities calibrated on the synthetic organisation;
cdnow (with --promote) and telco end to end through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from features.load import load_dataset
from features.spec import BUILTIN_SPEC_DIR
from features.synthetic import CHURN_DRIVERS
from tests.conftest import run_cli
from training.churn import train_churn

pytestmark = pytest.mark.slow

DRIVERS = sorted(
    {k.split("=")[0] for k in CHURN_DRIVERS}
)  # discount_pct, has_contract, segment, support_tickets
TOP_K = 10
# |mean predicted - observed churn| per decile of the test slice (the latest labelled cutoff, August). Measured:
# max 0.16-0.17, mean 0.09-0.10 (150 k lines, 2 trials). The calibration slice (April-May) churns more than the
# test month (base rate about 0.36 vs 0.30: the synthetic orders are seasonal), so calibration fitted there
# over-predicts in August; the tolerance states that drift rather than hiding it.
DECILE_TOLERANCE = 0.20
MEAN_DECILE_TOLERANCE = 0.12


@pytest.fixture(scope="module")
def synthetic_training(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    spec = yaml.safe_load((BUILTIN_SPEC_DIR / "synthetic.yaml").read_text())
    spec["generator"]["n_order_lines"] = 150_000
    path = tmp_path_factory.mktemp("churn-spec") / "synthetic-150k.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return train_churn(load_dataset(path), n_trials=2, timeout_s=60)


def test_known_churn_drivers_rank_among_the_top_factors(synthetic_training) -> None:  # noqa: ANN001
    ranking = list(synthetic_training.result.importance["feature"])
    top = ranking[:TOP_K]
    assert set(DRIVERS) <= set(top), f"drivers {DRIVERS} not all in the top {TOP_K}: {top}"
    # The model beats the recency rule on the later test slice.
    m = synthetic_training.metrics
    assert m["model"]["roc_auc"] > m["recency_rule"]["roc_auc"]


def test_calibrated_probabilities_match_observed_churn_per_decile(synthetic_training) -> None:  # noqa: ANN001
    tp = synthetic_training.result.test_predictions
    decile = pd.qcut(tp["p_model"].rank(method="first"), 10, labels=False)
    table = tp.groupby(decile).agg(
        predicted=("p_model", "mean"), observed=("label", "mean"), n=("label", "size")
    )
    gap = (table["predicted"] - table["observed"]).abs()
    assert table["n"].min() >= 30
    assert gap.max() <= DECILE_TOLERANCE, table
    assert gap.mean() <= MEAN_DECILE_TOLERANCE, table
    assert table["observed"].iloc[-1] > table["observed"].iloc[0] + 0.3  # deciles really separate risk


def test_cdnow_train_promote_and_score_end_to_end(
    shared_data: Path, tmp_path: Path, fresh_home: Path
) -> None:
    trained = run_cli("train", "churn", "--dataset", "cdnow", "--promote", "--trials", "1", "--timeout", "60")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    text = " ".join(trained.stdout.split())
    assert "registered churn_risk.cdnow v1" in text and "promoted to champion" in text
    assert (fresh_home / "data" / "snapshots" / "cdnow" / "churn.parquet").exists()

    out = tmp_path / "scores.parquet"
    scored = run_cli("score", "churn", "--dataset", "cdnow", "--out", str(out))
    assert scored.returncode == 0, scored.stdout + scored.stderr
    scores = pd.read_parquet(out)
    tx = load_dataset("cdnow").tables["purchases"]
    end = tx["time"].max()
    active = tx.loc[tx["time"] > end - pd.Timedelta(days=365), "customer_id"].nunique()
    assert len(scores) == active and scores["customer_id"].is_unique
    for col in ["probability", "band", "reasons", "value", "expected_value"]:
        assert scores[col].notna().all(), col
    assert all(len(json.loads(r)) == 3 for r in scores["reasons"])
    assert scores["probability"].between(0, 1).all()
    # Tiers are 10 / 30 / 60 % of the scored customers (not of the young calibration cohort, whose quantiles put
    # every scored cdnow customer in "low"), ordered by probability.
    shares = scores["band"].value_counts(normalize=True).reindex(["high", "medium", "low"]).fillna(0.0)
    np.testing.assert_allclose(shares.to_numpy(), [0.1, 0.3, 0.6], atol=0.03)
    by_tier = scores.groupby("band")["probability"]
    assert by_tier.min()["high"] >= by_tier.max()["medium"] >= 0
    assert by_tier.min()["medium"] >= by_tier.max()["low"]
    assert (scores["as_of"] == end).all()
    assert (scores["model_name"] == "churn_risk.cdnow").all() and (scores["model_version"] == "1").all()
    assert (scores["horizon_days"] == 180).all() and (scores["dataset"] == "cdnow").all()
    np.testing.assert_allclose(scores["expected_value"], scores["probability"] * scores["value"])


def test_telco_trains_end_to_end(shared_data: Path, fresh_home: Path) -> None:
    trained = run_cli("train", "churn", "--dataset", "telco", "--trials", "1", "--timeout", "60")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    text = " ".join(trained.stdout.split())
    assert "telco (snapshot)" in text and "registered churn_risk.telco v1" in text
