"""``salesml serve``: a thin wrapper over ``bentoml serve serving.service:SalesML``.

The service is named by its import string and started in BentoML's own command, which this process becomes
(``os.execve``): ``training`` never imports ``serving``, and stopping ``salesml serve`` stops the server itself.
(``bentoml.serve(...)`` would start the server as a child of this process instead.)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from features.settings import REPO_ROOT, get_settings

__all__ = ["app", "serve"]

# This leaf's command; training/cli/__init__.py mounts it on `salesml`.
app = typer.Typer()


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 3000,
    workers: Annotated[int, typer.Option(min=1, help="Number of service worker processes.")] = 1,
    threads: Annotated[
        int, typer.Option(min=1, help="Requests each worker handles at once (threads for the endpoints).")
    ] = 1,
    sales: Annotated[
        str | None,
        typer.Option("--sales", help="Data set whose sales_forecast champion to serve (default: walmart)."),
    ] = None,
    churn: Annotated[
        str | None,
        typer.Option("--churn", help="Data set whose churn_risk champion to serve (default: cdnow)."),
    ] = None,
    leads: Annotated[
        str | None,
        typer.Option(
            "--leads", help="Data set whose lead_score champion to serve (default: bank-marketing)."
        ),
    ] = None,
) -> None:
    """Serve the champions of sales_forecast, churn_risk and lead_score over HTTP (OpenAPI at /docs.json).

    Each product serves the champion of one data set (a name or a spec path): --sales / --churn / --leads, or
    SALESML_SERVE_SALES / _CHURN / _LEADS; the defaults are the data sets `make demo` trains.
    """
    settings = get_settings()
    chosen = {"SALESML_SERVE_SALES": sales, "SALESML_SERVE_CHURN": churn, "SALESML_SERVE_LEADS": leads}
    env = {
        **os.environ,
        # Keep BentoML's own state out of the project folder (STACK-NOTES: builds inside it break).
        "BENTOML_HOME": os.environ.get("BENTOML_HOME", str(Path.home() / ".bentoml")),
        "SALESML_HOME": str(settings.home),
        # Fail fast when a registry server is unreachable: the service then serves its local copies.
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"),
        "MLFLOW_HTTP_REQUEST_TIMEOUT": os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "5"),
        # BentoML 1.4 has no command-line option for these; serving/service.py reads them into its decorator.
        "SALESML_SERVE_WORKERS": str(workers),
        "SALESML_SERVE_THREADS": str(threads),
        # a spec path is made absolute: the server runs from the project folder
        **{k: str(Path(v).resolve()) if Path(v).is_file() else v for k, v in chosen.items() if v},
    }
    bentoml = Path(sys.executable).parent / "bentoml"
    cmd = [str(bentoml), "serve", "serving.service:SalesML", "--host", host, "--port", str(port)]
    # Replace this process, so that stopping `salesml serve` stops the server itself.
    os.chdir(REPO_ROOT)
    os.execve(cmd[0], cmd, env)
