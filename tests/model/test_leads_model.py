"""Lead scoring on real and synthetic data: what reaches the model, point-in-time deals, drivers and grades."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from features.lead_records import new_lead_context
from features.leads import DECISION_TIME, LABEL, build_lead_set
from features.load import load_dataset
from features.synthetic import LEAD_DRIVERS
from training.leads import score_lead_records, score_leads, train_leads

pytestmark = pytest.mark.slow


def _model_inputs(training) -> set[str]:
    """Every column name the fitted pipelines (LightGBM and the logistic baseline) were fitted on."""
    pipe = training.result.model.pipeline
    names = set(pipe.named_steps["prepare"].feature_names_in_)
    names |= set(pipe.named_steps["model"].booster_.feature_name())
    names |= set(training.result.baselines["logistic"]["pipeline"].named_steps["prepare"].feature_names_in_)
    return names


def test_bank_marketing_duration_never_reaches_the_model(shared_data) -> None:
    training = train_leads(load_dataset("bank-marketing"), n_trials=1, timeout_s=30)
    inputs = _model_inputs(training)
    assert "duration" not in inputs and not any("duration" in n for n in inputs)
    assert {"age", "euribor3m", "poutcome"} <= inputs  # the check looks at real inputs
    assert "duration" not in training.data.frame.columns
    assert training.lead_set.time_kind == "row_order" and training.result.slices["split"] == "time"
    # The period context (spec: period_columns) reaches the model, and a raw contact scored through the service
    # path gets it from the latest rows of the data (the same day as the last row: month and weekday match).
    assert {"log_contacts_prev1_periods", "win_logit_prev5_periods"} <= inputs
    last = load_dataset("bank-marketing").tables["contacts"].iloc[-1]
    raw = score_lead_records(
        [
            {
                "lead_id": "c-1",
                "age": 41,
                "job": "admin.",
                "month": last["month"],
                "day_of_week": last["day_of_week"],
            }
        ],
        new_lead_context(training.dataset),
        training.result.model,
        version="test",
    )
    assert raw["lead_id"].tolist() == ["c-1"] and raw["probability"].between(0, 1).all()
    # A lead's score does not depend on the rest of its batch or its order (the service re-scores item by item
    # when one lead is refused): a batch of mixed days, reversed, and each lead alone give the same scores.
    days = [("mon", "may"), ("fri", "nov"), (last["day_of_week"], last["month"]), ("mon", "may")]
    records = [
        {"lead_id": f"b-{i}", "age": 30 + 7 * i, "job": "admin.", "day_of_week": d, "month": m}
        for i, (d, m) in enumerate(days)
    ]

    context = new_lead_context(training.dataset)

    def probabilities(batch: list[dict]) -> pd.Series:
        scored = score_lead_records(batch, context, training.result.model, version="test")
        return scored.set_index("lead_id")["probability"]

    together = probabilities(records)
    pd.testing.assert_series_equal(together, probabilities(records[::-1]).loc[together.index])
    alone = pd.concat([probabilities([r]) for r in records])
    pd.testing.assert_series_equal(together, alone.loc[together.index])


def test_x_education_audit_flags_tags_and_lead_quality_and_the_model_excludes_them(shared_data) -> None:
    training = train_leads(load_dataset("x-education"), n_trials=1, timeout_s=30)
    table = training.audit.table.set_index("feature")
    assert {"tags", "lead_quality"} <= set(training.audit.flagged)
    assert table.loc["tags", "auc"] >= 0.90
    assert table.loc["lead_quality", "fill_ratio"] >= 2.0
    inputs = _model_inputs(training)
    assert not inputs & {"tags", "lead_quality"}
    assert {"time_on_website", "lead_source"} <= inputs
    assert training.result.slices["split"] == "stratified"


def _closed_before(deals: pd.DataFrame, when: pd.Timestamp, key: str, value: str) -> tuple[int, int]:
    hist = deals[(deals["outcome"] != "open") & (deals["closed_at"] < when) & (deals[key] == value)]
    return len(hist), int((hist["outcome"] == "won").sum())


def test_crm_deal_features_use_no_outcome_dated_after_the_engage_date(shared_data) -> None:
    ds = load_dataset("crm")
    base = build_lead_set(ds).frame.set_index("lead_id")
    cutoff = pd.Timestamp("2017-06-15")
    deals = ds.tables["deals"].copy()
    later = (deals["outcome"] != "open") & (deals["closed_at"] >= cutoff)
    assert later.sum() > 1000
    flipped = deals.loc[later, "outcome"].map({"won": "lost", "lost": "won"})
    deals.loc[later, "outcome"] = flipped.astype(deals["outcome"].dtype)
    deals.loc[later, "amount"] = 0.0
    ds.tables["deals"] = deals
    altered = build_lead_set(ds).frame.set_index("lead_id")
    known = base.index[base[DECISION_TIME] <= cutoff]
    assert len(known) > 2000
    features = [c for c in base.columns if c not in (LABEL,)]
    pd.testing.assert_frame_equal(base.loc[known, features], altered.loc[known, features])
    later_rows = base.index[base[DECISION_TIME] > cutoff]
    assert not base.loc[later_rows, "sales_agent_win_rate"].equals(
        altered.loc[later_rows, "sales_agent_win_rate"]
    )

    # Slow reference on a sample: counts by hand from deals closed strictly before the engage date.
    original = load_dataset("crm").tables["deals"]
    sample = base.sample(150, random_state=0)
    for lead_id, row in sample.iterrows():
        for key in ("sales_agent", "product"):
            n, _ = _closed_before(original, row[DECISION_TIME], key, row[key])
            assert row[f"{key}_closed_deals"] == n, (lead_id, key)


def test_crm_open_deals_get_scores_and_expected_values(shared_data) -> None:
    # The registry round trip (train --promote, then score with the champion) is the demo's and the
    # benchmark's job; here the fitted model is passed directly to keep the suite fast.
    ds = load_dataset("crm")
    training = train_leads(ds, n_trials=1, timeout_s=30)
    scoring, version = training.result.model, "test"
    scores, what = score_leads(ds, scoring, version=version)
    n_open = int((ds.tables["deals"]["outcome"] == "open").sum())
    assert what == "open leads" and len(scores) == n_open
    assert scores["probability"].between(0, 1).all() and set(scores["band"]) <= {"A", "B", "C", "D"}
    assert scores["expected_value"].notna().all()
    np.testing.assert_allclose(scores["expected_value"], scores["probability"] * scores["value"])
    assert (scores["model_name"] == "lead_score.crm").all() and (scores["model_version"] == version).all()
    assert all(len(json.loads(r)) == 3 for r in scores["reasons"])
    # The service path: a raw deal, scored through the same features and the champion.
    raw = score_lead_records(
        [{"lead_id": "new-1", "sales_agent": "Moses Frase", "product": "GTX Pro"}],
        new_lead_context(ds),
        scoring,
        version=version,
    )
    assert raw["lead_id"].tolist() == ["new-1"] and raw["model_version"].iloc[0] == version
    assert raw["value"].iloc[0] == 4821.0  # GTX Pro list price, from the products lookup


@pytest.fixture(scope="module")
def synthetic_training():
    # The built-in size (10,000 leads): with 4,000 the weakest driver (company_size) was not separable from
    # the no-effect columns in the factor ranking.
    return train_leads(load_dataset("synthetic"), n_trials=2, timeout_s=60)


def test_synthetic_known_drivers_rank_among_the_top_factors(synthetic_training) -> None:
    drivers = {k.split("=")[0] for k in LEAD_DRIVERS}
    drivers = {"n_meeting" if d == "meetings" else d for d in drivers}
    assert drivers == {"source", "n_meeting", "company_size", "demo_requested"}
    ranking = synthetic_training.result.importance["feature"].tolist()
    # The generator's other lead driver is the owner's skill, so owner / owner_win_rate may rank high too;
    # industry and the e-mail count have no effect at all. (company_size only matters for "large", 15 % of
    # leads, and shares its signal with the estimated value, which is drawn by size.)
    assert len(drivers & set(ranking[:4])) >= 3, ranking
    no_effect = {"industry", "n_email"}
    worst_driver = max(ranking.index(d) for d in drivers)
    assert worst_driver < min(ranking.index(f) for f in no_effect), ranking
    assert "n_onboarding_call" not in ranking  # flagged by the audit: logged after the win


def test_synthetic_grades_are_monotone_in_observed_conversion(synthetic_training) -> None:
    bands = synthetic_training.result.bands_test.set_index("band")
    rates = bands.loc[["A", "B", "C", "D"], "observed_rate"].to_numpy()
    assert (np.diff(rates) < 0).all(), bands
    assert bands["n"].sum() == synthetic_training.result.slices["rows"]["test"]
