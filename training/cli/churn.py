"""``salesml train churn`` and ``salesml score churn``: thin commands over :mod:`training.churn`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from features.errors import SalesmlError
from training import score_columns as sc
from training.outputs import check_out_file, check_out_parts, staged

__all__ = ["score_app", "score_churn_cmd", "train_app", "train_churn_cmd"]

# This leaf's commands; training/cli/__init__.py mounts them on `salesml score` and `salesml train`.
score_app, train_app = typer.Typer(), typer.Typer()

_out = Console()
_err = Console(stderr=True)
_SHOWN_ERRORS = 20  # bad rows named one per line; the rest counted


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
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        help="Build the training set on Dask: 'local' (a LocalCluster on this machine) or a scheduler address "
        "(tcp://host:8786); default $SALESML_DASK_SCHEDULER, unset: in this process. An order table stored as a "
        "folder of Parquet parts is then read by the workers.",
    ),
) -> None:
    """Build the churn training set, train the calibrated classifier, log one MLflow run as 'churn_risk.<data set>'."""
    from features.churn_snapshot import write_churn_snapshot
    from features.distributed import scheduler_client
    from features.load import load_dataset
    from training.products import product

    churn = product("churn_risk")
    with scheduler_client(scheduler) as client:
        # On a cluster a partitioned order table stays on disk: the workers read and check its parts.
        ds = load_dataset(dataset, defer_parted=client is not None)
        training = churn.train(
            ds,
            horizon_days=_horizon(horizon_days),
            n_cutoffs=cutoffs,
            as_of=as_of,
            n_trials=trials,
            timeout_s=timeout,
            client=client,
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
        typer.Option(
            "--out",
            help="Output file (.parquet or .csv): one row per active customer; a name without a suffix is a folder "
            "of Parquet parts (part-00000.parquet, ..., a customer's row in one part), replaced whole.",
        ),
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
    input_file: Annotated[
        Path | None,
        typer.Option(
            "--input",
            help="Score these customers (.csv, .parquet or .json list): snapshot data's raw rows in the spec's "
            "source or canonical column names, or customer_id and feature values; bad rows are named, the rest "
            "scored.",
        ),
    ] = None,
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        help="Build the features and score on Dask, a partition of customers per task: 'local' or a scheduler "
        "address (tcp://host:8786); default $SALESML_DASK_SCHEDULER, unset: in this process.",
    ),
) -> None:
    """Score every customer active at the last cutoff: probability within H days, band, reasons, value at risk."""
    from features.distributed import scheduler_client
    from features.load import load_dataset
    from training.churn import TIERS, score_churn
    from training.products import load_model

    if out is None and to_sql is None:
        raise SalesmlError("give --out FILE.parquet, --to-sql URL --table NAME, or both")
    if (to_sql is None) != (table is None):
        raise SalesmlError("--to-sql and --table go together: the database URL and the table to upsert into")
    if input_file is not None and as_of is not None:
        raise SalesmlError(
            "--as-of applies to the data set's customers; rows from --input carry their features"
        )
    if input_file is not None and scheduler:
        raise SalesmlError(
            "--scheduler applies to the data set's customers; rows from --input are scored in this process"
        )
    if out is not None:
        check_out_file(out, (".parquet", ".csv")) if out.suffix else check_out_parts(out)
    # An unreadable --input fails before the data is read; its rows are scored in this process.
    rows = _read_rows(input_file) if input_file is not None else None
    with scheduler_client(scheduler) as client:
        ds = load_dataset(dataset, defer_parted=client is not None)
        loaded = load_model("churn_risk", ds.name, version=version)
        trained_horizon = int(loaded.params.get("horizon_days") or 0) or None
        if rows is not None:
            if horizon_days is not None and horizon_days != trained_horizon:
                raise SalesmlError(
                    f"{loaded.name} v{loaded.version} predicts churn within {trained_horizon} days; "
                    f"--horizon-days {horizon_days} does not match (leave it out)"
                )
            scores = _score_input(rows, ds, loaded, input_file)  # type: ignore[arg-type]
        else:
            scores = score_churn(
                ds,
                loaded.model,
                version=loaded.version,
                trained_horizon=trained_horizon,
                as_of=as_of,
                horizon_days=_horizon(horizon_days),
                client=client,
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
    what = f"customers from {input_file}" if input_file is not None else f"customers of {ds.name}"
    as_of_text = "" if input_file is not None or pd.isna(cutoff) else f" (features as of {cutoff:%Y-%m-%d})"
    _out.print(
        f"scored {len(scores):,} {what} with {loaded.name} v{loaded.version}{as_of_text}; "
        f"bands { {k: int(v) for k, v in bands.items()} }; "
        f"expected revenue lost {scores[sc.EXPECTED_VALUE].sum():,.0f}"
    )
    if out is not None:
        _out.print(f"wrote {out}")


def _read_rows(path: Path) -> pd.DataFrame:
    """The rows of a .csv (every value as its text), .parquet or .json (a list of objects) file."""
    if not path.is_file():
        raise SalesmlError(f"--input {path} {'is not a file' if path.exists() else 'does not exist'}")
    kinds = {".csv": "CSV", ".parquet": "Parquet", ".json": "JSON (a list of objects)"}
    if path.suffix not in kinds:
        raise SalesmlError(f"--input {path}: expected a .csv, .parquet or .json file")
    try:
        if path.suffix == ".csv":
            # Every value as its text: numbers are read by the scorer's rules, texts stay as written.
            return pd.read_csv(path, dtype=str)
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise SalesmlError(
            f"--input {path} is not readable {kinds[path.suffix]}: {type(err).__name__}: {err}"
        ) from err
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise SalesmlError(f"--input {path} must hold a JSON list of customer objects")
    return pd.DataFrame.from_records(records)


def _score_input(rows: pd.DataFrame, ds: Any, loaded: Any, path: Path) -> pd.DataFrame:
    """The file's good rows scored as the service scores customers sent with features; bad rows named on
    stderr (row number, column, rule). Refused when no row can be scored."""
    from features.churn_inputs import churn_input_rows
    from training.products import product

    scoring = loaded.model
    good, errors = churn_input_rows(rows, ds, scoring.features, scoring.numeric, source=f"--input {path}")
    for message in list(errors.values())[:_SHOWN_ERRORS]:
        _err.print(message, highlight=False, markup=False)
    if len(errors) > _SHOWN_ERRORS:
        _err.print(f"... and {len(errors) - _SHOWN_ERRORS} more row(s) not scored", highlight=False)
    if good.empty:
        raise SalesmlError(
            f"--input {path}: none of its {len(rows)} row(s) can be scored (see above); nothing written"
        )
    if errors:
        _err.print(
            f"{len(errors)} of {len(rows)} row(s) not scored; the other {len(good)} were", highlight=False
        )
    return product("churn_risk").score_rows(loaded, good, rank_reference=_rank_reference(ds.name, scoring))


def _rank_reference(dataset: str, scoring: Any) -> dict[str, Any] | None:
    """What rows sent with features get their within-cutoff ranks against (the feature snapshot, as in the
    service); None when the model uses no rank."""
    from features.churn_columns import RANK_SUFFIX
    from features.churn_snapshot import read_churn_snapshot
    from training.churn import prepare_churn_snapshot

    if not any(c.endswith(RANK_SUFFIX) for c in scoring.features):
        return None
    snapshot, _ = read_churn_snapshot(dataset)
    return prepare_churn_snapshot(snapshot, scoring)[1]
