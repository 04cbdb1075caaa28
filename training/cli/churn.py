"""``salesml train churn`` and ``salesml score churn``: thin commands over :mod:`training.churn`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from features.errors import SalesmlError
from training import score_columns as sc
from training.outputs import check_out_file, staged

__all__ = ["score_app", "score_churn_cmd", "train_app", "train_churn_cmd"]

# This leaf's commands; training/cli/__init__.py mounts them on `salesml score` and `salesml train`.
score_app, train_app = typer.Typer(), typer.Typer()

_out = Console()


def _metrics_table(metrics: dict[str, dict[str, float]], title: str) -> Table:
    cols = ["roc_auc", "pr_auc", "brier", "ece", "lift_top_decile", "capture_top_decile", "base_rate", "n"]
    table = Table(title=title)
    table.add_column("model")
    for c in cols:
        table.add_column(c, justify="right")
    for name, m in metrics.items():
        table.add_row(
            name, *(f"{m.get(c, float('nan')):.4f}" if c != "n" else f"{m.get(c, 0):,.0f}" for c in cols)
        )
    return table


def _horizon(value: int | None) -> int | None:
    if value is not None and value <= 0:
        raise SalesmlError(f"--horizon-days must be a positive number of days, got {value}")
    return value


@train_app.command("churn")
def train_churn_cmd(
    dataset: str = typer.Option(..., "--dataset", help="Built-in data set name or path to a spec YAML."),
    promote: bool = typer.Option(
        False,
        "--promote",
        help="Move the alias 'champion' if no worse ROC AUC and Brier on the same test slice.",
    ),
    horizon_days: int | None = typer.Option(
        None,
        "--horizon-days",
        help="H: churn = no purchase within H days (default: the spec's churn_horizon_days).",
    ),
    cutoffs: int = typer.Option(
        12, "--cutoffs", min=1, help="How many of the latest labelled monthly cutoffs."
    ),
    as_of: str | None = typer.Option(
        None, "--as-of", help="Last cutoff (YYYY-MM-DD); events after it are ignored. Default: end of data."
    ),
    trials: int = typer.Option(
        20, "--trials", min=1, help="Optuna trials for LightGBM (bounded by --timeout)."
    ),
    timeout: float = typer.Option(240.0, "--timeout", min=1.0, help="Seconds for the hyperparameter search."),
) -> None:
    """Build the churn training set, train the calibrated classifier, log one MLflow run as 'churn_risk.<data set>'."""
    from features.churn_snapshot import write_churn_snapshot
    from features.load import load_dataset
    from training.products import product

    churn = product("churn_risk")
    ds = load_dataset(dataset)
    training = churn.train(
        ds,
        horizon_days=_horizon(horizon_days),
        n_cutoffs=cutoffs,
        as_of=as_of,
        n_trials=trials,
        timeout_s=timeout,
    )
    cs, result = training.churn_set, training.result
    _out.print(
        f"[bold]{ds.name}[/bold] ({cs.kind}): {len(cs.labeled()):,} labelled rows, H = {cs.horizon_days} days, "
        f"{len(cs.features)} features; slices {result.slices.get('train', '')} | "
        f"{result.slices.get('calibration', '')} | {result.slices.get('test', '')} (purge: {training.purge_policy})"
    )
    _out.print(_metrics_table(result.metrics, "test slice"))
    _out.print(
        f"calibration: {result.calibration_report['chosen']}; top factors: "
        + ", ".join(result.importance["feature"].head(8))
    )
    version, decision = churn.register(training, promote=promote)
    snapshot = write_churn_snapshot(cs, spec_fingerprint=ds.spec.fingerprint())
    _out.print(f"registered {churn.registered_name(ds.name)} v{version}; serving snapshot {snapshot}")
    if decision is not None:
        _out.print(decision.summary())


@score_app.command("churn")
def score_churn_cmd(
    dataset: Annotated[str, typer.Option("--dataset", help="Built-in data set name or path to a spec YAML.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output file (.parquet or .csv): one row per active customer."),
    ] = None,
    to_sql: Annotated[
        str | None,
        typer.Option(
            "--to-sql", help="SQLAlchemy URL of the CRM database to upsert the scores into (one transaction)."
        ),
    ] = None,
    table: Annotated[
        str | None, typer.Option("--table", help="Table for --to-sql (created if absent).")
    ] = None,
    version: str | None = typer.Option(
        None, "--version", help="Registered version to use (default: champion)."
    ),
    horizon_days: int | None = typer.Option(
        None, "--horizon-days", help="H; must match the model's (default: the spec's churn_horizon_days)."
    ),
    as_of: str | None = typer.Option(
        None, "--as-of", help="Score as of this date (YYYY-MM-DD); default end of data."
    ),
) -> None:
    """Score every customer active at the last cutoff: probability within H days, band, reasons, value at risk."""
    from features.load import load_dataset
    from training.churn import TIERS, score_churn
    from training.products import load_model

    if out is None and to_sql is None:
        raise SalesmlError("give --out FILE.parquet, --to-sql URL --table NAME, or both")
    if (to_sql is None) != (table is None):
        raise SalesmlError("--to-sql and --table go together: the database URL and the table to upsert into")
    if out is not None:
        check_out_file(out, (".parquet", ".csv"))
    ds = load_dataset(dataset)
    loaded = load_model("churn_risk", ds.name, version=version)
    scores = score_churn(
        ds,
        loaded.model,
        version=loaded.version,
        trained_horizon=int(loaded.params.get("horizon_days") or 0) or None,
        as_of=as_of,
        horizon_days=_horizon(horizon_days),
    )
    # The file is staged first and moved into place only after the upsert committed: both or neither.
    with staged({} if out is None else {out: scores}):
        if to_sql is not None:
            from training.scores_sql import write_score_frame

            n = write_score_frame(
                scores,
                kind="churn",
                url=to_sql,
                table=table,
                on_migrate=_out.print,  # type: ignore[arg-type]
            )
            _out.print(f"upserted {n} rows into {table} (one transaction)")
    bands = scores[sc.BAND].value_counts().reindex(list(TIERS)).fillna(0).astype(int)
    cutoff = scores[sc.AS_OF].iloc[0] if len(scores) else None
    _out.print(
        f"scored {len(scores):,} customers of {ds.name} with {loaded.name} v{loaded.version} (features as of "
        f"{'' if pd.isna(cutoff) else f'{cutoff:%Y-%m-%d}'}); bands { {k: int(v) for k, v in bands.items()} }; "
        f"expected revenue lost {scores[sc.EXPECTED_VALUE].sum():,.0f}"
    )
    if out is not None:
        _out.print(f"wrote {out}")
