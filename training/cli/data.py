"""``salesml data ...``: inspect and validate data sets."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["data_app"]

data_app = typer.Typer(
    help="Inspect and validate data sets (a built-in name or a path to a spec).", no_args_is_help=True
)
console = Console(width=None if __import__("sys").stdout.isatty() else 150)


@data_app.command("check")
def check(
    dataset: Annotated[
        str, typer.Argument(help="Built-in data set name (walmart, crm, ...) or path to a spec YAML.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Load and validate a data set, then print what it holds. Exit 2 if it breaks its spec."""
    from features.load import load_dataset
    from features.summary import summarize

    summary = summarize(load_dataset(dataset))
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    console.print(
        f"[bold]{summary['dataset']}[/bold]  spec {summary['spec']}  (fingerprint {summary['fingerprint']})"
    )
    console.print(f"data root: {summary['root']}")
    if "synthetic" in summary:
        console.print(f"[yellow]SYNTHETIC[/yellow] {summary['synthetic']}")
    table = Table("table", "role", "rows", "cols", "date range", "entities", "labels")
    for t in summary["tables"]:
        table.add_row(
            t["table"],
            t["role"],
            f"{t['rows']:,}",
            str(t["columns"]),
            t.get("date_range", ""),
            ", ".join(f"{k}={v:,}" for k, v in t.get("entities", {}).items()),
            ", ".join(f"{k}={v:,}" for k, v in t.get("label_balance", {}).items()),
        )
    console.print(table)
    for i, h in enumerate(summary.get("hierarchies", [])):
        console.print(f"hierarchy {i}: " + " > ".join(f"{k} ({v})" for k, v in h.items()))
    if "frequency" in summary:
        console.print(f"forecast frequency: {summary['frequency']}")


@data_app.command("list")
def list_datasets() -> None:
    """List the built-in data set specs."""
    from features.spec import builtin_names, load_spec

    table = Table("name", "description")
    for name in builtin_names():
        spec, _ = load_spec(name)
        table.add_row(name, " ".join(spec.description.split())[:100])
    console.print(table)
