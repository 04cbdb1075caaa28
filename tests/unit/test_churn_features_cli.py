"""Bad input to ``salesml train churn`` / ``score churn``: a clear message and exit 2 (before any training); the
command runs in process (the ``salesml`` fixture)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from features.churn_snapshot import lookup_churn_features, write_churn_snapshot
from features.load import load_dataset


def _orders(folder: Path, *, start: str = "2023-01-01", days: int = 500) -> Path:
    rng = np.random.default_rng(0)
    n = 600
    frame = pd.DataFrame(
        {
            "cust": rng.choice([f"K{i:03d}" for i in range(60)], n),
            "day": (pd.Timestamp(start) + pd.to_timedelta(rng.integers(0, days, n), unit="D")).strftime(
                "%Y-%m-%d"
            ),
            "value": rng.integers(5, 400, n).astype(float),
        }
    )
    path = folder / "orders.csv"
    frame.to_csv(path, index=False)
    return path


def _spec(folder: Path, tables: dict, **extra: object) -> Path:
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump({"name": "tiny", "tables": tables, **extra}, sort_keys=False))
    return path


def _tx_table(path: Path, columns: dict) -> dict:
    return {"orders": {"role": "transactions", "path": str(path), "columns": columns}}


def _fails(result, *needles: str) -> None:  # noqa: ANN001
    assert result.returncode == 2, result.stdout + result.stderr
    text = " ".join((result.stdout + result.stderr).split())
    for needle in needles:
        assert needle in text, text
    assert "Traceback" not in text


def test_spec_without_customer_id_is_refused(salesml, tmp_path: Path) -> None:
    spec = _spec(tmp_path, _tx_table(_orders(tmp_path), {"time": "day", "amount": "value"}))
    _fails(salesml("train", "churn", "--dataset", str(spec)), "customer_id", "does not map", "churn_label")


def test_non_positive_horizon_is_refused_in_the_spec_and_as_an_option(salesml, tmp_path: Path) -> None:
    table = _tx_table(_orders(tmp_path), {"customer_id": "cust", "time": "day", "amount": "value"})
    bad = _spec(tmp_path, table, churn_horizon_days=0)
    _fails(salesml("train", "churn", "--dataset", str(bad)), "churn_horizon_days", "positive number of days")
    good = _spec(tmp_path, table, churn_horizon_days=30)
    _fails(
        salesml("train", "churn", "--dataset", str(good), "--horizon-days", "-7"),
        "--horizon-days",
        "positive",
    )


def test_no_active_customer_at_the_last_cutoff_is_refused(salesml, tmp_path: Path) -> None:
    table = _tx_table(_orders(tmp_path), {"customer_id": "cust", "time": "day", "amount": "value"})
    spec = _spec(tmp_path, table, churn_horizon_days=30)
    _fails(
        salesml("train", "churn", "--dataset", str(spec), "--as-of", "2026-06-30"),
        "no active customer at the last cutoff 2026-06-30",
    )


@pytest.mark.parametrize(
    ("values", "needles"),
    [
        (["Yes", "No", "Maybe"], ("churn_label", "Maybe", "neither positive")),
        (["No", "No", "No"], ("churn_label", "only the class(es) [0]", "both churned (1) and stayed (0)")),
    ],
)
def test_label_column_must_hold_the_two_classes(
    salesml, tmp_path: Path, values: list[str], needles: tuple
) -> None:
    path = tmp_path / "customers.csv"
    pd.DataFrame(
        {"id": [f"A{i}" for i in range(30)], "plan": ["x", "y", "z"] * 10, "Churn": values * 10}
    ).to_csv(path, index=False)
    table = {
        "customers": {
            "role": "customers",
            "path": str(path),
            "columns": {"customer_id": "id", "plan": "plan", "churn_label": "Churn"},
            "label_values": {"positive": ["Yes"], "negative": ["No"]},
        }
    }
    _fails(salesml("train", "churn", "--dataset", str(_spec(tmp_path, table))), *needles)


def test_snapshot_round_trip_and_lookup_by_id(tmp_path: Path) -> None:
    from features.churn import build_churn_set

    table = _tx_table(_orders(tmp_path), {"customer_id": "cust", "time": "day", "amount": "value"})
    dataset = load_dataset(_spec(tmp_path, table, churn_horizon_days=30))
    churn_set = build_churn_set(dataset)
    path = write_churn_snapshot(churn_set, path=tmp_path / "snap" / "churn.parquet")
    rows, missing, meta = lookup_churn_features("tiny", ["K005", "nobody", "K001"], path=path)
    assert missing == ["nobody"]
    assert list(rows["customer_id"]) == ["K005", "K001"]
    assert meta["horizon_days"] == 30 and meta["cutoff"] == f"{churn_set.score_cutoff:%Y-%m-%d}"
    expected = churn_set.to_score().set_index("customer_id").loc[["K005", "K001"], churn_set.features]
    pd.testing.assert_frame_equal(
        rows.set_index("customer_id")[churn_set.features], expected, check_dtype=False
    )
