"""The quarterly report (:mod:`serving.report`) as one self-contained HTML page: inline CSS, an inline SVG chart per
section, no fonts, scripts or images from elsewhere; every value from the data is escaped. The same page is
printed to PDF by WeasyPrint (one section per A4 page).

Numbers are shown as :func:`money` (integer, thousands separators) and :func:`percent` (whole per cent).
"""

from __future__ import annotations

import html
import math
from typing import Any

__all__ = ["money", "percent", "render"]

e = html.escape

_CSS = """
@page { size: A4; margin: 14mm 13mm; @bottom-right { content: counter(page) " / " counter(pages);
  font: 8pt sans-serif; color: #777; } }
* { box-sizing: border-box; }
body { font: 10pt/1.35 "DejaVu Sans", Arial, Helvetica, sans-serif; color: #1d2430; margin: 0 auto;
  max-width: 190mm; padding: 0 4mm; }
h1 { font-size: 17pt; margin: 0 0 2mm; }
h2 { font-size: 14pt; margin: 0 0 1mm; border-bottom: 2px solid #2f5d8a; padding-bottom: 1mm; }
h2 .id { font-size: 9pt; font-weight: normal; color: #5a6472; margin-left: 3mm; }
h3 { font-size: 10.5pt; margin: 4mm 0 1.5mm; color: #2f5d8a; }
p { margin: 1mm 0; }
.meta, .note { color: #5a6472; font-size: 8.5pt; }
.note { font-style: italic; }
section.child { break-before: page; page-break-before: always; padding-top: 2mm; }
@media screen { section.child { border-top: 1px solid #ccd; margin-top: 10mm; padding-top: 6mm; } }
table { border-collapse: collapse; width: 100%; margin: 1mm 0; font-size: 9pt; }
th, td { padding: 1.1mm 2mm; text-align: left; vertical-align: top; }
th { background: #eef2f7; font-weight: bold; color: #33404f; }
tr + tr td { border-top: 1px solid #e3e7ee; }
td.n, th.n { text-align: right; white-space: nowrap; }
table.kv td { border: none; padding: 0.8mm 2mm; }
table.kv td.k { color: #5a6472; width: 16%; white-space: nowrap; }
table.kv td.k + td.v + td.k { width: 26%; }
table.kv td.v { font-weight: bold; width: 29%; white-space: nowrap; }
tr.sum td { font-weight: bold; border-top: 1.5px solid #99a3b0; }
svg { display: block; margin: 2mm 0 1mm; }
.stale { color: #a0522d; }
"""

_BLUE, _DARK, _LIGHT, _RED, _GREY = "#5b8fc7", "#1f3f66", "#c9dbef", "#c0392b", "#9aa5b1"


