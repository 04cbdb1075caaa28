"""The ``salesml`` command: one entry point for people and scripts. Each command is thin.

The root command and its groups (``train``, ``backtest``, ``score``) are defined here. Each leaf module of this
package owns the Typer apps of its commands (``data``, ``models``, ``serve``, ``plan``, ``train sales``, ...) and
imports nothing of this package; this module alone imports the leaves and mounts their commands. A Typer app
added without a name contributes its commands to the group it is added to.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.text import Text

from features.errors import SalesmlError
from training.cli import churn, data, leads, models, monitor, report, sales, serve

__all__ = ["app", "backtest_app", "main", "score_app", "train_app"]

app = typer.Typer(
    name="salesml",
    help="salesml: sales forecasts, churn risk and lead scores, trained, tracked in MLflow and served.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
train_app = typer.Typer(
    help="Train a model as one MLflow run and register it (optionally promote it).", no_args_is_help=True
)
backtest_app = typer.Typer(
    help="Backtest a model on rolling time windows without registering it.", no_args_is_help=True
)
score_app = typer.Typer(
    help="Score entities with the champion model and write the scores to a file.", no_args_is_help=True
)
# The order of the mounts is the order of `salesml --help`.
app.add_typer(serve.app)
app.add_typer(sales.app)
app.add_typer(data.data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(backtest_app, name="backtest")
app.add_typer(score_app, name="score")
app.add_typer(models.models_app, name="models")
app.add_typer(monitor.app)
app.add_typer(report.app)
for leaf in (churn, leads, sales):
    train_app.add_typer(leaf.train_app)
backtest_app.add_typer(sales.backtest_app)
for leaf in (churn, leads):
    score_app.add_typer(leaf.score_app)

_err = Console(stderr=True)


def main() -> None:
    """Console entry point: bad input (SalesmlError) is printed for people and exits 2."""
    try:
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except SalesmlError as err:
        _err.print(Text("error: ", style="bold red") + Text(str(err)), highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Abort:
        _err.print("aborted")
        sys.exit(1)
    except (typer.Exit, SystemExit) as done:
        sys.exit(getattr(done, "exit_code", getattr(done, "code", 0)))
    except Exception as err:
        import click

        # Usage errors (a missing or unknown option, a value of the wrong type or range): click prints them with
        # the usage line and exits 2. Typer >= 0.29 raises its own copy of click's exceptions, which derives from
        # typer.TyperException and not from click.ClickException.
        if isinstance(err, (click.ClickException, typer.TyperException)) and hasattr(err, "show"):
            err.show()
            sys.exit(getattr(err, "exit_code", 2))
        raise
