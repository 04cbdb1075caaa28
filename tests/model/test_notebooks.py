"""The notebooks run top to bottom in fast mode and leave MLflow runs shaped like the CLI's."""

from __future__ import annotations

import json
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO

NOTEBOOKS = {
    "01-sales-forecast.ipynb": "sales_forecast",
    "02-churn-risk.ipynb": "churn_risk",
    "03-lead-scoring.ipynb": "lead_score",
}


def test_notebooks_in_git_carry_no_outputs() -> None:
    found = sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))
    assert found == sorted(NOTEBOOKS)
    for name in found:
        nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, (
                    f"{name}: strip outputs (make notebooks-strip)"
                )
        assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), (
            f"{name}: no parameters cell"
        )
        text = json.dumps(nb)
        assert "/work/" not in text and "/home/" not in text, f"{name}: machine-specific path"


def _execute(path: Path, parameters: dict, workdir: Path) -> nbformat.NotebookNode:
    """Run a notebook as papermill would: a cell with the parameters goes right after the 'parameters' cell."""
    nb = nbformat.read(path, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(
        at + 1, nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in parameters.items()))
    )
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    ).execute()
    return nb


def _metric_names(home: Path, model: str) -> list[set[str]]:
    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'models' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(model)
    assert exp is not None, f"no MLflow experiment {model!r} in {home}"
    return [set(r.data.metrics) for r in client.search_runs([exp.experiment_id])]


@pytest.mark.slow
def test_notebooks_run_and_log_the_cli_metric_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_synthetic_spec: Path, trained_home: Path
) -> None:
    monkeypatch.setenv("SALESML_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the kernel must use this home's store
    started = time.perf_counter()
    for name, model in NOTEBOOKS.items():
        _execute(
            REPO / "notebooks" / name,
            {"dataset": str(small_synthetic_spec), "fast": True, "promote": True},
            tmp_path,
        )
        from_notebook = _metric_names(tmp_path, model)
        from_cli = _metric_names(trained_home, model)
        assert len(from_notebook) == 1 and from_cli
        assert from_notebook[0] == from_cli[0], (
            f"{name}: metric names differ from the CLI run: only notebook {sorted(from_notebook[0] - from_cli[0])[:8]}, "
            f"only CLI {sorted(from_cli[0] - from_notebook[0])[:8]}"
        )
    # Recorded for the 3-minute budget (measured, not asserted: timing belongs to benchmarks).
    print(f"notebooks executed in {time.perf_counter() - started:.0f} s")
