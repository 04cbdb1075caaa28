"""Bad input to lead scoring: a clear message, and exit code 2 from `salesml train leads` / `score leads`.

Each CLI call costs seconds of start-up, so the cases that fail while loading are checked through the library
(they raise SalesmlError, which the CLI turns into exit 2, as the two CLI cases here show end to end).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from features.errors import SalesmlError
from features.leads import build_lead_set
from features.load import load_dataset
from tests.conftest import run_cli


def _write(tmp_path: Path, rows: list[str], **spec_changes: object) -> Path:
    data = tmp_path / "leads.csv"
    data.write_text("\n".join(["id,y,src,call_length", *rows]) + "\n")
    table = {
        "role": "leads",
        "path": str(data),
        "columns": {"lead_id": "id", "outcome": "y", "source": "src", "duration": "call_length"},
        "types": {"duration": "numeric"},
        "outcome_values": {"won": ["1"], "lost": ["0"]},
        "post_outcome": ["duration"],
    }
    table.update(spec_changes)
    spec = tmp_path / "leads.yaml"
    spec.write_text(yaml.safe_dump({"name": "tiny-leads", "tables": {"leads": table}}))
    return spec


GOOD_ROWS = [f"L{i},{i % 2},{'web' if i % 3 else 'event'},{10 + i}" for i in range(40)]


def _fails(result, *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_spec_without_an_outcome_role(tmp_path: Path) -> None:
    spec = _write(tmp_path, GOOD_ROWS, columns={"lead_id": "id", "source": "src"}, post_outcome=[], types={})
    with pytest.raises(SalesmlError, match=r"must map the role\(s\) \['outcome'\]"):
        load_dataset(spec)


def test_outcome_column_with_unknown_values(tmp_path: Path) -> None:
    spec = _write(tmp_path, [*GOOD_ROWS, "L99,maybe,web,3"])
    _fails(run_cli("train", "leads", "--dataset", str(spec)), "unknown outcome value", "maybe")


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"post_outcome": ["talk_time"]}, "talk_time"),  # declared but never mapped
        (
            {"columns": {"lead_id": "id", "outcome": "y", "duration": "talk_seconds"}, "types": {}},
            "talk_seconds",  # mapped to a source column the data does not have
        ),
    ],
)
def test_post_outcome_column_not_in_the_data(tmp_path: Path, changes: dict, needle: str) -> None:
    spec = _write(tmp_path, GOOD_ROWS, **changes)
    with pytest.raises(SalesmlError, match=needle):
        load_dataset(spec)


def test_lead_batch_with_a_missing_id(tmp_path: Path) -> None:
    spec = _write(tmp_path, [*GOOD_ROWS, ",1,web,3"])
    with pytest.raises(SalesmlError, match="(?s)lead_id.*must not be empty"):
        load_dataset(spec)

    good = _write(tmp_path, GOOD_ROWS)
    batch = tmp_path / "batch.json"
    batch.write_text(json.dumps([{"lead_id": "N1", "source": "web"}, {"source": "event"}]))
    out = tmp_path / "scores.parquet"
    _fails(
        run_cli("score", "leads", "--dataset", str(good), "--input", str(batch), "--out", str(out)),
        "lead #1: missing 'lead_id'",
    )
    assert not out.exists()


def test_tiny_valid_data_set_builds_and_never_offers_the_post_outcome_column(tmp_path: Path) -> None:
    lead_set = build_lead_set(load_dataset(_write(tmp_path, GOOD_ROWS)))
    assert lead_set.features == ["source"] and "duration" in lead_set.excluded
    assert "duration" not in lead_set.frame.columns