def money(value: float | None) -> str:
    """An amount as the report prints it: rounded to a whole unit, thousands separated (``1,299,306``)."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:,.0f}"


def percent(p: float | None) -> str:
    """A probability as the report prints it: whole per cent (``62%``)."""
    if p is None or not math.isfinite(p):
        return "–"
    return f"{100 * p:.0f}%"


def _short(value: float) -> str:
    """An axis label: ``1.2M``, ``350k``."""
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.0f}"


def _step(top: float) -> float:
    raw = top / 5
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def chart(section: dict[str, Any]) -> str:
    """The section's quarter: a bar to the mean with the 80 % (thick) and 95 % (thin) ranges and the target tick;
    below it the last complete quarter's actual (grey bar) and what was forecast for it (tick)."""
    q, target, last = section["quarter"], section["target"], section["last_quarter"]
    values = [q["hi_95"], q["mean"], target or 0.0]
    if last:
        values += [last["actual"], last["forecast"]]
    top = max(v for v in values if v is not None and math.isfinite(v)) * 1.05 or 1.0
    step = _step(top)
    top = math.ceil(top / step) * step
    width, left, right = 680, 128, 16
    span = width - left - right
    rows = 2 if last else 1
    height = 34 + 34 * rows

    def x(v: float) -> float:
        return left + span * max(0.0, min(v, top)) / top

    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='100%' viewBox='0 0 {width} {height}' "
        f"role='img' aria-label='forecast for {e(section['label'])}' font-family='DejaVu Sans, sans-serif'>"
    ]
    axis_y = 20 + 34 * rows
    tick = 0.0
    while tick <= top + step / 2:
        tx = x(tick)
        out.append(f"<line x1='{tx:.1f}' y1='12' x2='{tx:.1f}' y2='{axis_y}' stroke='#e3e7ee'/>")
        out.append(
            f"<text x='{tx:.1f}' y='{axis_y + 12}' font-size='10' fill='#5a6472' text-anchor='middle'>"
            f"{_short(tick)}</text>"
        )
        tick += step
    y = 16
    out.append(f"<text x='0' y='{y + 15}' font-size='11' fill='#1d2430'>{e(q['period'])} forecast</text>")
    out.append(
        f"<rect x='{left}' y='{y + 5}' width='{x(q['mean']) - left:.1f}' height='14' fill='{_BLUE}' rx='2'/>"
    )
    if q["quarter"] == "current" and q["actual_to_date"] > 0:
        out.append(
            f"<rect x='{left}' y='{y + 5}' width='{x(q['actual_to_date']) - left:.1f}' height='14' "
            f"fill='{_DARK}' fill-opacity='0.45' rx='2'/>"
        )
    mid = y + 12
    out.append(
        f"<line x1='{x(q['lo_95']):.1f}' y1='{mid}' x2='{x(q['hi_95']):.1f}' y2='{mid}' stroke='{_DARK}' "
        "stroke-width='1.5'/>"
    )
    out.append(
        f"<line x1='{x(q['lo_80']):.1f}' y1='{mid}' x2='{x(q['hi_80']):.1f}' y2='{mid}' stroke='{_DARK}' "
        "stroke-width='5'/>"
    )
    for v in (q["lo_95"], q["hi_95"]):
        out.append(
            f"<line x1='{x(v):.1f}' y1='{mid - 5}' x2='{x(v):.1f}' y2='{mid + 5}' stroke='{_DARK}' "
            "stroke-width='1.5'/>"
        )
    if target is not None:
        tx = x(target)
        out.append(
            f"<line x1='{tx:.1f}' y1='{y}' x2='{tx:.1f}' y2='{y + 24}' stroke='{_RED}' stroke-width='3'/>"
        )
        out.append(
            f"<text x='{tx:.1f}' y='{y - 4}' font-size='10' fill='{_RED}' text-anchor='middle'>target</text>"
        )
    if last:
        y += 34
        out.append(
            f"<text x='0' y='{y + 15}' font-size='11' fill='#1d2430'>{e(last['period'])} actual</text>"
        )
        out.append(
            f"<rect x='{left}' y='{y + 5}' width='{x(last['actual']) - left:.1f}' height='14' fill='{_GREY}' "
            "rx='2'/>"
        )
        fx = x(last["forecast"])
        out.append(
            f"<line x1='{fx:.1f}' y1='{y + 1}' x2='{fx:.1f}' y2='{y + 23}' stroke='{_DARK}' stroke-width='3'/>"
        )
    out.append("</svg>")
    legend = (
        "Blue bar: forecast mean"
        + ("; its darker part: sales to date" if q["quarter"] == "current" else "")
        + "; thick line: 80 % range; thin line: 95 % range"
        + ("; red tick: target" if target is not None else "")
        + ("; grey bar: last complete quarter's actual, dark tick: its forecast" if last else "")
        + "."
    )
    return "".join(out) + f"<p class='meta'>{legend}</p>"


