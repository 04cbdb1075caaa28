"""``salesml monitor`` on churn and lead champions trained ``--as-of`` a day: once the outcomes are known, the
customers (leads) scored then are checked against what they did (per bin and tier / grade, with counts and
intervals, ROC AUC), and the features and the score now against the training profile logged with the version."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow

AS_OF = "2025-06-30"  # the small organisation's data end 2025-11-14: 90 days after it are in the data


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, small_synthetic_spec: Path) -> tuple[int, dict, str]:
    home = tmp_path_factory.mktemp("monitor-churn-home")
    env = {"SALESML_HOME": str(home)}
    args = ("--dataset", str(small_synthetic_spec))
    for product in ("churn", "leads"):
        trained = run_cli("train", product, *args, "--as-of", AS_OF, "--trials", "2", "--promote", env=env)
        assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-3000:]
    scored = run_cli("score", "churn", *args, "--as-of", AS_OF, "--out", str(home / "then.parquet"), env=env)
    assert scored.returncode == 0, scored.stdout[-2000:] + scored.stderr[-3000:]
    out = home / "report"
    done = run_cli("monitor", *args, "--out", str(out), env=env)
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "monitor.json").read_text())
    return done.returncode, result, (out / "monitor.html").read_text(), pd.read_parquet(home / "then.parquet")


def test_outcomes_of_the_customers_scored_then_are_counted_per_bin_and_tier(report) -> None:
    _, result, html, then = report
    churn = result["sections"]["churn_risk"]
    outcomes = churn["outcomes"]
    assert outcomes["scored_at"] == AS_OF
    bins, tiers = outcomes["calibration"], outcomes["bands"]
    assert [t["band"] for t in tiers] == [
        b for b in ("high", "medium", "low") if b in {t["band"] for t in tiers}
    ]
    assert sum(b["n"] for b in bins) == sum(t["n"] for t in tiers) == outcomes["n"] > 100
    assert sum(b["events"] for b in bins) == sum(t["events"] for t in tiers) == outcomes["events"]
    for b in bins:
        assert b["ci_low"] <= b["observed_rate"] <= b["ci_high"]
        assert b["bin_low"] <= b["mean_predicted"] <= b["bin_high"]
    assert 0.6 < outcomes["roc_auc"] <= 1.0  # the synthetic drivers are learnable
    # the probabilities checked are the ones `salesml score churn --as-of` gives for that day, customer for customer
    assert outcomes["n"] == len(then)
    by_bin = then["probability"].groupby((then["probability"] * 10).astype(int).clip(upper=9))
    assert [b["n"] for b in bins] == by_bin.size().tolist()
    assert [b["mean_predicted"] for b in bins] == pytest.approx(by_bin.mean().tolist(), abs=1e-12)
    assert "calibration: observed against predicted" in html
    assert result["skipped"]["sales_forecast"].startswith("no champion")


def test_drift_is_reported_per_feature_and_for_the_score_and_the_exit_code_follows_the_alerts(report) -> None:
    code, result, _, _ = report
    drift = result["sections"]["churn_risk"]["drift"]
    features = {r["feature"] for r in drift["features"]}
    assert {"recency_days", "revenue_365d"} <= features
    assert [r["feature"] for r in drift["score"]] == ["probability"]
    assert all(r["n_reference"] > r["n_current"] > 0 for r in drift["features"])
    assert code == (1 if result["alerts"] else 0)
    flagged = [r["feature"] for r in drift["features"] if r["flagged"]]
    alerted = {a["node"] for a in result["alerts"] if a["metric"] == "churn.drift_p"}
    assert alerted <= set(flagged)  # an alert only where the drift table flags


def test_leads_open_at_the_cut_off_and_decided_since_are_checked_against_their_outcomes(report) -> None:
    _, result, html, _ = report
    leads = result["sections"]["lead_score"]
    outcomes = leads["outcomes"]
    assert outcomes["scored_at"] == AS_OF and outcomes["n"] > 0
    assert (
        sum(b["n"] for b in outcomes["bands"])
        == sum(b["n"] for b in outcomes["calibration"])
        == outcomes["n"]
    )
    assert {b["band"] for b in outcomes["bands"]} <= {"A", "B", "C", "D"}
    assert isinstance(leads["drift"], dict) and leads["drift"]["score"][0]["feature"] == "probability"
    assert "Leads and deals" in html
