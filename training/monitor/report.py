"""The monitoring report: ``monitor.json`` (everything) and ``monitor.html`` (the same, for people, with SVG
charts drawn here: no script, no external file), both written atomically, and the run logged to MLflow."""

from __future__ import annotations

import html
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.monitor.run import MonitorResult

__all__ = ["REPORT_FILES", "log_report", "write_report"]

REPORT_FILES = ("monitor.json", "monitor.html")
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2933;margin:2rem auto;
max-width:1100px;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #d9e2ec;padding-bottom:.2rem}
.meta{color:#52606d}.alert{background:#fde8e8;border-left:4px solid #c81e1e;padding:.5rem .8rem;margin:.4rem 0}
.ok{background:#e6f6ec;border-left:4px solid #0e7c3a;padding:.5rem .8rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:13px}th,td{padding:.25rem .6rem;text-align:right;
border-bottom:1px solid #e4e7eb}th{background:#f5f7fa}td.l,th.l{text-align:left}
svg text{font:11px system-ui,sans-serif;fill:#3e4c59}
"""


def write_report(result: MonitorResult, out: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``monitor.json`` and ``monitor.html`` into folder ``out``; each file appears whole or not at all."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    texts = {
        "monitor.json": json.dumps(result.to_dict(), indent=2, default=str),
        "monitor.html": render_html(result),
    }
    paths = {}
    for name, text in texts.items():
        paths[name] = _atomic_write(folder / name, text)
    return paths


def log_report(result: MonitorResult, paths: dict[str, Path]) -> str:
    """One MLflow run in the ``monitoring`` experiment: alert counts and headline figures, the report files."""
    import mlflow

    from training.registry import connect

    connect()
    mlflow.set_experiment("monitoring")
    with mlflow.start_run(run_name=f"monitor-{result.dataset}-{result.data_end}") as run:
        mlflow.set_tags({"salesml.dataset": result.dataset, "salesml.data_end": result.data_end})
        metrics: dict[str, float] = {"alerts": float(len(result.alerts))}
        sales = result.sections.get("sales_forecast")
        if sales:
            for row in sales["levels"]:
                metrics[f"sales.{row['level']}.wape"] = row["wape"]
                metrics[f"sales.{row['level']}.coverage_95"] = row["coverage_95"]
        for product, prefix in (("churn_risk", "churn"), ("lead_score", "leads")):
            section = result.sections.get(product)
            if section and isinstance(section.get("outcomes"), dict):
                metrics[f"{prefix}.ece"] = section["outcomes"]["ece"]
                if section["outcomes"].get("roc_auc") is not None:
                    metrics[f"{prefix}.roc_auc"] = section["outcomes"]["roc_auc"]
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and v == v})
        for path in paths.values():
            mlflow.log_artifact(str(path))
        return run.info.run_id


def _atomic_write(path: Path, text: str) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def render_html(result: MonitorResult) -> str:
    """The report as one self-contained HTML page."""
    e = html.escape
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>salesml monitor: {e(result.dataset)}"
        f"</title><style>{_CSS}</style></head><body>",
        f"<h1>Monitoring {e(result.dataset)}</h1><p class='meta'>data to {e(result.data_end)} &middot; "
        f"run {e(result.created)}</p>",
    ]
    if result.alerts:
        parts.append(f"<h2>{len(result.alerts)} alert(s)</h2>")
        parts += [f"<div class='alert'><b>{e(a.rule)}</b>: {e(a.message)}</div>" for a in result.alerts[:50]]
    else:
        parts.append("<div class='ok'>No alert.</div>")
    for product, why in result.errors.items():
        parts.append(f"<div class='alert'><b>{e(product)} not checked</b>: {e(why)}</div>")
    for product, why in result.skipped.items():
        parts.append(f"<p class='meta'>{e(product)}: {e(why)}</p>")
    sales = result.sections.get("sales_forecast")
    if sales:
        parts.append(_sales_html(sales))
    for product, title, who, event in (
        ("churn_risk", "Churn risk", "Customers", "churned"),
        ("lead_score", "Leads and deals", "Leads open", "won"),
    ):
        if product in result.sections:
            parts.append(_classifier_html(result.sections[product], title, who, event))
    parts.append("</body></html>")
    return "\n".join(parts)


def _sales_html(s: dict[str, Any]) -> str:
    e = html.escape
    periods = s["periods"]
    out = [
        f"<h2>Sales forecast ({e(s['model'])} v{e(str(s['version']))})</h2>",
        f"<p>Forecast made with data to {e(s['cutoff'])}, checked on {len(periods)} period(s) "
        f"{e(periods[0])} .. {e(periods[-1])}: {s['outside_95']} of {s['checked']} node-periods and node totals "
        f"fell outside the 95 % range (about {0.05 * s['checked']:.0f} expected by chance), {s['outside_80']} "
        "outside the 80 % range. Alerts use tail probabilities adjusted for the number of checks.</p>",
        _table(
            s["levels"],
            ["level", "nodes", "periods", "wape", "bias", "coverage_80", "coverage_95"],
            ["level", "nodes", "periods", "WAPE", "bias", "in 80 %", "in 95 %"],
        ),
        _bars([(r["level"], r["wape"]) for r in s["levels"]], "WAPE per level"),
    ]
    if s["anomalies"]:
        out.append("<h3>Outside the 95 % range, most money first</h3>")
        out.append(
            "<p class='meta'>Light bar: the 95 % range; dark bar: the 80 % range; tick: expected; red dot: actual.</p>"
        )
        out.append(_ranges(s["anomalies"][:12]))
        out.append(
            _table(
                s["anomalies"][:25],
                ["unique_id", "period", "actual", "mean", "lo-95", "hi-95", "money", "p_adjusted"],
                ["node", "period", "actual", "expected", "95 % low", "95 % high", "difference", "adjusted p"],
            )
        )
    return "\n".join(out)


def _classifier_html(s: dict[str, Any], title: str, who: str, event: str) -> str:
    e = html.escape
    out = [f"<h2>{e(title)} ({e(s['model'])} v{e(str(s['version']))})</h2>"]
    drift = s.get("drift")
    if isinstance(drift, dict):
        feats = drift["features"]
        flagged = [r["feature"] for r in feats if r["flagged"]]
        out.append(
            f"<p>Drift at the newest cutoff ({s['rows_now']:,} rows) against the training profile: "
            + (f"<b>{e(', '.join(flagged))}</b> flagged." if flagged else "no feature flagged.")
            + " Flagged = the chi-square test on the training bins rejects at 1 % after Holm's adjustment "
            "and PSI &ge; 0.1.</p>"
        )
        out.append(_bars([(r["feature"], r["psi"]) for r in feats[:15]], "PSI per feature (top 15)"))
        out.append(
            _table(
                feats[:15] + drift["score"],
                ["feature", "n_reference", "n_current", "psi", "p_adjusted", "flagged"],
                ["feature", "training rows", "rows now", "PSI", "adjusted p", "flagged"],
            )
        )
    else:
        out.append(f"<p>{e(str(drift))}</p>")
    outcomes = s.get("outcomes")
    if isinstance(outcomes, dict):
        auc = outcomes["roc_auc"]
        out.append(
            f"<p>{who} scored at {e(outcomes['scored_at'])}: {outcomes['n']:,}, of whom "
            f"{outcomes['events']:,} {event}; ROC AUC {'n/a' if auc is None else f'{auc:.3f}'}, expected "
            f"calibration error {outcomes['ece']:.3f}.</p>"
        )
        out.append(_reliability(outcomes["calibration"]))
        out.append(
            _table(
                outcomes["bands"],
                ["band", "n", "events", "observed_rate", "ci_low", "ci_high", "mean_predicted"],
                ["band", "n", event, "rate", "95 % low", "95 % high", "mean predicted"],
            )
        )
        out.append(
            _table(
                outcomes["calibration"],
                [
                    "bin_low",
                    "bin_high",
                    "n",
                    "events",
                    "mean_predicted",
                    "observed_rate",
                    "ci_low",
                    "ci_high",
                ],
                ["from", "to", "n", "events", "mean predicted", "observed", "95 % low", "95 % high"],
            )
        )
    elif outcomes:
        out.append(f"<p>{e(str(outcomes))}</p>")
    return "\n".join(out)


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else ""
    if isinstance(v, float):
        if v != v:
            return ""
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"
    return html.escape(str(v))


def _table(rows: Sequence[dict[str, Any]], keys: list[str], heads: list[str]) -> str:
    head = "".join(f"<th class='{'l' if i == 0 else ''}'>{html.escape(h)}</th>" for i, h in enumerate(heads))
    body = "".join(
        "<tr>"
        + "".join(f"<td class='{'l' if i == 0 else ''}'>{_fmt(r.get(k))}</td>" for i, k in enumerate(keys))
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _bars(items: list[tuple[str, float]], title: str) -> str:
    """A horizontal bar chart as SVG."""
    items = [(k, float(v)) for k, v in items if v is not None and v == v]
    if not items:
        return ""
    width, label_w, row_h = 640, 220, 20
    top = max(v for _, v in items) or 1.0
    h = 24 + row_h * len(items)
    bars = []
    for i, (k, v) in enumerate(items):
        y = 20 + i * row_h
        w = max(1.0, (width - label_w - 60) * v / top)
        bars.append(
            f"<text x='{label_w - 6}' y='{y + 13}' text-anchor='end'>{html.escape(str(k)[:34])}</text>"
            f"<rect x='{label_w}' y='{y + 3}' width='{w:.1f}' height='{row_h - 6}' fill='#3b82f6'/>"
            f"<text x='{label_w + w + 4:.1f}' y='{y + 13}'>{v:.3f}</text>"
        )
    return (
        f"<svg width='{width}' height='{h}' role='img' aria-label='{html.escape(title)}'>"
        f"<text x='0' y='12' style='font-weight:600'>{html.escape(title)}</text>{''.join(bars)}</svg>"
    )


def _ranges(rows: Sequence[dict[str, Any]]) -> str:
    """Each anomaly's 95 % (light) and 80 % (dark) range, the expected value (tick) and the actual (dot)."""
    width, label_w, row_h = 1000, 420, 22
    h = 10 + row_h * len(rows)
    out = []
    for i, r in enumerate(rows):
        lo = min(r["lo-95"], r["actual"])
        hi = max(r["hi-95"], r["actual"])
        pad = 0.06 * ((hi - lo) or 1.0)
        lo, hi = lo - pad, hi + pad
        span = hi - lo
        label = f"{r['unique_id']} {r['period']}"
        label = label if len(label) <= 56 else "…" + label[-55:]

        def x(v: float, lo: float = lo, span: float = span) -> float:
            return label_w + (width - label_w - 20) * (v - lo) / span

        y = 5 + i * row_h
        out.append(
            f"<text x='{label_w - 6}' y='{y + 14}' text-anchor='end'>"
            f"{html.escape(label)}</text>"
            f"<rect x='{x(r['lo-95']):.1f}' y='{y + 4}' width='{x(r['hi-95']) - x(r['lo-95']):.1f}' height='12' "
            "fill='#dbeafe'/>"
            f"<rect x='{x(r['lo-80']):.1f}' y='{y + 4}' width='{x(r['hi-80']) - x(r['lo-80']):.1f}' height='12' "
            "fill='#93c5fd'/>"
            f"<line x1='{x(r['mean']):.1f}' x2='{x(r['mean']):.1f}' y1='{y + 2}' y2='{y + 18}' stroke='#1e3a8a' "
            "stroke-width='2'/>"
            f"<circle cx='{x(r['actual']):.1f}' cy='{y + 10}' r='5' fill='#dc2626'/>"
        )
    return f"<svg width='{width}' height='{h}' role='img' aria-label='anomalies against their ranges'>{''.join(out)}</svg>"


def _reliability(rows: Sequence[dict[str, Any]]) -> str:
    """Observed rate (with its 95 % interval) against the mean predicted probability, per bin."""
    size, pad = 300, 36
    inner = size - 2 * pad

    def px(v: float) -> float:
        return pad + inner * v

    def py(v: float) -> float:
        return size - pad - inner * v

    pts = []
    for r in rows:
        if r["observed_rate"] is None:
            continue
        x, y0, y1 = px(r["mean_predicted"]), py(r["ci_low"]), py(r["ci_high"])
        pts.append(
            f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{y0:.1f}' y2='{y1:.1f}' stroke='#94a3b8'/>"
            f"<circle cx='{x:.1f}' cy='{py(r['observed_rate']):.1f}' r='4' fill='#2563eb'/>"
            f"<text x='{x + 6:.1f}' y='{py(r['observed_rate']) - 4:.1f}'>{r['n']}</text>"
        )
    axes = (
        f"<line x1='{px(0)}' y1='{py(0)}' x2='{px(1)}' y2='{py(1)}' stroke='#94a3b8' stroke-dasharray='4 3'/>"
        f"<text x='{px(0) - 4}' y='{py(1) + 4}' text-anchor='end'>1</text>"
        f"<text x='{px(0) - 4}' y='{py(0.5) + 4}' text-anchor='end'>0.5</text>"
        f"<text x='{px(0.5)}' y='{py(0) + 14}' text-anchor='middle'>0.5</text>"
        f"<line x1='{px(0)}' y1='{py(0)}' x2='{px(1)}' y2='{py(0)}' stroke='#64748b'/>"
        f"<line x1='{px(0)}' y1='{py(0)}' x2='{px(0)}' y2='{py(1)}' stroke='#64748b'/>"
        f"<text x='{size / 2}' y='{size - 6}' text-anchor='middle'>mean predicted probability</text>"
        f"<text x='10' y='{size / 2}' transform='rotate(-90 10 {size / 2})' text-anchor='middle'>observed rate</text>"
        f"<text x='{px(0)}' y='{py(0) + 14}'>0</text><text x='{px(1) - 6}' y='{py(0) + 14}'>1</text>"
    )
    return (
        f"<svg width='{size}' height='{size}' role='img' aria-label='calibration: observed against predicted'>"
        f"{axes}{''.join(pts)}</svg>"
    )
