"""``salesml report``: the quarterly report per region of the small synthetic organisation, as PDF and as HTML.

The report is made by the ``salesml`` command (which starts ``python -m serving.report``) from the trained store
(:func:`tests.conftest.trained_home`); the numbers it must print are computed here, in this process, from the
same champions through the functions behind the service (``node_view``, ``plan_response``, ``churn_rows``) and,
for the lead pipeline, counted here from the leads table and the reps lookup. The PDF is read back with
``pdftoppm`` (its pages exist) and ``pdftotext -layout``. Then: a bad ``--out`` fails before any work and writes
nothing; a write that fails after the rendering leaves neither the file nor a temporary one; no sales_forecast
champion is exit 1 naming the command that trains one.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow

SERVED = {f"SALESML_SERVE_{p}": "synthetic" for p in ("SALES", "CHURN", "LEADS")}
GRADES = ("A", "B", "C", "D")
NEEDS_POPPLER = pytest.mark.skipif(
    shutil.which("pdftotext") is None or shutil.which("pdftoppm") is None,
    reason="poppler-utils not installed",
)


def money(v: float) -> str:  # as the report prints amounts: whole units, thousands separated
    return f"{v:,.0f}"


def pct(p: float) -> str:  # and probabilities: whole per cent
    return f"{100 * p:.0f}%"


@pytest.fixture(scope="module")
def env(trained_home: Path) -> dict[str, str]:
    return {"SALESML_HOME": str(trained_home), **SERVED}


@pytest.fixture(scope="module")
def store(env: dict[str, str]) -> Any:
    """What the report must show, from the same store, in this process: per region, both quarters' forecasts,
    the probability of reaching a target, the customers at risk and the open leads by grade."""
    import mlflow

    from features.spec import LEAD_ID, Role
    from serving.champions import ChampionStore
    from serving.forecast_answers import plan_response
    from serving.page.data import churn_rows, forecast_tree, lead_table, node_view
    from serving.service import LOADERS
    from training import score_columns as sc

    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        snap = ChampionStore(LOADERS).refresh()
        assert not snap.problems, snap.problems
        fc, churn, leads = (snap.champions[p] for p in ("sales_forecast", "churn_risk", "lead_score"))
        regions = [
            n["id"] for n in forecast_tree(fc)["nodes"] if n["parent"] == "total" and n["hierarchy"] == 0
        ]
        quarters = {r: {q["quarter"]: q for q in node_view(fc, r)["forecast"]["quarters"]} for r in regions}
        top = {r: churn_rows(churn, fc, node=r, limit=5)["rows"][0]["customer_id"] for r in regions}
        # Open leads per region, counted from the leads' owners and the reps lookup (rep -> region).
        scored, _ = lead_table(leads)
        dataset = leads.model["context"].dataset
        owner = dataset.table(Role.leads).set_index(LEAD_ID)["owner"].astype(str)
        region_of = dataset.tables["reps"].set_index("rep")["region"].astype(str)
        lead_region = "region=" + scored[LEAD_ID].map(owner).map(region_of)
        grades = {
            r: {g: int(((lead_region == r) & (scored[sc.BAND] == g)).sum()) for g in GRADES} for r in regions
        }
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)

    def probability(node: str, target: float, quarter: str) -> float:
        plan = plan_response(fc, node, target, quarter)
        return next(r.probability for r in plan.rows if r.role == "node")

    assert len(regions) == 3
    return {
        "regions": regions,
        "quarters": quarters,
        "top": top,
        "grades": grades,
        "probability": probability,
        "versions": {p: c.version for p, c in snap.champions.items()},
    }


def _sections(text: str, regions: list[str]) -> dict[str, str]:
    """Each region's part of the report's text: from its heading (the one place its id is printed) to the next."""
    starts = {}
    for r in regions:
        assert text.count(r) == 1, f"{r} should be named once, in its section's heading"
        starts[r] = text.index(r)
    order = sorted(regions, key=starts.get)
    ends = [starts[r] for r in order[1:]] + [len(text)]
    return {r: text[starts[r] : end] for r, end in zip(order, ends, strict=True)}


def _after(section: str, heading: str) -> str:
    assert heading in section, f"no {heading!r} in:\n{section}"
    return section.split(heading, 1)[1]


def _check_section(part: str, q: dict[str, Any], target: float | None, probability: float | None) -> None:
    flat = re.sub(r"\s+", " ", part)
    assert f"Forecast mean {money(q['mean'])}" in flat, flat[:600]
    assert f"Median {money(q['median'])}" in flat
    assert f"80 % range {money(q['lo_80'])} – {money(q['hi_80'])}" in flat
    assert f"95 % range {money(q['lo_95'])} – {money(q['hi_95'])}" in flat
    if target is None:
        assert "Target no target" in flat
    else:
        assert f"Target {money(target)}" in flat
        assert f"Probability of reaching it {pct(probability)}" in flat


def _check_churn_and_leads(part: str, top_id: str, grades: dict[str, int]) -> None:
    churn = _after(part, "Top customers by revenue at risk")
    assert re.search(rf"^\s*1\s+{re.escape(top_id)}\s", churn, re.M), churn[:800]
    pipeline = _after(part, "Lead pipeline by grade")
    for grade, count in grades.items():
        assert re.search(rf"^\s*{grade}\s+{count}\s", pipeline, re.M), (grade, count, pipeline[:600])
    assert re.search(rf"^\s*all\s+{sum(grades.values())}\s", pipeline, re.M)


@NEEDS_POPPLER
def test_the_pdf_has_a_page_per_region_with_its_forecast_target_customers_and_leads(
    store: dict[str, Any], env: dict[str, str], tmp_path: Path
) -> None:
    regions, quarters = store["regions"], store["quarters"]
    targets = {
        r: round(quarters[r]["next"]["mean"] * f) for r, f in zip(regions, (0.8, 1.0, 1.25), strict=True)
    }
    csv = tmp_path / "t.csv"
    csv.write_text("node,quarter,target\n" + "".join(f"{r},next,{t}\n" for r, t in targets.items()))
    out = tmp_path / "r.pdf"
    done = run_cli("report", "--quarter", "next", "--targets", str(csv), "--out", str(out), env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"report written to {out}" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.pdf", "t.csv"]  # no temporary file left

    subprocess.run(["pdftoppm", "-png", "-r", "60", str(out), str(tmp_path / "page")], check=True)
    pngs = sorted(tmp_path.glob("page-*.png"))
    assert len(pngs) >= 1 + len(regions) and all(p.stat().st_size > 5000 for p in pngs)
    text = subprocess.run(
        ["pdftotext", "-layout", str(out), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "Quarterly report " + quarters[regions[0]]["next"]["period"] in text
    pages = text.split("\f")
    sections = _sections(text, regions)
    for r in regions:
        label = r.split("=", 1)[1]
        # each section starts a page of its own, under its heading
        assert any(re.match(rf"\s*{label}\s+{re.escape(r)}", p) for p in pages), r
        q = quarters[r]["next"]
        _check_section(sections[r], q, targets[r], store["probability"](r, targets[r], "next"))
        _check_churn_and_leads(sections[r], store["top"][r], store["grades"][r])
        flat = re.sub(r"\s+", " ", sections[r])
        assert f"sales_forecast.synthetic v{store['versions']['sales_forecast']}" in flat
        assert f"lead_score.synthetic v{store['versions']['lead_score']}" in flat


def test_the_html_is_self_contained_and_shows_the_current_quarter(
    store: dict[str, Any], env: dict[str, str], tmp_path: Path
) -> None:
    regions, quarters = store["regions"], store["quarters"]
    first, second = regions[0], regions[1]
    period = quarters[first]["current"]["period"]  # a target may name the quarter by its period
    target = round(quarters[first]["current"]["mean"] * 1.1)
    csv = tmp_path / "t.csv"
    csv.write_text(f"node,quarter,target\n{first},{period},{target}\n{second},next,123456\n")
    out = tmp_path / "r.html"
    done = run_cli("report", "--quarter", "current", "--targets", str(csv), "--out", str(out), env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    page = out.read_text()
    assert page.count("<section class='child'>") == len(regions) == page.count("<svg ")
    for outside in ("<script", "<link", "@import", "url(", "<img"):
        assert outside not in page
    assert not re.findall(r"https?://(?!www\.w3\.org/2000/svg)", page)
    text = html.unescape(re.sub(r"<[^>]+>", " ", page.split("</h1>", 1)[1]))
    sections = _sections(text, regions)
    for r, t in ((first, target), (second, None)):  # the second's target is for another quarter
        q = quarters[r]["current"]
        _check_section(sections[r], q, t, None if t is None else store["probability"](r, t, "current"))
        assert f"actual sales to date: {money(q['actual_to_date'])}" in re.sub(r"\s+", " ", sections[r])
    churn = re.sub(r"\s+", " ", _after(sections[first], "Top customers by revenue at risk"))
    assert f" 1 {store['top'][first]} " in churn
    pipeline = re.sub(r"\s+", " ", _after(sections[first], "Lead pipeline by grade"))
    for grade, count in store["grades"][first].items():
        assert f" {grade} {count} " in pipeline


def test_a_bad_out_path_fails_before_any_work_and_writes_nothing(env: dict[str, str], tmp_path: Path) -> None:
    done = run_cli("report", "--quarter", "next", "--out", str(tmp_path / "r.docx"), env=env)
    assert done.returncode == 2
    assert ".html" in done.stderr and ".pdf" in done.stderr and "r.docx" in done.stderr
    missing = tmp_path / "no-such-folder" / "r.pdf"
    done = run_cli("report", "--quarter", "next", "--out", str(missing), env=env)
    assert done.returncode == 2 and "does not exist" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_write_that_fails_after_rendering_leaves_no_file_and_no_temporary_file(
    env: dict[str, str], tmp_path: Path
) -> None:
    # The target is taken by a folder: the temporary file is written, renaming it over the folder fails.
    taken = tmp_path / "r.html"
    taken.mkdir()
    done = run_cli("report", "--quarter", "next", "--out", str(taken), env=env)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "could not write" in done.stderr and str(taken) in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"] and taken.is_dir() and not any(taken.iterdir())


def test_write_atomic_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    from serving.report import write_atomic

    path = tmp_path / "r.html"
    path.write_text("old")

    def broken(tmp: Path) -> None:
        tmp.write_text("half a rep")
        raise RuntimeError("rendering failed")

    with pytest.raises(RuntimeError):
        write_atomic(path, broken)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["r.html"]
    write_atomic(path, lambda tmp: tmp.write_text("new"))
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_no_sales_champion_is_exit_1_naming_the_model_and_the_command_that_trains_it(tmp_path: Path) -> None:
    out = tmp_path / "r.pdf"
    done = run_cli(
        "report", "--quarter", "next", "--out", str(out), env={"SALESML_HOME": str(tmp_path), **SERVED}
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "sales_forecast" in done.stderr
    assert "salesml train sales --dataset synthetic --promote" in done.stderr
    assert not out.exists() and not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".r.pdf*"))
