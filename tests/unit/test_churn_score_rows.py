"""training.churn.score_churn_rows, what the service scores churn rows with, gives what the service computed
itself before (a copy of that code below): the same probabilities, bands, reasons and expected value, in the fixed
names of training/score_columns.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.churn_columns import fill_cutoff_ranks
from training import score_columns as sc
from training.churn import prepare_churn_snapshot, score_churn_rows
from training.classifier import ClassifierData, TrainConfig, train_classifier


@pytest.fixture(scope="module")
def model_and_snapshot():
    rng = np.random.default_rng(3)
    n = 2000
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(n)],
            "cutoff": rng.choice(pd.date_range("2023-01-31", periods=8, freq="ME"), n),
            "recency_days": rng.exponential(60.0, n),
            "purchases_total": rng.poisson(4.0, n).astype(float),
            "segment": rng.choice(["a", "b", "c"], n),
        }
    )
    frame["recency_days_rank_in_cutoff"] = frame.groupby("cutoff")["recency_days"].rank(pct=True)
    logit = -1.0 + 2.0 * frame["recency_days_rank_in_cutoff"] - 0.2 * frame["purchases_total"]
    frame["label"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    data = ClassifierData(
        frame=frame,
        id_col="customer_id",
        time_col="cutoff",
        label_col="label",
        numeric=["recency_days", "purchases_total", "recency_days_rank_in_cutoff"],
        categorical=["segment"],
    )
    config = TrainConfig(n_trials=2, timeout_s=60, band_labels=("high", "medium", "low"), n_jobs=1)
    scoring = train_classifier(data, config).model
    snapshot = frame[frame["cutoff"] == frame["cutoff"].max()].drop(columns=["label", "purchases_total"])
    snapshot = snapshot.assign(revenue_12m=rng.gamma(2.0, 100.0, len(snapshot)))
    return scoring, snapshot


def _as_the_service_did(frame: pd.DataFrame, scoring, reference) -> dict[str, np.ndarray]:
    """The service's own churn computation before it called score_churn_rows."""
    frame = fill_cutoff_ranks(frame, reference)
    for col in scoring.features:
        if col not in frame.columns:
            frame[col] = np.nan
    pred = scoring.score(scoring.encode(frame))
    revenue = frame["revenue_12m"] if "revenue_12m" in frame.columns else pd.Series(np.nan, index=frame.index)
    pred["revenue_at_risk"] = pred["probability"] * pd.to_numeric(revenue, errors="coerce").to_numpy(float)
    return pred


def _compare(out: pd.DataFrame, old: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(out["probability"].to_numpy(), old["probability"])
    assert out["band"].tolist() == [str(t) for t in old["band"]]
    np.testing.assert_array_equal(out["expected_value"].to_numpy(dtype=float), old["revenue_at_risk"])
    reasons = [sc.reasons_from_json(t) for t in out["reasons"]]
    for k in (1, 2, 3):
        assert [r[k - 1]["feature"] for r in reasons] == list(old[f"reason_{k}"])
        assert [r[k - 1]["value"] for r in reasons] == list(old[f"reason_{k}_value"])
        np.testing.assert_allclose(
            [r[k - 1]["contribution"] for r in reasons], old[f"reason_{k}_contribution"], rtol=0, atol=5e-7
        )
    assert list(out.columns) == ["customer_id", *sc.SCORE_COLUMNS[:6], "horizon_days", *sc.SCORE_COLUMNS[6:]]


def test_the_snapshot_scores_as_before(model_and_snapshot) -> None:
    scoring, snapshot = model_and_snapshot
    prepared, reference = prepare_churn_snapshot(snapshot, scoring)
    assert prepared["purchases_total"].isna().all()  # a feature the snapshot lacks is missing for everyone
    assert list(reference) == ["recency_days"]
    out = score_churn_rows(prepared, scoring, dataset="synthetic", version="4", horizon_days=90)
    old = scoring.score(scoring.encode(prepared))
    old["revenue_at_risk"] = old["probability"] * prepared["revenue_12m"].to_numpy(float)
    _compare(out, old)
    assert out["customer_id"].tolist() == snapshot["customer_id"].tolist()
    assert (out["model_version"] == "4").all() and (out["horizon_days"] == 90).all()
    assert (out["model_name"] == "churn_risk.synthetic").all() and (out["dataset"] == "synthetic").all()


def test_sent_rows_score_as_before(model_and_snapshot) -> None:
    scoring, snapshot = model_and_snapshot
    _, reference = prepare_churn_snapshot(snapshot, scoring)
    sent = pd.DataFrame(
        [
            {"customer_id": "S1", "recency_days": 12.0, "purchases_total": 3, "revenue_12m": "120.5"},
            {"customer_id": "S2", "recency_days": None, "segment": "b", "revenue_12m": None},
            {"customer_id": "S3", "recency_days": "40", "recency_days_rank_in_cutoff": 0.1, "segment": "a"},
            {"customer_id": "S4", "purchases_total": True, "revenue_12m": 55},
        ]
    )
    out = score_churn_rows(
        sent, scoring, dataset="synthetic", version="4", horizon_days=90, rank_reference=reference
    )
    _compare(out, _as_the_service_did(sent, scoring, reference))
    assert out["expected_value"].notna().tolist() == [True, False, False, True]
    assert out["as_of"].isna().all()  # sent rows carry no cutoff
