"""``salesml score churn --input FILE`` scores rows as the HTTP service scores customers sent with features.

For the same customers, the file's probabilities must equal those of the service's scoring call
(``PRODUCTS["churn_risk"].score_rows`` with the snapshot's rank reference, after the service's per-item check
``churn_feature_problem``) to 1e-12: transaction customers sent with their feature values (the trained store's
synthetic champion), and telco-shaped snapshot rows in the spec's source names (and, in process, canonical
names; a small telco model, one search trial on 300 customers). Bad rows are named by row, column and rule; the rest scored.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from features.inputs import churn_feature_problem
from tests.conftest import REPO, run_cli

TELCO_CSV = "telco_customer_churn/WA_Fn-UseC_-Telco-Customer-Churn.csv"


def _service_probabilities(loaded, customers: list[dict], rank_reference=None) -> pd.Series:
    """What /churn/score answers for customers sent with ``features`` (JSON), by customer id."""
    from training.products import PRODUCTS

    customers = json.loads(json.dumps(customers))  # as they arrive over HTTP
    for c in customers:
        assert churn_feature_problem(c["features"], loaded.model.features, loaded.model.numeric) is None
    frame = pd.DataFrame([{"customer_id": c["customer_id"], **c["features"]} for c in customers])
    out = PRODUCTS["churn_risk"].score_rows(loaded, frame, rank_reference=rank_reference)
    return out.set_index("customer_id")["probability"]


def _cli_scores(home: Path, spec: Path, rows: Path, out: Path) -> tuple[pd.Series, str]:
    result = run_cli(
        "score", "churn", "--dataset", str(spec), "--input", str(rows), "--out", str(out),
        env={"SALESML_HOME": str(home)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return pd.read_parquet(out).set_index("customer_id")["probability"], result.stderr


def test_transaction_customers_sent_with_features(
    trained_home: Path, small_synthetic_spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from features.churn_snapshot import read_churn_snapshot
    from training.churn import prepare_churn_snapshot
    from training.products import load_model

    monkeypatch.setenv("SALESML_HOME", str(trained_home))
    loaded = load_model("churn_risk", "synthetic")
    snapshot, _ = read_churn_snapshot("synthetic")
    # What a client knows: the raw feature values, not the ranks among all customers (filled by the scorer).
    rows = snapshot.head(8).drop(columns=["cutoff", *(c for c in snapshot if c.endswith("_rank_in_cutoff"))])
    rows = rows.astype(object)
    rows.loc[2, "recency_days"] = "soon"  # named, left out
    rows.loc[5, "recency_days"] = np.nan  # a missing value is allowed
    path = tmp_path / "customers.csv"
    rows.to_csv(path, index=False)
    got, stderr = _cli_scores(trained_home, small_synthetic_spec, path, tmp_path / "scores.parquet")
    bad = rows["customer_id"].iloc[2]
    assert f"row 3 (customer {bad!r}): column 'recency_days' must be a number, got 'soon'" in stderr
    good = rows.drop(index=2)
    sent = [
        {"customer_id": r.pop("customer_id"), "features": {k: v for k, v in r.items() if not pd.isna(v)}}
        for r in good.to_dict(orient="records")
    ]
    want = _service_probabilities(loaded, sent, prepare_churn_snapshot(snapshot, loaded.model)[1])
    assert got.index.tolist() == good["customer_id"].tolist()
    np.testing.assert_allclose(got.to_numpy(), want.loc[got.index].to_numpy(), rtol=0, atol=1e-12)


@pytest.fixture
def telco_model(shared_data: Path, fresh_home: Path) -> tuple[Path, object]:
    """A telco churn champion from 300 customers (one search trial), in a fresh store; its spec."""
    from features.load import load_dataset
    from training.churn import log_churn_training, train_churn
    from training.products import load_model

    spec = yaml.safe_load((REPO / "features" / "specs" / "telco.yaml").read_text())
    subset = fresh_home / "telco-300.csv"
    pd.read_csv(shared_data / TELCO_CSV, dtype=str, nrows=300).to_csv(subset, index=False)
    spec["tables"]["customers"]["path"] = str(subset)
    spec_path = fresh_home / "telco.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    training = train_churn(load_dataset(spec_path), n_trials=1, timeout_s=30, blend=False)
    log_churn_training(training, promote=True)
    return spec_path, load_model("churn_risk", "telco")


@pytest.mark.slow  # trains and registers a small telco model (about a minute on 2 busy cores)
def test_telco_rows_in_source_and_canonical_names(
    telco_model, shared_data: Path, fresh_home: Path, tmp_path: Path
) -> None:
    from features.load import load_dataset

    spec_path, loaded = telco_model
    raw = pd.read_csv(shared_data / TELCO_CSV, dtype=str).iloc[400:408].reset_index(drop=True)
    raw.loc[1, "tenure"] = "ten"  # named, left out
    raw.loc[4, "TotalCharges"] = " "  # blank: a missing value, as the spec reads the source
    records = tmp_path / "telco.json"  # source names, with the label column still there (ignored)
    records.write_text(json.dumps(raw.to_dict(orient="records")))
    got, stderr = _cli_scores(fresh_home, spec_path, records, tmp_path / "source.parquet")
    assert "row 2 (customer '" in stderr and "column 'tenure_months' must be a number, got 'ten'" in stderr

    # The service's view of the same customers: their canonical, typed rows as the loader reads the source.
    columns = yaml.safe_load(spec_path.read_text())["tables"]["customers"]["columns"]
    customers = load_dataset("telco").tables["customers"].set_index("customer_id")
    ids = raw["customerID"].drop(index=1).tolist()
    features = loaded.model.features
    sent = [
        {"customer_id": i, "features": {f: _plain(customers.at[i, f]) for f in features if pd.notna(customers.at[i, f])}}
        for i in ids
    ]  # fmt: skip
    want = _service_probabilities(loaded, sent)
    assert got.index.tolist() == ids
    np.testing.assert_allclose(got.to_numpy(), want.loc[ids].to_numpy(), rtol=0, atol=1e-12)

    # Canonical names, without the label: the same rows the command scored (its own two steps, in process).
    from features.churn_inputs import churn_input_rows
    from training.products import PRODUCTS

    canonical = raw.drop(index=1).drop(columns="Churn").rename(columns={s: c for c, s in columns.items()})
    rows, errors = churn_input_rows(canonical, load_dataset(spec_path), features, loaded.model.numeric)
    assert errors == {}
    again = PRODUCTS["churn_risk"].score_rows(loaded, rows).set_index("customer_id")["probability"]
    pd.testing.assert_series_equal(again, got)


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value
