"""``salesml monitor``: check the champions of a data set against its newest data; the exit code says whether an
alert fired (0 none, 1 alert, 2 error: bad input, or a champion that could not be checked; the report is written
for the others), so cron or CI can act on it."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from features.errors import SalesmlError
from features.spec import resolve_spec_path

__all__ = ["app", "monitor"]

# This leaf's command; training/cli/__init__.py mounts it on `salesml`.
app = typer.Typer()
_out = Console(width=None if sys.stdout.isatty() else 200)


@app.command("monitor")
def monitor(
    dataset: Annotated[str, typer.Option("--dataset", help="Built-in data set name or path to a spec YAML.")],
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="Use the data up to this day (YYYY-MM-DD). Default: the end of the data."
        ),
    ] = None,
    rules: Annotated[
        Path | None,
        typer.Option(
            "--rules",
            help="Alert rules YAML (metric, level or node, threshold, min_samples; optional webhook). Default: "
            "the built-in rules (training/monitor/rules.py).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder for monitor.json and monitor.html. Default: SALESML_HOME/monitoring/<data set>.",
        ),
    ] = None,
    log: Annotated[
        bool,
        typer.Option("--log/--no-log", help="Log the run and its report to MLflow (experiment monitoring)."),
    ] = True,
) -> None:
    """Accuracy, anomalies, drift and calibration of every champion of a data set; exit 1 when an alert fires."""
    try:
        code = _monitor(dataset, as_of, rules, out, log)
    except SalesmlError:
        raise  # printed by the entry point, exit 2
    except Exception as err:  # noqa: BLE001 - exit 1 means "alert": any other failure must still say 2
        sys.stderr.write(traceback.format_exc())
        raise SalesmlError(f"monitor failed: {type(err).__name__}: {err}") from err
    raise typer.Exit(code)


def _monitor(dataset: str, as_of: str | None, rules_path: Path | None, out: Path | None, log: bool) -> int:
    from features.churn_checks import parse_as_of

    resolve_spec_path(dataset)
    parse_as_of(as_of)
    from features.load import load_dataset
    from features.settings import get_settings
    from training.monitor.report import log_report, write_report
    from training.monitor.rules import DEFAULT_RULES, load_rules
    from training.monitor.run import run_monitor
    from training.monitor.webhook import send_alerts

    rules = DEFAULT_RULES if rules_path is None else load_rules(rules_path)
    ds = load_dataset(dataset)
    result = run_monitor(ds, as_of=as_of, rules=rules, progress=lambda m: _out.print(f"[dim]{m}[/dim]"))
    folder = out if out is not None else get_settings().home / "monitoring" / ds.name
    paths = write_report(result, folder)
    for product, why in result.skipped.items():
        _out.print(f"{product}: {why}")
    for product, why in result.errors.items():
        _out.print(f"[bold red]{product} not checked[/bold red]: {why}", highlight=False)
    for product, section in result.sections.items():
        _out.print(f"{product}: {section['model']} v{section['version']} checked")
    if result.alerts:
        _out.print(f"[bold red]{len(result.alerts)} alert(s)[/bold red]")
        for alert in result.alerts[:20]:
            _out.print(f"  [red]{alert.rule}[/red]: {alert.message}", highlight=False)
        if len(result.alerts) > 20:
            _out.print(f"  ... and {len(result.alerts) - 20} more in {paths['monitor.json']}")
    else:
        _out.print("[green]no alert[/green]")
    if rules.webhook is not None and result.alerts:
        report = send_alerts(rules.webhook, result.alerts)
        _out.print(f"webhook: {report.sent} sent, {report.failed} failed ({report.attempts} attempts)")
        for line in report.errors[:5]:
            _out.print(f"  {line}", highlight=False)
    if log:
        run_id = log_report(result, paths)
        _out.print(f"logged to MLflow run {run_id}")
    for name, path in paths.items():
        _out.print(f"wrote {name}: {path}")
    return 2 if result.errors else 1 if result.alerts else 0
