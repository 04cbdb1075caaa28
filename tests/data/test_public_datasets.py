"""The public data sets load through their specs, and broken copies fail with a clear message (exit 2)."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pandas as pd
import pytest

from features.load import DataValidationError, load_dataset
from tests.conftest import copy_dataset

EXPECTED_ROWS = {
    "walmart": {"sales": 421_570, "stores": 45, "drivers": 8_190},
    "crm": {"deals": 8_800, "deals_won": 4_238, "teams": 35, "products": 7, "accounts": 85},
    "cdnow": {"purchases": 69_659},
    "telco": {"customers": 7_043},
    "bank-marketing": {"contacts": 41_188},
    "x-education": {"leads": 9_240},
}


@pytest.mark.parametrize("name", sorted(EXPECTED_ROWS))
def test_builtin_dataset_loads_with_its_published_row_counts(shared_data: Path, name: str) -> None:
    ds = load_dataset(name)
    assert {t: len(f) for t, f in ds.tables.items()} == EXPECTED_ROWS[name]


@pytest.mark.parametrize("name", ["online_retail", "online_retail_monthly"])
def test_online_retail_net_sales_are_quantity_times_price(shared_data: Path, name: str) -> None:
    # the spec keeps 50 products (44,621 lines, cancellations included) and multiplies quantity by price
    lines = load_dataset(name).tables["lines"]
    assert len(lines) == 44_621 and lines["product_id"].nunique() == 50
    assert lines["amount"].sum() == pytest.approx(1_688_855.35, abs=0.01)
    assert (lines["amount"] == lines["quantity"] * lines["unit_price"]).all()


@pytest.mark.parametrize("name", [*sorted(EXPECTED_ROWS), "synthetic-small"])
def test_data_check_exits_0_with_a_summary(
    salesml, shared_data: Path, small_synthetic_spec: Path, name: str
) -> None:
    arg = str(small_synthetic_spec) if name == "synthetic-small" else name
    result = salesml("data", "check", arg)
    assert result.returncode == 0, result.stderr
    assert "rows" in result.stdout and "table" in result.stdout
    if name == "walmart":
        assert "store_type (3) > store (45) > dept (81)" in result.stdout
    if name == "crm":
        assert "regional_office (3) > manager (6) > sales_agent (30)" in result.stdout
        assert "won=4,238" in result.stdout
    if name == "synthetic-small":
        assert "SYNTHETIC" in result.stdout


def test_quirks_are_handled_by_the_spec(shared_data: Path) -> None:
    telco = load_dataset("telco").tables["customers"]
    assert telco["total_charges"].isna().sum() == 11  # the blank " " rows
    assert telco["churn_label"].sum() == 1_869
    xed = load_dataset("x-education").tables["leads"]
    assert "unnamed_37" not in xed.columns and len(xed.columns) == 37
    assert not (xed["specialization"] == "Select").any()  # "Select" means missing
    crm = load_dataset("crm")
    assert set(crm.tables["deals"]["product"]) <= set(
        crm.tables["products"]["product"]
    )  # GTXPro quirk mapped
    cdnow = load_dataset("cdnow").tables["purchases"]
    assert cdnow["customer_id"].iloc[0] == "00001" and cdnow["customer_id"].nunique() == 23_570
    bank = load_dataset("bank-marketing").tables["contacts"]
    assert bank["lead_id"].iloc[-1] == "41188" and bank["pdays"].isna().sum() == 39_673


def _sha(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _break_csv(path: Path, mutate) -> None:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        frame = pd.read_csv(fh, dtype=str, keep_default_na=False)
    frame = mutate(frame)
    with opener(path, "wt") as fh:
        frame.to_csv(fh, index=False)


BREAKAGES = {
    "missing column": (
        "walmart_store_sales",
        "train.csv.gz",
        lambda f: f.drop(columns=["Weekly_Sales"]),
        ["table 'sales'", "column 'amount'", "'Weekly_Sales'", "required column missing"],
    ),
    "amount not a number": (
        "walmart_store_sales",
        "train.csv.gz",
        lambda f: f.assign(Weekly_Sales=f["Weekly_Sales"].where(f.index % 1000 != 7, "12,5oo")),
        ["table 'sales'", "column 'amount'", "not a number", "[422 row(s)]", "12,5oo"],
    ),
    "date does not parse": (
        "crm_sales_opportunities",
        "sales_pipeline.csv",
        lambda f: f.assign(engage_date=f["engage_date"].where(f.index != 3, "2017-13-45")),
        [
            "table 'deals'",
            "column 'created_at'",
            "'engage_date'",
            "date not parseable",
            "[1 row(s)]",
            "2017-13-45",
        ],
    ),
    "unknown outcome": (
        "crm_sales_opportunities",
        "sales_pipeline.csv",
        lambda f: f.assign(deal_stage=f["deal_stage"].where(f.index != 5, "Maybe")),
        ["table 'deals'", "column 'outcome'", "unknown outcome value(s) ['Maybe']"],
    ),
    "duplicate key": (
        "walmart_store_sales",
        "stores.csv",
        lambda f: pd.concat([f, f.iloc[[0]]]),
        ["table 'stores'", "duplicate key ['store']", "[2 row(s)]"],
    ),
}


@pytest.mark.parametrize("case", sorted(BREAKAGES))
def test_broken_copy_exits_2_names_table_and_column_and_leaves_files_alone(
    salesml, shared_data: Path, tmp_path: Path, case: str
) -> None:
    folder, file, mutate, expected = BREAKAGES[case]
    root = tmp_path / "data"
    copy = copy_dataset(shared_data / folder, root)
    _break_csv(copy / file, mutate)
    before = _sha(copy)
    name = "walmart" if folder.startswith("walmart") else "crm"
    result = salesml("data", "check", name, env={"SALESML_DATA_DIR": str(root)})
    assert result.returncode == 2, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    for piece in expected:
        assert " ".join(piece.split()) in message, f"{piece!r} not in {message!r}"
    assert "Traceback" not in result.stderr
    assert _sha(copy) == before


def test_validation_error_lists_every_problem_at_once(shared_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    copy = copy_dataset(shared_data / "crm_sales_opportunities", root)
    _break_csv(
        copy / "sales_pipeline.csv",
        lambda f: f.assign(
            close_value=f["close_value"].where(f.index != 0, "lots"),
            close_date=f["close_date"].where(f.index != 1, "yesterday"),
        ),
    )
    with pytest.raises(DataValidationError) as err:
        load_dataset("crm", root=root)
    rules = {(v.table, v.column, v.rule.split(" ")[0]) for v in err.value.violations}
    assert ("deals", "amount", "not") in rules and ("deals", "closed_at", "date") in rules
