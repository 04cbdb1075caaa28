"""``salesml backtest sales``, ``salesml train sales`` and ``salesml plan``: thin commands over training.forecast."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from features.errors import SalesmlError
from features.spec import load_spec, resolve_spec_path
from training.forecast.config import BACKTEST_FILES  # light: --out is checked before the stack loads

# This leaf's commands; training/cli/__init__.py mounts them on `salesml`, `salesml backtest`, `salesml train`.
app, backtest_app, train_app = typer.Typer(), typer.Typer(), typer.Typer()

__all__ = ["backtest_sales", "plan", "train_sales_cmd"]

# Piped output (logs, CI) gets a wide table instead of Rich's 80-column default.
_out = Console(width=None if sys.stdout.isatty() else 200)
_Dataset = Annotated[str, typer.Option("--dataset", help="Built-in data set name or path to a spec YAML.")]
_Fast = Annotated[
    bool,
    typer.Option(
        "--fast",
        help="Smoke run: 2 backtest windows, bottom-up reconciliation only, no LGBM+SN combination, 150 "
        "LightGBM trees at learning rate 0.1. Its figures are not comparable with a full run's (other "
        "windows), so the gate never compares the two.",
    ),
]


def _config(fast: bool):  # noqa: ANN202 - ForecastConfig | None, imported lazily for a quick --help
    """The default config (``None``), or with ``--fast`` ``ForecastConfig.fast()``."""
    from training.forecast.config import ForecastConfig

    return ForecastConfig.fast() if fast else None


def _table(frame: pd.DataFrame, title: str) -> Table:
    table = Table(title=title, show_lines=False)
    for col in frame.columns:
        table.add_column(str(col), justify="right" if pd.api.types.is_numeric_dtype(frame[col]) else "left")
    for _, row in frame.iterrows():
        cells = []
        for col in frame.columns:
            v = row[col]
            if isinstance(v, float):
                cells.append(f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3f}")
            else:
                cells.append(str(v))
        table.add_row(*cells)
    return table


def _summary_title(result) -> str:  # noqa: ANN001 - a BacktestResult, imported lazily
    cal = ", ".join(result.recipe.choice_cutoffs)
    return (
        f"chosen {result.chosen} on the {result.recipe.chosen_on} cutoffs ({cal}); WAPE / bias on the "
        "evaluation windows, ratio = chosen WAPE / best baseline WAPE"
    )


def _progress(msg: str) -> None:
    _out.print(f"[dim]{msg}[/dim]")


def parse_target(text: str) -> float:
    """A positive amount (``1500000``, ``1.5e6``, ``1_500_000`` or ``1,500,000``)."""
    try:
        value = float(str(text).replace(",", "").replace("_", ""))
    except ValueError:
        raise SalesmlError(f"--target must be a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise SalesmlError(f"--target must be a positive number, got {text!r}")
    return value


_Scheduler = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="Sum an order table stored as Parquet parts into the series on Dask workers, and fit the statistical "
        "baselines and build LightGBM's features and forecast there, a partition of series per task: 'local' (a "
        "LocalCluster on this machine) or a scheduler address (tcp://host:8786); default "
        "$SALESML_DASK_SCHEDULER, unset: in this process. The one LightGBM model, the reconciliation and the "
        "intervals stay in this process.",
    ),
]


@backtest_app.command("sales")
def backtest_sales(
    dataset: _Dataset,
    out: Annotated[
        str,
        typer.Option(
            "--out",
            help="Folder for forecasts.parquet, metrics.csv, totals.parquet, scales.parquet, selection.csv "
            "and cutoffs.csv.",
        ),
    ],
    fast: _Fast = False,
    scheduler: _Scheduler = None,
) -> None:
    """Backtest the forecast on common calendar cutoffs (one quarter per window) against the baselines."""
    from features.distributed import scheduler_client, using
    from training.outputs import check_out_folder

    resolve_spec_path(dataset)  # an unknown data set fails before the forecasting stack is imported
    check_out_folder(out, BACKTEST_FILES)  # and a folder that cannot be written, before the backtest runs
    from training.forecast.report import summary_table, write_backtest
    from training.forecast.train import backtest_dataset

    with scheduler_client(scheduler) as client, using(client):
        series, result = backtest_dataset(dataset, _config(fast), progress=_progress)
    paths = write_backtest(result, out)
    cuts = ", ".join(str(c.date()) for c in result.cutoffs.evaluation)
    shown = result.metrics[~result.metrics["model"].str.contains("/", regex=False)]
    _out.print(_table(shown, f"backtest {dataset}: cutoffs {cuts}, {result.cutoffs.window} periods each"))
    _out.print(_table(summary_table(result, series.levels), _summary_title(result)))
    for name, path in paths.items():
        _out.print(f"wrote {name}: {path}")


@train_app.command("sales")
def train_sales_cmd(
    dataset: _Dataset,
    promote: Annotated[
        bool,
        typer.Option(
            "--promote", help="Move the alias 'champion' if no worse than the champion on the same windows."
        ),
    ] = False,
    fast: _Fast = False,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Train on the sales up to this day (YYYY-MM-DD) only, as if trained then; `salesml monitor` "
            "judges the forecast on what came after. Default: the end of the data.",
        ),
    ] = None,
    scheduler: _Scheduler = None,
) -> None:
    """Backtest, refit on all data, log one MLflow run and register the model as 'sales_forecast.<data set>'."""
    resolve_spec_path(dataset)  # an unknown data set fails before the forecasting stack is imported
    from features.churn_checks import parse_as_of

    parse_as_of(as_of)  # and a bad --as-of before the data is read
    from features.distributed import scheduler_client, using
    from features.load import load_dataset
    from training.forecast.report import summary_table
    from training.products import product

    sales = product("sales_forecast")
    with scheduler_client(scheduler) as client, using(client):
        ds = load_dataset(
            dataset, defer_parted=client is not None
        )  # the workers read a partitioned order table
        training = sales.train(ds, config=_config(fast), as_of=as_of, progress=_progress)
    _out.print(
        _table(summary_table(training.backtest, training.series.levels), _summary_title(training.backtest))
    )
    version, decision = sales.register(training, promote=promote)
    seconds = time.perf_counter() - training.started
    _out.print(
        f"registered {sales.registered_name(ds.name)} v{version} (model {training.backtest.chosen}, "
        f"data to {training.series.end.date()}, eval_key {training.eval_key}) in {seconds:.0f} s"
    )
    _out.print(
        f"wape_total {training.metrics['wape_total']:.4f}  wape_bottom {training.metrics['wape_bottom']:.4f}"
    )
    if decision is not None:
        _out.print(decision.summary())


@app.command("plan")
def plan(
    dataset: Annotated[str, typer.Option("--dataset", help="Data set whose trained forecast to use.")],
    target: Annotated[
        str, typer.Option("--target", help="The quarter target for the node: a positive amount.")
    ],
    node: Annotated[
        str, typer.Option("--node", help="Node id, e.g. total or store_type=A/store=1.")
    ] = "total",
    quarter: Annotated[
        str, typer.Option("--quarter", help="current (actuals to date count) or next.")
    ] = "next",
    hierarchy: Annotated[
        int, typer.Option("--hierarchy", help="For 'total' with several hierarchies: which one (0, 1, ...).")
    ] = 0,
) -> None:
    """Break a quarter target down to the node's children; show each child's chance of reaching its share."""
    from training.forecast.serve_api import plan_target
    from training.products import load_model

    amount = parse_target(target)
    if quarter not in ("current", "next"):
        raise SalesmlError(f"--quarter must be 'current' or 'next', got {quarter!r}")
    spec, _ = load_spec(dataset)  # versions are tagged with the spec's name, also when given as a path
    loaded = load_model("sales_forecast", spec.name, newest_without_alias=True)
    art, version = loaded.model, loaded.version
    frame = plan_target(art, node, amount, quarter, hierarchy=hierarchy)  # type: ignore[arg-type]
    period = art.quarters.loc[art.quarters["quarter"] == quarter, "period"].iloc[0]
    _out.print(
        _table(
            frame,
            f"{dataset} {period} target {amount:,.0f} for {node} ({loaded.name} v{version}, data to "
            f"{art.meta['cutoff']})",
        )
    )
