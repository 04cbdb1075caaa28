"""The synthetic organisation is deterministic for a seed and records its known drivers."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from features.load import load_dataset, sales_facts
from features.spec import GeneratorSpec
from features.synthetic import CHURN_DRIVERS, LEAD_DRIVERS, generate


def test_same_seed_same_data_other_seed_other_data() -> None:
    a = generate(GeneratorSpec(name="synthetic", seed=3, n_order_lines=5_000))
    b = generate(GeneratorSpec(name="synthetic", seed=3, n_order_lines=5_000))
    c = generate(GeneratorSpec(name="synthetic", seed=4, n_order_lines=5_000))
    for name in ("orders", "customers", "leads", "activities", "calendar", "truth_customers"):
        pd.testing.assert_frame_equal(a[name], b[name])
    assert not a["orders"]["amount"].equals(c["orders"]["amount"])
    assert a["truth"] == b["truth"]


def test_size_parameter_is_respected() -> None:
    out = generate(GeneratorSpec(name="synthetic", seed=1, n_order_lines=20_000))
    assert 17_000 < len(out["orders"]) < 23_000


def test_loaded_through_the_spec_with_truth_beside_it(small_synthetic_spec: Path) -> None:
    ds = load_dataset(small_synthetic_spec)
    truth = json.loads((Path(ds.meta["truth_dir"]) / "truth.json").read_text())
    assert truth["churn"]["log_hazard_effects"] == CHURN_DRIVERS
    assert truth["leads"]["log_odds_effects"] == LEAD_DRIVERS
    assert (Path(ds.meta["truth_dir"]) / "truth_customers.parquet").exists()
    facts = sales_facts(ds)
    assert {"region", "manager", "rep", "series", "product_id"} <= set(facts.columns)
    assert facts["amount"].ge(0).all()
    # Post-decision activities exist in the raw data (a trap for point-in-time features).
    acts = ds.tables["activities"]
    assert (acts["type"] == "onboarding_call").any()
    # Orders stop after a customer's true churn date.
    tc = pd.read_parquet(Path(ds.meta["truth_dir"]) / "truth_customers.parquet")
    last = facts.groupby("customer_id")["time"].max()
    churned = tc.dropna(subset=["churned_at"]).set_index("customer_id")["churned_at"]
    common = last.index.intersection(churned.index)
    assert (last[common] <= churned[common] + pd.Timedelta(days=1)).all()
