"""Bad input to the forecast commands: a clear message and exit code 2 (no model is fitted), run in process."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from features.errors import SalesmlError
from tests.conftest import REPO, requires_shared
from training.cli.sales import parse_target


def _edited(tmp_path: Path, source: Path, edit) -> Path:
    spec = yaml.safe_load(source.read_text())
    edit(spec)
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _check_exit_2(result, *words: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    message = result.stderr.lower()
    for word in words:
        assert word.lower() in message, message


def test_unknown_dataset(salesml, tmp_path: Path) -> None:
    _check_exit_2(
        salesml("backtest", "sales", "--dataset", "nosuchdata", "--out", str(tmp_path)), "unknown dataset"
    )
    _check_exit_2(salesml("train", "sales", "--dataset", "nosuchdata"), "unknown dataset")
    _check_exit_2(salesml("plan", "--dataset", "nosuchdata", "--target", "100"), "unknown dataset")


def test_spec_without_time_or_amount_role(salesml, tmp_path: Path, small_synthetic_spec: Path) -> None:
    def drop_time(spec: dict) -> None:
        del spec["tables"]["orders"]["columns"]["time"]

    path = _edited(tmp_path, small_synthetic_spec, drop_time)
    _check_exit_2(salesml("backtest", "sales", "--dataset", str(path), "--out", str(tmp_path / "o")), "time")

    def drop_amount(spec: dict) -> None:
        del spec["tables"]["orders"]["columns"]["amount"]

    path = _edited(tmp_path, small_synthetic_spec, drop_amount)
    _check_exit_2(salesml("train", "sales", "--dataset", str(path)), "amount")


def test_frequency_that_does_not_parse(salesml, tmp_path: Path, small_synthetic_spec: Path) -> None:
    path = _edited(
        tmp_path, small_synthetic_spec, lambda s: s["forecast"].update(frequency="every-other-week")
    )
    _check_exit_2(
        salesml("backtest", "sales", "--dataset", str(path), "--out", str(tmp_path / "o")), "frequency"
    )


@requires_shared()
def test_hierarchy_level_missing_from_data(salesml, tmp_path: Path) -> None:
    path = _edited(
        tmp_path, REPO / "features" / "specs" / "crm.yaml", lambda s: s["hierarchies"].append(["outcome"])
    )
    _check_exit_2(
        salesml("backtest", "sales", "--dataset", str(path), "--out", str(tmp_path / "o")), "outcome"
    )


@pytest.mark.parametrize("target", ["-5", "0", "abc", "nan", "inf"])
def test_target_must_be_positive(target: str) -> None:
    with pytest.raises(SalesmlError, match="positive number"):
        parse_target(target)


def test_plan_bad_target_exits_2(salesml) -> None:
    _check_exit_2(
        salesml("plan", "--dataset", "crm", "--target", "-1000", "--node", "total"), "positive number"
    )
    _check_exit_2(salesml("plan", "--dataset", "crm", "--target", "lots"), "positive number")


def test_parse_target_accepts_separators() -> None:
    assert parse_target("1,500,000") == 1_500_000
    assert parse_target("2.5e6") == 2_500_000
