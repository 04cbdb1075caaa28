"""``salesml report``: a quarterly report per child of a forecast node, as self-contained HTML or as PDF.

Run as ``python -m serving.report --quarter next|current [--node NODE] [--targets FILE.csv] --out FILE.html|.pdf``
(``salesml report`` starts exactly this, so that ``training`` never imports ``serving``). The champions are the
ones the service would serve (:class:`~serving.champions.ChampionStore` over :data:`serving.service.LOADERS`, the
data sets of ``SALESML_SERVE_SALES / _CHURN / _LEADS``), and every number is read off the functions behind the
service's answers and the planner's page (:mod:`serving.page.data`, :mod:`serving.forecast_answers`): the report
only picks, filters and formats them (:mod:`serving.report_html`).

One section per child of the node along the first hierarchy (the regions under ``total``): the quarter's forecast
against its target (``node,quarter,target`` rows; ``quarter`` is ``next``/``current`` or the period, ``2026Q1``)
with the probability of reaching it, the last complete quarter's forecast against its actual, the top customers
by revenue at risk, the lead pipeline by grade, and the models behind it all.

Exit codes: 0 written; 1 no sales_forecast champion (the message names the command that trains one) or the file
could not be written; 2 bad input (an unknown node, a bad targets file, an unsupported ``--out`` suffix). The file
is written atomically: a temporary file in the same folder, renamed over the target; on failure neither is left.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from features.errors import SalesmlError

__all__ = ["SUFFIXES", "build_report", "lead_pipeline", "main", "read_targets", "write_atomic"]

SUFFIXES = (".html", ".pdf")
_TRAIN = {"sales_forecast": "sales", "churn_risk": "churn", "lead_score": "leads"}


class ReportError(Exception):
    """A failure that is not the user's input (exit 1): a missing champion, a file that cannot be written."""


# --- input ---------------------------------------------------------------------------------------------------


def read_targets(path: Path) -> dict[tuple[str, str], float]:
    """``(node, quarter) -> target`` from a CSV with the columns ``node,quarter,target``."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise SalesmlError(f"--targets: cannot read {path}: {err.strerror or err}") from None
    reader = csv.DictReader(text.splitlines())
    missing = {"node", "quarter", "target"} - {c.strip() for c in reader.fieldnames or []}
    if missing:
        raise SalesmlError(
            f"--targets: {path} needs the columns node,quarter,target; missing {', '.join(sorted(missing))}"
        )
    targets: dict[tuple[str, str], float] = {}
    for line, row in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        if not row["node"] and not row["target"]:
            continue
        key = (row["node"], row["quarter"])
        try:
            value = float(row["target"].replace(",", "").replace("_", ""))
        except ValueError:
            raise SalesmlError(f"--targets: line {line}: target {row['target']!r} is not a number") from None
        if not value > 0 or value == float("inf"):
            raise SalesmlError(
                f"--targets: line {line}: target must be a positive amount, got {row['target']}"
            )
        if key in targets:
            raise SalesmlError(
                f"--targets: line {line}: a second target for node {key[0]!r}, quarter {key[1]!r}"
            )
        targets[key] = value
    return targets


def _target_for(targets: dict[tuple[str, str], float], node: str, quarter: str, period: str) -> float | None:
    """The node's target for the quarter, named either way (``next`` or ``2026Q1``)."""
    found = [targets[k] for k in ((node, quarter), (node, period)) if k in targets]
    if len(found) > 1:
        raise SalesmlError(
            f"--targets: node {node!r} has a target for {quarter!r} and for {period!r}; keep one"
        )
    return found[0] if found else None


# --- the numbers ---------------------------------------------------------------------------------------------


def _lead_nodes(leads: Any, forecast: Any) -> Any | None:
    """The scored leads (those of :func:`serving.page.data.lead_summary`) with the forecast nodes each one's owner
    runs through, or None when the leads do not carry the forecast's first hierarchy."""
    from features.spec import LEAD_ID, Role
    from serving.page.data import entity_nodes, forecast_artifacts, lead_table, node_sets

    table, _ = lead_table(leads)
    if str(forecast.meta.get("dataset")) != str(leads.meta.get("dataset")):
        return None
    dataset = leads.model["context"].dataset
    raw = dataset.table(Role.leads)
    if raw is None:
        return None
    art = forecast_artifacts(forecast)
    try:
        paths = entity_nodes(dataset, raw, LEAD_ID)
    except SalesmlError:
        return None
    if paths is None:
        return None
    by_id = dict(zip(raw[LEAD_ID].astype(str), node_sets(art, paths), strict=True))
    nodes = [by_id.get(str(i), frozenset()) for i in table[LEAD_ID]]
    if not any(nodes):
        return None
    return table.assign(_nodes=nodes)


def lead_pipeline(table: Any, node: str) -> list[dict[str, Any]]:
    """The open leads of ``node`` by grade (count, value, expected value), as :func:`lead_summary` counts them."""
    from serving.answers import finite
    from serving.page.data import GRADES
    from training import score_columns as sc

    part = table[[node in n for n in table["_nodes"]]]
    return [
        {
            "grade": grade,
            "count": int((part[sc.BAND] == grade).sum()),
            "value": finite(part.loc[part[sc.BAND] == grade, sc.VALUE].sum(min_count=1)),
            "expected_value": finite(part.loc[part[sc.BAND] == grade, sc.EXPECTED_VALUE].sum(min_count=1)),
        }
        for grade in GRADES
    ]


