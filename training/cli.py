"""The ``salesml`` command: one entry point for people and scripts. Each command is thin."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from features.cli import data_app
from features.errors import SalesmlError

__all__ = ["app", "main"]

app = typer.Typer(
    name="salesml",
    help="salesml: sales forecasts, churn risk and lead scores, trained, tracked in MLflow and served.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")

_err = Console(stderr=True)


def main() -> None:
    """Console entry point: bad input (SalesmlError) is printed for people and exits 2."""
    try:
        app(standalone_mode=False)
    except SalesmlError as err:
        _err.print(f"[bold red]error:[/bold red] {err}", highlight=False, markup=True, soft_wrap=True)
        sys.exit(2)
    except typer.Abort:
        _err.print("aborted")
        sys.exit(1)
    except (typer.Exit, SystemExit) as done:
        code = getattr(done, "exit_code", getattr(done, "code", 0))
        sys.exit(code)
    except Exception as err:  # click usage errors
        import click

        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(err.exit_code)
        raise
