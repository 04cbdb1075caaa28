"""``salesml report``: a thin wrapper over ``python -m serving.report``.

The report reads the champions as the service serves them, so it lives in ``serving``; it is started here by its
module name in a new interpreter (``training`` never imports ``serving``), with the same arguments, and its exit
code, output and errors are this command's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from features.settings import REPO_ROOT, get_settings

__all__ = ["app", "report"]

# This leaf's command; training/cli/__init__.py mounts it on `salesml`.
app = typer.Typer()


@app.command("report")
def report(
    quarter: Annotated[
        Literal["next", "current"],
        typer.Option(help="The quarter to report: next, or current (actuals to date)."),
    ],
    out: Annotated[Path, typer.Option("--out", help="The file to write: FILE.html or FILE.pdf.")],
    node: Annotated[
        str, typer.Option(help="The node whose children (along the first hierarchy) get a section each.")
    ] = "total",
    targets: Annotated[
        Path | None,
        typer.Option(
            "--targets", help="CSV with the columns node,quarter,target (quarter: next, current or 2026Q1)."
        ),
    ] = None,
) -> None:
    """Write a quarterly report, one section per child of --node: forecast vs target, last quarter, customers
    at risk, lead pipeline.

    Each section: the quarter's forecast against its target and the probability of reaching it, the last complete
    quarter's forecast against its actual, the top customers by revenue at risk, the lead pipeline by grade and the
    models behind them. HTML (self-contained) or PDF, written atomically. The champions are those `salesml serve`
    would serve (SALESML_SERVE_SALES / _CHURN / _LEADS). Exit 1 when no sales_forecast champion is served (the
    message names the command that trains one) or the file cannot be written; 2 for bad input.
    """
    settings = get_settings()
    env = {
        **os.environ,
        "SALESML_HOME": str(settings.home),
        # Fail fast when a registry server is unreachable: the report then uses the local copies.
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"),
        "MLFLOW_HTTP_REQUEST_TIMEOUT": os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "5"),
        # no progress bars in a cron job's mail
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": os.environ.get(
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false"
        ),
    }
    # The report runs from the project folder: the paths given are made absolute first.
    cmd = [sys.executable, "-m", "serving.report", "--quarter", quarter, "--node", node]
    cmd += ["--out", str(out.absolute())]
    if targets is not None:
        cmd += ["--targets", str(targets.absolute())]
    done = subprocess.run(cmd, env=env, cwd=REPO_ROOT, check=False)
    raise typer.Exit(done.returncode)
