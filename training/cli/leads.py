"""``salesml train leads`` and ``salesml score leads``: thin commands over :mod:`training.leads`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from features.audit import audit_table_rich
from features.errors import SalesmlError
from features.load import load_dataset
from training import score_columns as sc
from training.outputs import check_out_file, staged

__all__ = ["score_app", "score_leads_command", "train_app", "train_leads_command"]

# This leaf's commands; training/cli/__init__.py mounts them on `salesml score` and `salesml train`.
score_app, train_app = typer.Typer(), typer.Typer()

_out = Console(width=160)  # readable tables in logs and pipes too


def _metrics_table(metrics: dict[str, dict[str, float]]) -> Table:
    table = Table(title="test slice")
    cols = ["roc_auc", "pr_auc", "brier", "ece", "lift_top_decile", "capture_top_decile", "base_rate", "n"]
    table.add_column("model")
    for col in cols:
        table.add_column(col, justify="right")
    for name, m in metrics.items():
        table.add_row(
            name, *[f"{m.get(c, float('nan')):.4f}" if c != "n" else f"{m.get(c, 0):.0f}" for c in cols]
        )
    return table


@train_app.command("leads")
def train_leads_command(
    dataset: str = typer.Option(
        ..., "--dataset", "-d", help="Built-in data set name or path to a spec YAML."
    ),
    promote: bool = typer.Option(False, "--promote", help="Move the 'champion' alias if the gate allows it."),
    trials: int = typer.Option(15, "--trials", min=1, help="Optuna trials for the LightGBM search."),
    timeout: float = typer.Option(180.0, "--timeout", min=1.0, help="Seconds budget for the search."),
    seed: int = typer.Option(42, "--seed", help="Random seed (search, stratified split)."),
    as_of: str | None = typer.Option(
        None,
        "--as-of",
        help="Train on the data as it stood at the end of this day (YYYY-MM-DD): later leads left out, leads "
        "decided later open again. Default: the end of the data.",
    ),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        help="Build the lead set on Dask, a partition of leads per task: 'local' (a LocalCluster on this "
        "machine) or a scheduler address (tcp://host:8786); default $SALESML_DASK_SCHEDULER, unset: in this "
        "process.",
    ),
) -> None:
    """Train lead / deal scoring: leakage audit, calibrated LightGBM, grades A-D; register as lead_score.<data set>."""
    from features.churn_checks import parse_as_of
    from features.distributed import scheduler_client
    from training.classifier import decision_report
    from training.products import product

    parse_as_of(as_of)  # a bad date fails before the data is read
    leads = product("lead_score")
    ds = load_dataset(dataset)
    with scheduler_client(scheduler) as client:
        training = leads.train(
            ds, n_trials=trials, timeout_s=timeout, random_state=seed, as_of=as_of, client=client
        )
    _out.print(audit_table_rich(training.audit, title=f"leakage audit: {ds.name}"))
    _out.print(_metrics_table(training.metrics))
    _out.print(training.result.bands_test.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    _out.print("\n".join(decision_report(training.result).splitlines()[2:5]), highlight=False)
    version, decision = leads.register(training, promote=promote)
    _out.print(f"registered {leads.registered_name(ds.name)} v{version}")
    if decision is not None:
        _out.print(decision.summary())


def _read_records(path: Path) -> list[dict]:
    if not path.exists():
        raise SalesmlError(f"--input {path} does not exist")
    if not path.is_file():
        raise SalesmlError(f"--input {path} is not a file; expected a .json list of objects or a .csv file")
    if path.suffix == ".json":
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise SalesmlError(f"--input {path} is not valid UTF-8 JSON: {err}") from err
        if not isinstance(records, list):
            raise SalesmlError(f"--input {path} must hold a JSON list of lead objects")
        return records
    if path.suffix == ".csv":
        try:
            frame = pd.read_csv(path, dtype={"lead_id": str})
        except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise SalesmlError(
                f"--input {path} is not a readable CSV file: {type(err).__name__}: {err}"
            ) from err
        return [{k: v for k, v in r.items() if pd.notna(v)} for r in frame.to_dict(orient="records")]
    raise SalesmlError(f"--input {path}: expected a .json list of objects or a .csv file")


@score_app.command("leads")
def score_leads_command(
    dataset: str = typer.Option(
        ..., "--dataset", "-d", help="Built-in data set name or path to a spec YAML."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Parquet file to write the scores to."),  # noqa: B008
    to_sql: str | None = typer.Option(
        None,
        "--to-sql",
        help="SQLAlchemy URL of the CRM database to upsert the scores into (one transaction).",
    ),
    table: str | None = typer.Option(None, "--table", help="Table for --to-sql (created if absent)."),
    input_file: Path | None = typer.Option(  # noqa: B008
        None,
        "--input",
        help="Score these raw leads (.json list or .csv, canonical names) instead of the open ones.",
    ),
    alias: str = typer.Option("champion", "--alias", help="Registry alias of the version to use."),
    version: str | None = typer.Option(
        None, "--version", help="Registered version to use (default: the one carrying --alias)."
    ),
) -> None:
    """Score open leads (crm: open deals) with the champion: probability, band, top 3 reasons, expected value."""
    from training.leads import GRADES, score_leads
    from training.products import load_model, product

    if out is None and to_sql is None:
        raise SalesmlError("give --out FILE.parquet, --to-sql URL --table NAME, or both")
    if (to_sql is None) != (table is None):
        raise SalesmlError("--to-sql and --table go together: the database URL and the table to upsert into")
    if out is not None:
        check_out_file(out, (".parquet",))
    ds = load_dataset(dataset)
    records = _read_records(input_file) if input_file is not None else None
    if records is not None:  # bad input is named before the model is loaded
        from features.inputs import lead_record_errors
        from features.spec import Role

        problems = lead_record_errors(records, ds.spec.table_of(Role.leads)[1])  # type: ignore[index]
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise SalesmlError(
                f"--input {input_file}: {next(iter(problems.values()))}{more}; nothing was scored"
            )
    loaded = load_model("lead_score", ds.name, alias=alias, version=version)
    if records is not None:
        from features.lead_records import new_lead_context

        scores, what = (
            product("lead_score").score_rows(loaded, records, context=new_lead_context(ds)),
            f"leads from {input_file}",
        )
    else:
        scores, what = score_leads(ds, loaded.model, version=loaded.version)
    # The file is staged first and moved into place only after the upsert committed: both or neither.
    with staged({} if out is None else {out: scores}):
        if to_sql is not None:
            from training.scores_sql import write_score_frame

            n = write_score_frame(
                scores,
                kind="leads",
                url=to_sql,
                table=table,
                on_migrate=_out.print,  # type: ignore[arg-type]
            )
            _out.print(f"upserted {n} rows into {table} (one transaction)")
    bands = scores[sc.BAND].value_counts().reindex(list(GRADES)).fillna(0).astype(int).to_dict()
    _out.print(
        f"scored {len(scores)} {what} with {loaded.name} v{loaded.version}; bands {bands}"
        + (f"; wrote {out}" if out is not None else "")
    )
    if scores[sc.VALUE].notna().any():
        _out.print(f"expected value total {scores[sc.EXPECTED_VALUE].sum():,.0f}")