def _table(head: list[tuple[str, bool]], rows: list[list[str]], sum_row: list[str] | None = None) -> str:
    """``head``: (title, numeric); the cells are already escaped."""
    numeric = [n for _, n in head]
    parts = ["<table><tr>", *(f"<th{' class=n' if n else ''}>{e(t)}</th>" for t, n in head), "</tr>"]
    for row, cls in [(r, "") for r in rows] + ([(sum_row, " class='sum'")] if sum_row else []):
        cells = "".join(f"<td{' class=n' if n else ''}>{c}</td>" for c, n in zip(row, numeric, strict=True))
        parts.append(f"<tr{cls}>{cells}</tr>")
    parts.append("</table>")
    return "".join(parts)


def _target_cells(s: dict[str, Any], has_targets: bool) -> tuple[str, str]:
    if s["target"] is None:
        return ("no target" if has_targets else "no target file"), "–"
    return money(s["target"]), percent(s["probability"])


def _forecast(s: dict[str, Any], has_targets: bool) -> str:
    q = s["quarter"]
    target, prob = _target_cells(s, has_targets)
    which = "current quarter" if q["quarter"] == "current" else "next quarter"
    rows = [
        ("Forecast mean", money(q["mean"]), "Target", target),
        ("Median", money(q["median"]), "Probability of reaching it", prob),
        (
            "80 % range",
            f"{money(q['lo_80'])} – {money(q['hi_80'])}",
            "95 % range",
            f"{money(q['lo_95'])} – {money(q['hi_95'])}",
        ),
    ]
    body = "".join(
        f"<tr><td class='k'>{e(a)}</td><td class='v'>{e(b)}</td><td class='k'>{e(c)}</td>"
        f"<td class='v'>{e(d)}</td></tr>"
        for a, b, c, d in rows
    )
    note = ""
    if q["quarter"] == "current":
        note = f"<p class='meta'>Includes the actual sales to date: {e(money(q['actual_to_date']))}.</p>"
    return f"<h3>{e(q['period'])} ({which})</h3><table class='kv'>{body}</table>{note}"


def _last(s: dict[str, Any]) -> str:
    last = s["last_quarter"]
    if not last:
        return "<h3>Last complete quarter</h3><p class='note'>No complete quarter was held out for this node.</p>"
    diff = last["actual"] - last["forecast"]
    rel = f"{100 * diff / last['forecast']:+.1f} %" if last["forecast"] else "–"
    return f"<h3>Last complete quarter: {e(last['period'])}</h3>" + _table(
        [
            ("forecast made with data to", False),
            ("forecast", True),
            ("actual", True),
            ("actual − forecast", True),
        ],
        [[e(last["cutoff"]), money(last["forecast"]), money(last["actual"]), f"{money(diff)} ({e(rel)})"]],
    )


def _churn(s: dict[str, Any]) -> str:
    head = "<h3>Top customers by revenue at risk</h3>"
    if "churn" not in s:
        return head + f"<p class='note'>{e(s['churn_note'])}</p>"
    c = s["churn"]
    intro = (
        f"<p class='meta'>{c['matching']:,} of {c['customers']:,} customers belong here; revenue at risk "
        f"{e(money(c['at_risk_total']))} (value × probability of churning within {c['horizon_days']} days).</p>"
    )
    if not c["rows"]:
        return head + intro + "<p class='note'>No customer of this node is scored.</p>"
    rows = [
        [
            str(r["rank"]),
            e(str(r["customer_id"])),
            e(r["band"]),
            percent(r["probability"]),
            money(r["value"]),
            money(r["expected_value"]),
            e(", ".join(x.get("feature", "") for x in r["reasons"][:2])),
        ]
        for r in c["rows"]
    ]
    table = _table(
        [
            ("#", False),
            ("customer", False),
            ("tier", False),
            ("churn prob.", True),
            ("value", True),
            ("at risk", True),
            ("main reasons", False),
        ],
        rows,
    )
    return head + intro + table