def _missing(product: str, store: Any, snap: Any) -> str:
    dataset = store.datasets.get(product, "?")
    return (
        f"no {product} model is being served for data set {dataset!r} ({snap.problems.get(product, 'not loaded')}); "
        f"train and promote one with `salesml train {_TRAIN[product]} --dataset {dataset} --promote`"
    )


def _models(snap: Any) -> list[dict[str, str]]:
    from serving.forecast_answers import forecast_cutoff

    out = []
    for product, champ in snap.champions.items():
        if product == "sales_forecast":
            cutoff = forecast_cutoff(champ)
        elif product == "churn_risk":
            cutoff = str(champ.model["snapshot_meta"].get("cutoff") or champ.meta.get("data_cutoff") or "")
        else:
            cutoff = str(champ.meta.get("data_cutoff") or "")
        out.append(
            {
                "product": product,
                "name": champ.name,
                "version": str(champ.version),
                "cutoff": cutoff,
                "stale": "stale copy" if champ.stale else "",
            }
        )
    return out


def build_report(
    snap: Any, store: Any, quarter: str, node: str, targets: dict[tuple[str, str], float] | None
) -> dict[str, Any]:
    """Everything the report shows, as plain values (see :func:`serving.report_html.render`)."""
    from serving.forecast_answers import plan_response
    from serving.page.data import churn_rows, node_label, node_view
    from training.forecast.serve_api import children_of

    fc = snap.champions.get("sales_forecast")
    if fc is None:
        raise ReportError(_missing("sales_forecast", store, snap))
    churn, leads = snap.champions.get("churn_risk"), snap.champions.get("lead_score")
    kids = children_of(fc.model.model, node) or [node]  # a bottom node: its own section

    lead_table, lead_note = None, ""
    if leads is None:
        lead_note = _missing("lead_score", store, snap)
    else:
        lead_table = _lead_nodes(leads, fc)
        if lead_table is None:
            lead_note = "these leads do not carry the forecast's hierarchy: no pipeline per node"

    def one(uid: str) -> dict[str, Any]:
        view = node_view(fc, uid)
        q = next(x for x in view["forecast"]["quarters"] if x["quarter"] == quarter)
        target = _target_for(targets or {}, uid, quarter, q["period"])
        probability = None
        if target is not None:
            plan = plan_response(fc, uid, target, quarter)
            probability = next(r.probability for r in plan.rows if r.role == "node")
        section: dict[str, Any] = {
            "node": uid,
            "label": node_label(uid),
            "level": view["forecast"]["level"],
            "quarter": q,
            "target": target,
            "probability": probability,
            "last_quarter": view["last_quarter"],
        }
        if churn is None:
            section["churn_note"] = _missing("churn_risk", store, snap)
        else:
            try:
                section["churn"] = churn_rows(churn, fc, node=uid, limit=5)
            except SalesmlError as err:
                section["churn_note"] = str(err).removeprefix("node: ")
        if lead_table is not None:
            section["leads"] = lead_pipeline(lead_table, uid)
        else:
            section["leads_note"] = lead_note
        return section

    sections = [one(uid) for uid in kids]
    sections.sort(key=lambda s: -s["quarter"]["mean"])
    return {
        "node": node,
        "label": node_label(node),
        "quarter": quarter,
        "period": sections[0]["quarter"]["period"] if sections else "",
        "own": one(node) if node not in kids else None,
        "sections": sections,
        "has_targets": targets is not None,
        "models": _models(snap),
        "dataset": str(fc.meta.get("dataset", "")),
        "created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


# --- output --------------------------------------------------------------------------------------------------


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """``write(temp)`` into a temporary file beside ``path``, then rename it over ``path``; on any failure the
    temporary file is removed and ``path`` is left as it was."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _writer(out: Path, page: str) -> Callable[[Path], None]:
    if out.suffix.lower() == ".html":
        return lambda tmp: tmp.write_text(page, encoding="utf-8")

    def pdf(tmp: Path) -> None:
        import logging

        from weasyprint import HTML

        logging.getLogger("weasyprint").setLevel(logging.ERROR)
        logging.getLogger("fontTools").setLevel(logging.ERROR)
        HTML(string=page).write_pdf(str(tmp))

    return pdf


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="salesml report", description=__doc__.split("\n\n")[0])
    p.add_argument("--quarter", required=True, choices=("next", "current"))
    p.add_argument("--node", default="total")
    p.add_argument("--targets", type=Path)
    p.add_argument("--out", required=True, type=Path)
    return p


def _check_out(out: Path) -> None:
    if out.suffix.lower() not in SUFFIXES:
        raise SalesmlError(
            f"--out: {out.name!r} is neither .html nor .pdf; name the file FILE.html or FILE.pdf"
        )
    if not out.parent.is_dir():
        raise SalesmlError(f"--out: the folder {out.parent} does not exist; create it first")


def run(argv: list[str] | None = None) -> Path:
    """Parse, load the champions, write the report; raises SalesmlError (bad input) or ReportError."""
    args = _parser().parse_args(argv)
    out = Path(args.out).absolute()
    _check_out(out)
    targets = read_targets(args.targets) if args.targets else None

    from serving.champions import ChampionStore
    from serving.report_html import render
    from serving.service import LOADERS

    store = ChampionStore(LOADERS)
    snap = store.refresh()
    report = build_report(snap, store, args.quarter, args.node, targets)
    page = render(report)
    try:
        write_atomic(out, _writer(out, page))
    except OSError as err:
        raise ReportError(f"could not write {out}: {err.strerror or err}") from None
    return out


def main(argv: list[str] | None = None) -> int:
    """The command: 0 written, 1 a missing sales_forecast champion or a failed write, 2 bad input."""
    try:
        out = run(argv)
    except SalesmlError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"report written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
