"""``salesml models ...``: the registry as people use it (list, show, promote, rollback, history, card)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from features.errors import SalesmlError
from training.registry import GATES

__all__ = ["models_app"]

models_app = typer.Typer(
    help="Registered models: versions, champions, promotion, rollback, history, cards.", no_args_is_help=True
)
console = Console(width=None if __import__("sys").stdout.isatty() else 160)

PRODUCTS = tuple(GATES)


def _registered_name(value: str) -> str:
    product, _, dataset = value.partition(".")
    if product not in PRODUCTS or (not dataset and "." in value):
        raise typer.BadParameter(
            f"expected <product>.<data set> with product one of {', '.join(PRODUCTS)} (e.g. churn_risk.cdnow; "
            f"`salesml models list` shows them), got {value!r}"
        )
    return value


NameArg = Annotated[
    str,
    typer.Argument(
        help="Registered model name, <product>.<data set>: e.g. sales_forecast.walmart, churn_risk.cdnow, "
        "lead_score.bank-marketing (a bare product name: a store from before per-data-set models).",
        callback=_registered_name,
    ),
]


def _client():
    from mlflow import MlflowClient

    from training.registry import connect

    connect()
    return MlflowClient()


def _versions(name: str | None = None) -> list[dict]:
    from mlflow.exceptions import MlflowException

    client = _client()
    names = [name] if name else sorted(m.name for m in client.search_registered_models())
    rows = []
    for n in names:
        try:
            versions = client.search_model_versions(f"name='{n}'")
        except MlflowException as err:
            raise SalesmlError(f"unknown model {n!r}: {err.message}") from None
        if name and not versions:
            raise SalesmlError(f"model {n!r} has no registered version")
        aliases: dict[str, list[str]] = {}
        for alias, v in (client.get_registered_model(n).aliases or {}).items():
            aliases.setdefault(str(v), []).append(alias)
        for mv in sorted(versions, key=lambda v: int(v.version)):
            tags = mv.tags or {}
            rows.append(
                {
                    "name": n,
                    "version": str(mv.version),
                    "aliases": sorted(aliases.get(str(mv.version), [])),
                    "metrics": {
                        k.removeprefix("metric."): float(v)
                        for k, v in tags.items()
                        if k.startswith("metric.")
                    },
                    "dataset": tags.get("dataset", ""),
                    "spec_fingerprint": tags.get("spec_fingerprint", ""),
                    "eval_key": tags.get("eval_key", ""),
                    "run_id": mv.run_id,
                    "created": mv.creation_timestamp,
                }
            )
    return rows


@models_app.command("list")
def list_models(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list of objects instead of a table.")
    ] = False,
) -> None:
    """Every registered model and version, which one is champion, and its headline metrics."""
    rows = _versions()
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table("name", "version", "aliases", "dataset", "metrics")
    for r in rows:
        table.add_row(
            r["name"],
            r["version"],
            ",".join(r["aliases"]),
            r["dataset"],
            " ".join(f"{k}={v:.4f}" for k, v in sorted(r["metrics"].items())),
        )
    console.print(table)


@models_app.command("show")
def show(
    name: NameArg,
    version: Annotated[str | None, typer.Argument(help="Version number; the champion when omitted.")] = None,
) -> None:
    """One version's tags, metrics and aliases (the champion by default)."""
    from training.registry import champion_version

    client = _client()  # first: it points MLflow at SALESML_HOME's store
    version = version or champion_version(name)
    if version is None:
        raise SalesmlError(f"model {name!r} has no champion; give a VERSION")
    try:
        mv = client.get_model_version(name, version)
    except Exception:
        raise SalesmlError(f"model {name!r} has no version {version!r}") from None
    table = Table("key", "value", title=f"{name} v{version} (aliases: {', '.join(mv.aliases or []) or '-'})")
    for key, value in sorted((mv.tags or {}).items()):
        if not key.startswith("audit."):
            table.add_row(key, str(value)[:120])
    console.print(table)


@models_app.command("promote")
def promote(
    name: NameArg,
    version: Annotated[str, typer.Argument(help="The version to make champion.")],
    force: Annotated[bool, typer.Option("--force", help="Skip the gate (needs --reason).")] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why; required with --force, recorded always.")
    ] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who decides (default: $USER).")] = None,
) -> None:
    """Move the champion alias to VERSION if the gate allows it (or with --force and a reason)."""
    from training.registry import promote_if_better

    _client()
    decision = promote_if_better(name, version, force=force, reason=reason, by=by)
    console.print(decision.summary(), highlight=False)
    if decision.deltas:
        console.print("deltas vs champion: " + ", ".join(f"{k} {v:+.4f}" for k, v in decision.deltas.items()))
    if not decision.promoted and decision.reason != "already the champion":
        raise typer.Exit(1)


@models_app.command("rollback")
def rollback_cmd(
    name: NameArg,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why the rollback is made (recorded).")
    ] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who decides (default: $USER).")] = None,
) -> None:
    """Move the champion alias back to the version the current champion replaced."""
    from training.registry import rollback

    _client()
    decision = rollback(name, by=by, reason=reason)
    console.print(
        f"{name}: champion v{decision.previous} -> v{decision.version} ({decision.reason})", highlight=False
    )


@models_app.command("history")
def history_cmd(
    name: NameArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the records as JSON.")] = False,
) -> None:
    """The champion history: every promotion, refusal, forced move and rollback, oldest first."""
    from training.registry import history

    _client()
    records = history(name)
    if as_json:
        typer.echo(json.dumps(records, indent=2, default=str))
        return
    if not records:
        console.print(f"{name}: no gate decisions recorded yet")
        return
    table = Table("when (UTC)", "action", "version", "previous", "by", "reason", "deltas")
    for r in records:
        table.add_row(
            str(r["at"])[:19],
            str(r["action"]),
            str(r["version"]),
            str(r.get("previous") or "-"),
            str(r.get("by", "")),
            str(r.get("reason", ""))[:80],
            " ".join(f"{k}={v:+.4f}" for k, v in (r.get("deltas") or {}).items()),
        )
    console.print(table)


@models_app.command("card")
def card(
    name: NameArg,
    version: Annotated[str, typer.Argument(help="Version number.")],
) -> None:
    """Print the model card (Markdown) of a version."""
    from training.cards import build_card

    _client()
    try:
        text = build_card(name, version)
    except SalesmlError:
        raise
    except Exception as err:
        raise SalesmlError(f"no card for {name} v{version}: {err}") from None
    typer.echo(text)


@models_app.command("migrate")
def migrate() -> None:
    """Copy a store from before per-data-set models (one churn_risk for every data set) to <product>.<data set>."""
    from training.registry_migrate import migrate_legacy

    _client()
    for line in migrate_legacy():
        console.print(line, highlight=False)