def _leads(s: dict[str, Any]) -> str:
    head = "<h3>Lead pipeline by grade</h3>"
    if "leads" not in s:
        return head + f"<p class='note'>{e(s['leads_note'])}</p>"
    grades = s["leads"]
    # a grade without leads holds nothing (0); leads without amounts have no value (–)
    rows = [
        [
            e(g["grade"]),
            str(g["count"]),
            *(money(0.0 if not g["count"] else g[k]) for k in ("value", "expected_value")),
        ]
        for g in grades
    ]
    count = sum(g["count"] for g in grades)
    sums = [[g[k] for g in grades if g[k] is not None] for k in ("value", "expected_value")]
    total = ["all", str(count), *(money(sum(v)) if v or not count else "–" for v in sums)]
    return head + _table(
        [("grade", False), ("leads", True), ("value", True), ("expected value", True)], rows, total
    )


def _models_line(models: list[dict[str, str]]) -> str:
    parts = [
        f"{e(m['name'])} v{e(m['version'])} (data to {e(m['cutoff'] or '?')})"
        + (f" <span class='stale'>{e(m['stale'])}</span>" if m["stale"] else "")
        for m in models
    ]
    return "<p class='meta'>Models: " + "; ".join(parts) + ".</p>"


def _section(s: dict[str, Any], report: dict[str, Any]) -> str:
    return (
        f"<section class='child'><h2>{e(s['label'])}<span class='id'>{e(s['node'])}</span></h2>"
        + _forecast(s, report["has_targets"])
        + chart(s)
        + _last(s)
        + _churn(s)
        + _leads(s)
        + _models_line(report["models"])
        + "</section>"
    )


def _summary(report: dict[str, Any]) -> str:
    rows = []
    for s in report["sections"]:
        target, prob = _target_cells(s, report["has_targets"])
        q = s["quarter"]
        rows.append(
            [e(s["label"]), money(q["mean"]), f"{money(q['lo_80'])} – {money(q['hi_80'])}", e(target), prob]
        )
    own = report["own"]
    sum_row = None
    if own is not None:
        target, prob = _target_cells(own, report["has_targets"])
        q = own["quarter"]
        sum_row = [
            e(own["label"]),
            money(q["mean"]),
            f"{money(q['lo_80'])} – {money(q['hi_80'])}",
            e(target),
            prob,
        ]
    models = _table(
        [("product", False), ("model", False), ("version", False), ("data to", False)],
        [
            [
                e(m["product"]),
                e(m["name"]),
                e(m["version"]) + (f" <span class='stale'>({e(m['stale'])})</span>" if m["stale"] else ""),
                e(m["cutoff"]),
            ]
            for m in report["models"]
        ],
    )
    which = "current quarter" if report["quarter"] == "current" else "next quarter"
    notes = {s.get("churn_note") for s in report["sections"]} | {
        s.get("leads_note") for s in report["sections"]
    }
    notes_html = "".join(f"<p class='note'>{e(n)}</p>" for n in sorted(n for n in notes if n))
    return (
        f"<h1>Quarterly report {e(report['period'])}</h1>"
        f"<p class='meta'>{e(which)} &middot; {e(report['label'])} by "
        f"{e(report['sections'][0]['level'] if report['sections'] else '')} &middot; data set "
        f"{e(report['dataset'])} &middot; made {e(report['created'])}</p>"
        "<h3>Forecast and target per section</h3>"
        + _table(
            [
                ("", False),
                ("forecast mean", True),
                ("80 % range", True),
                ("target", True),
                ("probability", True),
            ],
            rows,
            sum_row,
        )
        + notes_html
        + "<h3>Models</h3>"
        + models
        + "<p class='meta'>Probability: the calibrated probability that the quarter's total reaches the target. "
        "Each following page is one section.</p>"
    )


def render(report: dict[str, Any]) -> str:
    """The report (:func:`serving.report.build_report`) as a complete HTML document."""
    title = f"salesml quarterly report {report['period']} – {report['label']}"
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>"
        + _summary(report)
        + "".join(_section(s, report) for s in report["sections"])
        + "</body></html>\n"
    )
