"""Spec validation: every bad key gets a message that points at it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from features.spec import SpecError, builtin_names, load_spec

GOOD = {
    "name": "mini",
    "tables": {
        "sales": {
            "role": "transactions",
            "path": "mini/sales.csv",
            "columns": {"time": "Date", "amount": "Sales", "store": "Store"},
        }
    },
    "hierarchies": [["store"]],
    "forecast": {"frequency": "W-FRI"},
}


def write(tmp_path: Path, spec: dict) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def broken(**changes) -> dict:
    spec = yaml.safe_load(yaml.safe_dump(GOOD))
    for dotted, value in changes.items():
        node = spec
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node[p]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    return spec


def test_good_spec_loads(tmp_path: Path) -> None:
    spec, _ = load_spec(write(tmp_path, GOOD))
    assert spec.tables["sales"].columns["time"] == "Date"
    assert len(spec.fingerprint()) == 16


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"tables__sales__columns": {"amount": "Sales", "store": "Store"}},
            "tables.sales: a transactions table must map the role(s) ['time']",
        ),
        ({"tables__sales__columns": {"time": "Date", "store": "Store"}}, "['amount']"),
        ({"hierarchies": [["region", "store"]]}, "hierarchies[0]: level 'region' is not a canonical column"),
        (
            {"forecast": {"frequency": "fortnightly"}},
            "forecast.frequency: frequency 'fortnightly' is not a pandas offset alias",
        ),
        ({"tables__sales__rol": "x"}, "tables.sales.rol: Extra inputs are not permitted"),
        ({"tables__sales__role": "invoices"}, "tables.sales.role: Input should be 'transactions'"),
        ({"churn_horizon_days": -5}, "churn_horizon_days: must be a positive number of days, got -5"),
        ({"tables__sales__path": None}, "give exactly one of 'path' or 'sql'"),
        (
            {"tables__sales__columns": {"time": "Date", "amount": "Date"}},
            "source column(s) ['Date'] mapped twice",
        ),
        (
            {"tables__sales__multiply": {"amount": ["quantity", "price"]}},
            "multiply: 'amount' must be a new lower_snake_case column, not a mapped one",
        ),
        (
            {
                "tables__sales__columns": {"time": "Date", "quantity": "Q"},
                "tables__sales__multiply": {"amount": ["quantity", "price"]},
            },
            "multiply: 'amount' needs two or more canonical columns of this table",
        ),
    ],
)
def test_bad_spec_names_the_key(tmp_path: Path, changes: dict, expected: str) -> None:
    with pytest.raises(SpecError) as err:
        load_spec(write(tmp_path, broken(**changes)))
    assert expected in str(err.value)


def test_leads_need_outcome_values(tmp_path: Path) -> None:
    spec = {
        "name": "l",
        "tables": {"leads": {"role": "leads", "path": "x.csv", "columns": {"lead_id": "id", "outcome": "y"}}},
    }
    with pytest.raises(SpecError, match="a leads table needs 'outcome_values'"):
        load_spec(write(tmp_path, spec))


def test_unknown_dataset_lists_the_known_ones() -> None:
    with pytest.raises(SpecError, match=r"unknown dataset 'nope': expected one of \['bank-marketing'"):
        load_spec("nope")


def test_not_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="is not valid YAML"):
        load_spec(path)


def test_every_builtin_spec_validates() -> None:
    names = builtin_names()
    assert {"walmart", "crm", "cdnow", "telco", "bank-marketing", "x-education", "synthetic"} <= set(names)
    for name in names:
        spec, _ = load_spec(name)
        assert spec.name == name
